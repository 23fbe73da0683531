"""Task status values and the transitions allowed between them.

The Lua scripts in ``burrow/state/lua`` enforce these transitions atomically in Redis; this
module is the Python statement of the same rules (used by the in-memory store and tests).
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    """Where a task is in its life. Terminal states are final (write-once)."""

    QUEUED = "queued"  # accepted: the message is in the broker, no attempt is running
    RUNNING = "running"  # an attempt holds a lease and runs the handler
    RETRYING = "retrying"  # an attempt failed; the next one waits in a delay tier
    SUCCEEDED = "succeeded"  # terminal: the handler returned; the result is stored
    FAILED = "failed"  # terminal: dead-lettered (retries exhausted, rejected, invalid)
    CANCELLED = "cancelled"  # terminal: cancelled on request before it finished

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})

#: Allowed moves. Terminal states have none, except the explicit operator action "reopen"
#: (dead-letter replay, ``POST /tasks/{id}/retry``), which is not a transition of the
#: running system and is recorded as its own event.
TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset({TaskStatus.RUNNING, TaskStatus.FAILED, TaskStatus.CANCELLED}),
    TaskStatus.RUNNING: frozenset(
        {
            TaskStatus.QUEUED,  # the lease expired (worker died); the broker redelivers
            TaskStatus.RUNNING,  # a redelivery takes over an expired lease
            TaskStatus.RETRYING,
            TaskStatus.SUCCEEDED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
        }
    ),
    TaskStatus.RETRYING: frozenset({TaskStatus.RUNNING, TaskStatus.FAILED, TaskStatus.CANCELLED}),
    TaskStatus.SUCCEEDED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}


def can_move(current: TaskStatus, new: TaskStatus) -> bool:
    """True when ``current -> new`` is an allowed transition."""
    return new in TRANSITIONS[current]
