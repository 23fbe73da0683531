"""Task state in Redis: records, atomic transitions (Lua), history, leases, heartbeats."""
