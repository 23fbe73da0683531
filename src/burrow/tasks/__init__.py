"""Task definitions, their registry, the task record, and the message envelope (pure core)."""
