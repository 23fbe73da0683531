"""Listing tasks: the filter and the opaque paging cursor of ``Burrow.list_tasks``.

The listing walks the ``{ns}:tasks`` index (a Redis sorted set of task ids scored by
``created_at``) newest first. A cursor is a *position* in that order, ``(score, task id)``,
not an offset: tasks submitted while a client pages have higher scores and land before the
first page, so they never shift later pages, and each task is listed at most once.

The cursor is URL-safe base64 of ``v1|<score>|<task id>``; the score is ``repr`` of a
float, which round-trips exactly, so the next page starts right after the last entry seen.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass

from burrow.errors import ConfigurationError
from burrow.tasks.record import TaskRecord
from burrow.tasks.status import TaskStatus

#: Largest page ``list_tasks`` returns.
MAX_LIMIT = 500
_VERSION = "v1"
_MAX_CURSOR = 1024


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the index: newest first, ties on the score broken by id, descending."""

    score: float
    task_id: str

    def after(self, score: float, task_id: str) -> bool:
        """True when the entry ``(score, task_id)`` comes after this position."""
        return score < self.score or (score == self.score and task_id < self.task_id)


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """What ``list_tasks`` keeps; None matches anything."""

    status: TaskStatus | None = None
    name: str | None = None
    queue: str | None = None

    @property
    def empty(self) -> bool:
        return self.status is None and self.name is None and self.queue is None

    def matches(self, status: str | None, name: str | None, queue: str | None) -> bool:
        return (
            (self.status is None or status == self.status.value)
            and (self.name is None or name == self.name)
            and (self.queue is None or queue == self.queue)
        )

    def matches_record(self, record: TaskRecord) -> bool:
        return self.matches(record.status.value, record.name, record.queue)


def check_limit(limit: int) -> int:
    """``limit`` itself when it is 1 to ``MAX_LIMIT``.

    Raises:
        ConfigurationError: out of range (or not an integer).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ConfigurationError(f"limit must be an integer from 1 to {MAX_LIMIT}, not {limit!r}")
    return limit


def encode_cursor(position: Position) -> str:
    """The opaque cursor of ``position``."""
    raw = f"{_VERSION}|{position.score!r}|{position.task_id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor from ``encode_cursor`` stands for.

    Raises:
        ConfigurationError: the text is not a cursor this version of burrow produced.
    """
    bad = ConfigurationError("malformed cursor: pass the next_cursor of a previous page unchanged")
    if not isinstance(cursor, str) or not cursor or len(cursor) > _MAX_CURSOR:
        raise bad
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
        version, score_text, task_id = text.split("|", 2)
        score = float(score_text)
    except (ValueError, UnicodeError, binascii.Error):
        raise bad from None
    if version != _VERSION or not task_id or not math.isfinite(score):
        raise bad
    return Position(score, task_id)


__all__ = [
    "MAX_LIMIT",
    "Position",
    "TaskFilter",
    "check_limit",
    "decode_cursor",
    "encode_cursor",
]
