"""The scan behind ``Burrow.list_tasks``: walk the ``{ns}:tasks`` index newest first.

The index is read in chunks (``ZREVRANGEBYSCORE ... LIMIT``); for a filtered listing the
status, name and queue of a chunk are read first with one pipelined ``HMGET`` each, and only
the records that match are read whole (``HGETALL``). Every read goes through the
auto-pipeline, so a chunk costs two round trips however many entries it has.

The work per call is bounded (``MAX_SCAN`` entries): a rare filter over a long index
returns a short (even empty) page with a cursor to continue from, rather than walking the
whole index in one request. Entries whose record expired are dropped from the index when met.

Within one call the scan keeps its place by ``(score, offset among equal scores)``, so
entries that share a score (the clock's resolution) are neither skipped nor repeated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from burrow.tasks.listing import Position, TaskFilter
from burrow.tasks.record import TaskRecord

#: Index entries read per round trip.
CHUNK = 200
#: Index entries examined per call at most; past it the page ends early with a cursor.
MAX_SCAN = 5000

Command = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The records of one page, where the scan stopped (None: the index is exhausted), and
    the ids met whose record had expired."""

    records: list[TaskRecord]
    position: Position | None
    expired: list[str]


class IndexScan:
    """One page of a listing."""

    def __init__(
        self,
        command: Command,
        *,
        index: str,
        task_key: Callable[[str], str],
        parse: Callable[[dict[Any, Any]], TaskRecord],
    ) -> None:
        self._command = command
        self._index = index
        self._task_key = task_key
        self._parse = parse

    async def page(self, *, after: Position | None, limit: int, where: TaskFilter) -> ScanResult:
        records: list[TaskRecord] = []
        expired: list[str] = []
        pos, offset, examined = after, 0, 0
        while examined < MAX_SCAN:
            # Unfiltered, every entry read is (normally) returned: read no more than the page
            # needs, plus one for the entry under the cursor, which is read again.
            size = CHUNK if not where.empty else min(CHUNK, limit - len(records) + 1)
            entries = await self._entries(pos, offset, size)
            fresh = [e for e in entries if after is None or after.after(*e)]
            found = await self._read(fresh, where, expired)
            for score, task_id in entries:
                examined += 1
                record = found.get(task_id)
                if record is not None:
                    records.append(record)
                offset = offset + 1 if pos is not None and score == pos.score else 1
                pos = Position(score, task_id)
                if len(records) == limit:
                    return ScanResult(records, pos, expired)
            if len(entries) < size:
                return ScanResult(records, None, expired)
        return ScanResult(records, pos, expired)

    async def _entries(
        self, pos: Position | None, offset: int, count: int
    ) -> list[tuple[float, str]]:
        top = "+inf" if pos is None else repr(pos.score)
        raw = await self._command(
            "ZREVRANGEBYSCORE", self._index, top, "-inf", "WITHSCORES", "LIMIT", offset, count
        )
        return _pairs(raw)

    async def _read(
        self, entries: list[tuple[float, str]], where: TaskFilter, expired: list[str]
    ) -> dict[str, TaskRecord]:
        """The records among ``entries`` that match ``where``; ids of gone ones to ``expired``."""
        ids = [task_id for _, task_id in entries]
        if not where.empty and ids:
            heads = await asyncio.gather(
                *(self._command("HMGET", self._task_key(i), "status", "name", "queue") for i in ids)
            )
            candidates = []
            for task_id, (status, name, queue) in zip(ids, heads, strict=True):
                if status is None:
                    expired.append(task_id)
                elif where.matches(_text(status), _text(name), _text(queue)):
                    candidates.append(task_id)
            ids = candidates
        raws = await asyncio.gather(*(self._command("HGETALL", self._task_key(i)) for i in ids))
        found: dict[str, TaskRecord] = {}
        for task_id, raw in zip(ids, raws, strict=True):
            if not raw:
                expired.append(task_id)
                continue
            record = self._parse(_mapping(raw))
            if where.matches_record(record):  # the status may have moved since the HMGET
                found[task_id] = record
        return found


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _pairs(raw: Any) -> list[tuple[float, str]]:
    """``WITHSCORES`` replies as ``(score, member)``: flat under RESP2, pairs under RESP3."""
    if raw and isinstance(raw[0], list | tuple):
        return [(float(s), _text(m) or "") for m, s in raw]
    return [(float(raw[i + 1]), _text(raw[i]) or "") for i in range(0, len(raw), 2)]


def _mapping(raw: Any) -> dict[Any, Any]:
    """``HGETALL`` as a dict: a flat list under RESP2 (raw pipeline replies), a map under RESP3."""
    if isinstance(raw, dict):
        return raw
    return {raw[i]: raw[i + 1] for i in range(0, len(raw), 2)}


__all__ = ["CHUNK", "MAX_SCAN", "IndexScan", "ScanResult"]
