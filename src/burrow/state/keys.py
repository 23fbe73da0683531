"""Every Redis key burrow uses, namespace-prefixed, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names of one namespace (``{ns}:`` prefix; none for an empty namespace)."""

    namespace: str

    @property
    def prefix(self) -> str:
        return f"{self.namespace}:" if self.namespace else ""

    def task(self, task_id: str) -> str:
        """Hash: the task record."""
        return f"{self.prefix}task:{task_id}"

    def events(self, task_id: str) -> str:
        """List: the task's history, one JSON event per entry."""
        return f"{self.prefix}task:{task_id}:events"

    @property
    def running(self) -> str:
        """Sorted set: running task ids scored by lease expiry (ms), read by the reaper."""
        return f"{self.prefix}running"

    @property
    def tasks(self) -> str:
        """Sorted set: every task id scored by ``created_at`` (the listing index). Written
        with the record (``create.lua``, ``start.lua``); entries of expired records are
        dropped by the worker's maintenance loop or when a listing meets them."""
        return f"{self.prefix}tasks"

    def idempotency(self, key: str) -> str:
        """String: the task id first submitted with this idempotency key."""
        return f"{self.prefix}idem:{key}"

    def worker(self, worker_id: str) -> str:
        """String (JSON, with TTL): a worker's last heartbeat."""
        return f"{self.prefix}worker:{worker_id}"

    @property
    def workers(self) -> str:
        """Sorted set: worker ids scored by last heartbeat."""
        return f"{self.prefix}workers"

    def rates(self, minute: int) -> str:
        """Hash (expiring): task counts of the Unix minute ``minute``, field
        ``{second}:{kind}`` (``state.rates``)."""
        return f"{self.prefix}rates:{minute}"

    @property
    def terminal_channel(self) -> str:
        """Pub/sub channel: ``{task_id}:{status}`` when a task reaches a terminal state."""
        return f"{self.prefix}terminal"
