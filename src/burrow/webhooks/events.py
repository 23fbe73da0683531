"""What a webhook says and how its delivery is judged: pure functions.

The body (Standard Webhooks' recommended shape) is
``{"type": "task.succeeded", "timestamp": "<ISO 8601>", "data": <the task record>}`` with
``type`` one of ``task.succeeded``, ``task.failed``, ``task.cancelled``. It is built once,
when the webhook is enqueued, and every attempt sends (and signs) those same bytes.
"""

from __future__ import annotations

import email.utils
import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from burrow.tasks.record import TaskRecord, iso

#: The internal queue of webhook deliveries, ``{ns}.webhooks`` (a reserved queue name).
WEBHOOK_QUEUE = "webhooks"
#: AMQP ``type`` of a webhook delivery message; its ``message_id`` is the webhook id.
WEBHOOK_MESSAGE_TYPE = "burrow.webhook"
#: Headers of a webhook delivery message (the body is the JSON to POST).
HDR_WEBHOOK_URL = "x-burrow-webhook-url"
HDR_WEBHOOK_TASK = "x-burrow-webhook-task"
#: Bytes of a receiver's response read at most; the rest is dropped unread.
RESPONSE_CAP = 64 * 1024

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


def webhook_id(record: TaskRecord) -> str:
    """The id of the webhook of ``record``'s terminal state: the same for every retry and
    duplicate of that event, a new one when the task ends again after ``retry``."""
    stamp = repr(record.finished_at or record.updated_at or 0.0)
    digest = hashlib.sha256(f"{record.id}\n{record.status.value}\n{stamp}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def event_body(record: TaskRecord) -> bytes:
    """The JSON body of the webhook of ``record`` (a terminal record)."""
    data = record.model_dump(mode="json", exclude={"webhook"})
    event: dict[str, Any] = {
        "type": f"task.{record.status.value}",
        "timestamp": iso(record.finished_at or record.updated_at),
        "data": data,
    }
    return orjson.dumps(event)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one attempt's HTTP status means: ``delivered``; else ``final`` (no retry) or a
    retry (after ``retry_after`` seconds when the receiver said so)."""

    delivered: bool
    final: bool
    error: str | None
    retry_after: float | None = None


def judge(status_code: int, retry_after: str | None, *, now: float, cap: float) -> Verdict:
    """Judge a response: 2xx delivered; 3xx refused, never followed (``redirect_blocked``);
    410 gives up (``gone``: the receiver disabled the endpoint); 429 retries after its
    ``Retry-After`` (capped at ``cap``); anything else retries with backoff."""
    if 200 <= status_code < 300:
        return Verdict(True, False, None)
    if 300 <= status_code < 400:
        return Verdict(False, True, "redirect_blocked")
    if status_code == 410:
        return Verdict(False, True, "gone")
    if status_code == 429:
        return Verdict(False, False, "http_429", parse_retry_after(retry_after, now=now, cap=cap))
    return Verdict(False, False, f"http_{status_code}")


def parse_retry_after(value: str | None, *, now: float, cap: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (seconds or an HTTP date), between 0
    and ``cap``; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    seconds: float
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.fromtimestamp(now, tz=UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    return min(cap, max(0.0, seconds))


__all__ = [
    "DELIVERED",
    "FAILED",
    "HDR_WEBHOOK_TASK",
    "HDR_WEBHOOK_URL",
    "PENDING",
    "RESPONSE_CAP",
    "WEBHOOK_MESSAGE_TYPE",
    "WEBHOOK_QUEUE",
    "Verdict",
    "event_body",
    "judge",
    "parse_retry_after",
    "webhook_id",
]
