"""Structured logs (structlog): JSON lines, or readable console output on a terminal.

Every line about a task carries ``task_id``, ``task``, ``attempt`` and ``trace_id``: the
worker binds them in one context variable for the length of a delivery
(``bind_task``/``unbind_task``; one ``set`` each, where structlog's ``bind_contextvars``
costs several times that on the hot path), and the ``merge_task_context`` processor adds
them to every line, so the worker's own lines, a handler's ``structlog.get_logger()`` lines
and ``TaskContext.logger`` all have them. An application that configures structlog itself
adds ``merge_task_context`` to its processors. Standard-library log records (aio-pika,
httpx, a handler's ``logging`` calls) go through the same processors and renderer.

Payloads and secrets never reach the logs unless asked for: the redaction processor masks
URL passwords and any value under a key that names a secret, and hides values under
payload keys (``payload``, ``body``, ``result``, ``args``, ``kwargs``) unless
``BURROW_LOG_PAYLOADS`` is true. ``redacting()`` adds that redaction to whatever structlog
set-up is in force for a block, when it lacks it: ``burrow.testing.running_worker`` runs a
worker under it, so a test's worker hides payloads as ``burrow worker`` does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from typing import Any, TextIO

import structlog
from pydantic import TypeAdapter, ValidationError

_SECRET_KEYS = re.compile(r"(password|secret|token|api_key|authorization)", re.I)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
#: Keys whose values are task data: hidden unless ``BURROW_LOG_PAYLOADS`` is true.
PAYLOAD_KEYS = frozenset({"payload", "body", "result", "args", "kwargs"})
HIDDEN = "<hidden: set BURROW_LOG_PAYLOADS=true to log payloads>"
#: The context every line about a task carries (bound by the worker for each delivery).
TASK_KEYS = ("task_id", "task", "attempt", "trace_id")

_log_payloads = False
#: The bound task context of the current delivery (None outside one).
_task_context: ContextVar[dict[str, Any] | None] = ContextVar("burrow_task", default=None)


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets in keys and URL passwords in values; hide
    payloads unless ``BURROW_LOG_PAYLOADS`` is on."""
    return _redact(event, log_payloads=_log_payloads)


class Redactor:
    """structlog processor: ``redact`` with its own payload switch (``redacting`` uses it,
    so a block's setting never changes the process's)."""

    __slots__ = ("log_payloads",)

    def __init__(self, *, log_payloads: bool) -> None:
        self.log_payloads = log_payloads

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return _redact(event, log_payloads=self.log_payloads)


def _redact(event: MutableMapping[str, Any], *, log_payloads: bool) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key in PAYLOAD_KEYS:
            if not log_payloads:
                event[key] = HIDDEN
            elif isinstance(value, bytes | bytearray):
                event[key] = bytes(value).decode("utf-8", errors="replace")
        elif _SECRET_KEYS.search(key):
            event[key] = "***"
        elif isinstance(value, str) and "://" in value:
            event[key] = _URL_PASSWORD.sub(r"\1***@", value)
    return event


@contextlib.contextmanager
def redacting(*, log_payloads: bool = False) -> Iterator[None]:
    """For the block, make structlog's processors in force redact as ``configure_logging``'s
    do (``merge_task_context`` and redaction, just before the last processor, which renders
    or captures), unless they redact already; put them back as they were afterwards.

    The processor list is changed in place, as ``structlog.testing.capture_logs`` does:
    loggers already bound hold that very list. Not thread-safe: enter and leave it while no
    other thread logs.
    """
    processors = structlog.get_config()["processors"]
    if any(p is redact or isinstance(p, Redactor) for p in processors):
        yield
        return
    added: list[Any] = [] if merge_task_context in processors else [merge_task_context]
    added.append(Redactor(log_payloads=log_payloads))
    at = max(len(processors) - 1, 0)
    processors[at:at] = added
    try:
        yield
    finally:
        for processor in added:
            for i, present in enumerate(processors):
                if present is processor:
                    del processors[i]
                    break


def bind_task(task_id: str, name: str, attempt: int, trace_id: str) -> None:
    """Bind a task's log context (``TASK_KEYS``) for the current asyncio task/context."""
    _task_context.set({"task_id": task_id, "task": name, "attempt": attempt, "trace_id": trace_id})


def bind_attempt(attempt: int) -> None:
    """Correct the bound ``attempt`` (the run count from the record, once it is known)."""
    bound = _task_context.get()
    if bound is not None:
        _task_context.set({**bound, "attempt": attempt})


def unbind_task() -> None:
    """Drop the task context bound by ``bind_task``."""
    _task_context.set(None)


def merge_task_context(
    logger: Any, method_name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add the bound task context to the line (keys the line sets
    itself win)."""
    bound = _task_context.get()
    if bound is not None:
        for key, value in bound.items():
            event.setdefault(key, value)
    return event


def _env_bool(name: str) -> bool:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return False
    try:
        return TypeAdapter(bool).validate_python(raw)
    except ValidationError:
        raise SystemExit(f"{name}={raw!r} is not a boolean (use true or false)") from None


def _env_level(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    level = logging.getLevelName(raw.upper())
    if not isinstance(level, int):
        raise SystemExit(f"{name}={raw!r} is not a log level (debug, info, warning, error)")
    return level


def configure_logging(
    fmt: str = "auto",
    level: int | None = None,
    *,
    log_payloads: bool | None = None,
    stream: TextIO | None = None,
) -> None:
    """Set up structlog and the stdlib root logger (aio-pika and httpx log through it).

    Args:
        fmt: ``json``, ``console``, or ``auto`` (console when the stream is a terminal).
        level: the lowest level burrow logs (default ``BURROW_LOG_LEVEL``, else info);
            standard-library loggers stay at warning.
        log_payloads: log task payloads and results (default ``BURROW_LOG_PAYLOADS``).
        stream: where lines go (default stderr).
    """
    global _log_payloads
    out = stream or sys.stderr
    if level is None:
        level = _env_level("BURROW_LOG_LEVEL", logging.INFO)
    _log_payloads = _env_bool("BURROW_LOG_PAYLOADS") if log_payloads is None else log_payloads
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        merge_task_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_burrow", False)]:
        root.removeHandler(old)
    handler._burrow = True  # type: ignore[attr-defined]
    if not root.handlers:
        root.addHandler(handler)
    root.setLevel(logging.WARNING)


__all__ = [
    "HIDDEN",
    "PAYLOAD_KEYS",
    "TASK_KEYS",
    "Redactor",
    "bind_attempt",
    "bind_task",
    "configure_logging",
    "redact",
    "redacting",
    "unbind_task",
]
