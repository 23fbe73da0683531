"""The message envelope on the wire (docs/wire-format.md), as pure data.

A task message is a JSON body (the payload itself) plus AMQP properties: ``message_id`` =
task id, ``type`` = task name, ``content_type`` = ``application/json``, ``delivery_mode`` = 2,
``timestamp``, and the headers named here. This module parses incoming properties into an
``Envelope`` and says why a message is unusable (``BadMessage.reason``); building AMQP
messages is the broker adapter's job.
"""

from __future__ import annotations

import math
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The attempt this message carries (1 for the first run). Ours, never ``x-death``, because
#: ``x-death`` counting differs between RabbitMQ 3.10 and 3.13+ (3.13 stopped counting
#: some redeliveries there), so it cannot be trusted as a run count.
HDR_ATTEMPT = "x-burrow-attempt"
#: Unix time in integer milliseconds before which the task must not start (delays, retries).
#: Integers, because AMQP client libraries encode floats in headers with too little
#: precision for a timestamp (pamqp rounds a 1.8e9 float by up to a minute).
HDR_ETA = "x-burrow-eta"
#: The delay tier (milliseconds, as text) a delayed message is routed to. No ``x-`` prefix:
#: a headers exchange ignores ``x-`` binding arguments, so every tier would match.
HDR_TIER = "burrow-delay-tier"
#: Set on dead letters: machine-readable reason, JSON error, runs made, origin queue, time.
HDR_REASON = "x-burrow-reason"
HDR_ERROR = "x-burrow-error"
HDR_RUNS = "x-burrow-runs"
HDR_ORIGIN = "x-burrow-queue"
HDR_DEAD_AT = "x-burrow-dead-at"
HDR_HISTORY = "x-burrow-history"
#: W3C trace context (https://www.w3.org/TR/trace-context/).
HDR_TRACEPARENT = "traceparent"
#: Set by the AMQP adapter, instead of every property, on a message whose properties could
#: not be decoded (a ``message_id`` that is not UTF-8...): why. Dead-lettered as
#: ``bad_properties``.
HDR_BAD_PROPERTIES = "x-burrow-bad-properties"

JSON = "application/json"
MAX_ATTEMPT = 1_000_000
#: The longest task id, in UTF-8 bytes: every copy the worker publishes carries the task id
#: as its ``message_id``, an AMQP short string (at most 255 bytes).
MAX_TASK_ID_BYTES = 255
#: The dead-letter reason of a message whose ``message_id`` (or the task id derived from it)
#: cannot be a task id (``task_id_problem``).
BAD_MESSAGE_ID = "bad_message_id"

# W3C trace context, version 00 form (https://www.w3.org/TR/trace-context/#traceparent-header):
# version, trace id, parent (span) id and flags, lower-case hex. ``fullmatch`` only: ``$``
# would also accept a trailing newline.
_TRACEPARENT_RE = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16


class BadMessage(Exception):
    """A message that can never run; it is dead-lettered with ``reason``.

    Not a ``BurrowError``: the worker handles it, callers never see it.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a worker needs from one delivery."""

    task_id: str
    name: str
    attempt: int
    eta: float | None
    trace_id: str
    traceparent: str | None
    body: bytes


def new_task_id() -> str:
    """A fresh task id (UUID4 text)."""
    return str(uuid.uuid4())


def new_traceparent() -> str:
    """A fresh W3C ``traceparent`` for a task that arrives without one."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def trace_id_of(traceparent: Any) -> str | None:
    """The trace id inside a ``traceparent`` header, or None when it is absent or not valid.

    Valid is the W3C version-00 form exactly: ``vv-<32 hex>-<16 hex>-ff`` in lower case,
    where the version is not ``ff`` (forbidden) and neither id is all zeros (invalid).
    Every place that reads a ``traceparent`` (HTTP requests, message headers) goes through
    this check, so an invalid one is never adopted: a new trace starts instead.
    """
    if not isinstance(traceparent, str) or len(traceparent) != 55:
        return None
    m = _TRACEPARENT_RE.fullmatch(traceparent)
    if m is None or m.group(1) == "ff":
        return None
    trace_id = m.group(2)
    if trace_id == _ZERO_TRACE_ID or m.group(3) == _ZERO_SPAN_ID:
        return None
    return trace_id


def valid_traceparent(traceparent: Any) -> str | None:
    """``traceparent`` itself when it is valid (``trace_id_of``), else None."""
    return traceparent if trace_id_of(traceparent) is not None else None


def task_id_problem(task_id: str) -> str | None:
    """Why ``task_id`` cannot be a task id, or None when it can.

    A task id is printable text (``str.isprintable``: no control characters such as CR,
    LF or NUL, no line or paragraph separators, no format or unassigned characters) of at
    most ``MAX_TASK_ID_BYTES`` bytes in UTF-8. Ids end up in HTTP headers (``Location``),
    log lines and Redis keys, and every copy of a message carries its id as the AMQP
    ``message_id``.
    """
    if not task_id.isprintable():
        return f"the id {task_id!r} contains control or other non-printable characters"
    size = len(task_id) if task_id.isascii() else len(task_id.encode())
    if size > MAX_TASK_ID_BYTES:
        return f"the id is {size} bytes in UTF-8; at most {MAX_TASK_ID_BYTES} are allowed"
    return None


def parse_envelope(
    *,
    message_id: str | None,
    type_: str | None,
    content_type: str | None,
    content_encoding: str | None,
    headers: Mapping[str, Any] | None,
    body: bytes,
    max_bytes: int,
) -> Envelope:
    """Check one delivery's properties and turn them into an ``Envelope``.

    The body is not parsed here (the handler's model validates it straight from bytes),
    but its size and content type are checked first so nothing large or foreign is decoded.

    ``message_id`` is the task id the message runs under (for an event, the subscriber's id
    derived from it): it must pass ``task_id_problem``.

    Raises:
        BadMessage: ``too_large``, ``bad_properties``, ``bad_content_type``,
            ``missing_type``, ``bad_message_id`` or ``schema_error``.
    """
    if len(body) > max_bytes:
        raise BadMessage("too_large", f"body is {len(body)} bytes, limit {max_bytes}")
    if headers and HDR_BAD_PROPERTIES in headers:
        raise BadMessage("bad_properties", str(headers[HDR_BAD_PROPERTIES]))
    _check_content(content_type, content_encoding)
    if not type_:
        raise BadMessage("missing_type", "the AMQP 'type' property must name the task")
    if message_id:
        problem = task_id_problem(message_id)
        if problem is not None:
            raise BadMessage(BAD_MESSAGE_ID, f"message_id: {problem}")
    hdrs = headers or {}
    traceparent = hdrs.get(HDR_TRACEPARENT)
    trace_id = trace_id_of(traceparent)
    if trace_id is None:
        traceparent = None
        trace_id = secrets.token_hex(16)
    return Envelope(
        # A foreign producer may leave message_id unset: the task still runs under a fresh
        # id, but then a redelivery after a crash cannot be recognised as the same task.
        task_id=message_id or new_task_id(),
        name=type_,
        attempt=_attempt(hdrs.get(HDR_ATTEMPT)),
        eta=_eta(hdrs.get(HDR_ETA)),
        trace_id=trace_id,
        traceparent=traceparent,
        body=body,
    )


def _check_content(content_type: str | None, content_encoding: str | None) -> None:
    if content_type:
        base = content_type.split(";", 1)[0].strip().lower()
        charset = content_type.lower().partition("charset=")[2].strip()
        # text/plain is what several tutorials' producers send for JSON bodies.
        if base not in (JSON, "text/plain") or charset not in ("", "utf-8", "utf8"):
            raise BadMessage("bad_content_type", f"content_type {content_type!r} is not JSON")
    if content_encoding and content_encoding.lower() not in ("utf-8", "utf8", "identity"):
        raise BadMessage(
            "bad_content_type", f"content_encoding {content_encoding!r} is not supported"
        )


def _attempt(raw: Any) -> int:
    if raw is None:
        return 1
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_ATTEMPT:
        raise BadMessage("schema_error", f"header {HDR_ATTEMPT}={raw!r} is not an attempt number")
    return raw


def _eta(raw: Any) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise BadMessage("schema_error", f"header {HDR_ETA}={raw!r} is not a Unix time in ms")
    return raw / 1000


def eta_header(eta: float) -> int:
    """The ``x-burrow-eta`` value for Unix time ``eta`` (seconds), rounded up to the next
    millisecond so a task never starts before the time asked for."""
    return math.ceil(eta * 1000)
