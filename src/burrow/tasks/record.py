"""The task record: what the state store keeps about one task, as callers see it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from burrow.tasks.status import TaskStatus


class TaskError(BaseModel):
    """Why an attempt or a task failed."""

    model_config = ConfigDict(frozen=True)

    type: str
    message: str
    traceback: str | None = None
    reason: str | None = None  # machine-readable: max_retries, rejected, validation_error, ...


class TaskEvent(BaseModel):
    """One entry of a task's history."""

    model_config = ConfigDict(frozen=True, extra="allow")

    at: float
    status: str
    attempt: int = 0
    worker: str | None = None
    error: TaskError | None = None
    note: str | None = None


class WebhookOutcome(BaseModel):
    """Where the webhook of a task's terminal state stands (``burrow.webhooks``).

    ``status`` is ``pending`` (enqueued, being tried), ``delivered`` or ``failed`` (given
    up). ``last_error`` is machine-readable (``http_500``, ``timeout``, ``connect_error``,
    ``redirect_blocked``, ``ssrf_blocked``, ``gone``, ``max_attempts`` ...). It never
    changes the task's own status.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    status: str
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    detail: str | None = None
    next_attempt_at: float | None = None
    updated_at: float | None = None


class TaskRecord(BaseModel):
    """A task's state, result and error as stored in Redis.

    ``attempts`` counts runs started (1 after the first run); ``max_retries`` is the task's
    policy at submit time (``max_retries=N`` allows N+1 runs).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    queue: str
    status: TaskStatus
    payload: Any = None
    result: Any = None
    error: TaskError | None = None
    attempts: int = 0
    max_retries: int | None = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    eta: float | None = None
    trace_id: str | None = None
    worker: str | None = None
    webhook: WebhookOutcome | None = None

    @property
    def terminal(self) -> bool:
        return self.status.terminal


def iso(ts: float | None) -> str | None:
    """Format a Unix timestamp as ISO 8601 (UTC), for humans."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()
