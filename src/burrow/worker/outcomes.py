"""``Retry`` and ``Reject``: how a handler steers its own outcome.

They are control flow, not errors, so they do not derive from ``BurrowError`` (and
``except BurrowError`` never catches them).
"""

from __future__ import annotations


class Retry(Exception):
    """Raise in a handler to run the task again after ``delay`` seconds.

    Counts as an attempt: when no retries are left the task is dead-lettered.

    Args:
        delay: seconds to wait; None uses the task's backoff policy.
        reason: a note recorded in the task's history.
    """

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        if delay is not None and delay < 0:
            raise ValueError("Retry delay must be >= 0")
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class Reject(Exception):
    """Raise in a handler to fail the task at once, without retrying (it is dead-lettered).

    Args:
        reason: why; stored in the record's error and the dead letter's headers.
    """

    def __init__(self, reason: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason
