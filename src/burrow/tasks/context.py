"""``TaskContext``: what a running handler may know about its own run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog


@dataclass(frozen=True, slots=True)
class TaskContext:
    """Passed to handlers that declare a parameter annotated ``TaskContext``.

    Attributes:
        task_id: the task's id (the AMQP ``message_id``).
        name: the task name.
        queue: the queue name without the namespace prefix.
        attempt: 1 on the first run, 2 on the first retry, ...
        max_retries: retries allowed after the first run.
        trace_id: the W3C trace id carried in ``traceparent`` (or a fresh one).
        logger: a structlog logger bound to task_id, name, attempt and trace_id.
        headers: the message's application headers (read-only view).
    """

    task_id: str
    name: str
    queue: str
    attempt: int
    max_retries: int
    trace_id: str
    logger: Any = field(default_factory=lambda: structlog.get_logger("burrow.task"))
    headers: dict[str, Any] = field(default_factory=dict)

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure of this run dead-letters the task instead of retrying it."""
        return self.attempt > self.max_retries
