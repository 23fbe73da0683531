"""The worker runtime: consume, run handlers, retry, dead-letter, shut down gracefully."""
