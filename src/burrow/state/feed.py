"""``TaskFeed``: which task records changed, for live views (the dashboard's event stream).

It polls instead of instrumenting the transitions: the Lua scripts on the hot path
(``create``, ``start``, ``finish``) stay as they are, and the cost is paid only while
someone watches. Each ``poll`` reads

* the listing index for records created since the previous poll (an exact count, and the
  newest ``track`` of them as changes);
* the ``running`` set, so tasks that start running (also reopened ones) are picked up;
* the summary fields of every task it tracks (pipelined ``HMGET``), and reports those whose
  status, attempts or ``updated_at`` moved. A tracked task is dropped once terminal.

``terminal()`` follows the channel ``finish.lua`` and ``cancel.lua`` publish on, so a
task's end is seen at once (``touch`` then makes the next poll re-read it) and completions
are counted exactly, not sampled.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from burrow.errors import StateUnavailable
from burrow.state.redis import RedisStateStore, _text

_FIELDS = (
    "id",
    "name",
    "queue",
    "status",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "worker",
)
_TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """The fields of a record a list view shows (no payload, result or error)."""

    id: str
    name: str
    queue: str
    status: str
    attempts: int
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    updated_at: float | None
    worker: str | None

    @property
    def terminal(self) -> bool:
        return self.status in _TERMINAL

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FeedTick:
    """What one ``poll`` found: changed tasks and how many records were created."""

    changes: list[TaskSummary]
    created: int  # exact, across all queues
    created_by_queue: dict[str, int]  # among the newest ``track`` created (exact below that)


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, b"", "") else None
    except (TypeError, ValueError):
        return None


def _pairs(reply: list[Any]) -> list[tuple[str, float]]:
    """``(member, score)`` from a ``WITHSCORES`` reply, flat (RESP2) or paired (RESP3)."""
    if reply and isinstance(reply[0], list | tuple):
        return [(_text(m), float(sc)) for m, sc in reply]
    return [(_text(reply[i]), float(reply[i + 1])) for i in range(0, len(reply), 2)]


def _summary(task_id: str, values: list[Any]) -> TaskSummary | None:
    fields = dict(zip(_FIELDS, values, strict=True))
    if fields["status"] is None:
        return None  # expired or deleted
    return TaskSummary(
        id=task_id,
        name=_text(fields["name"]),
        queue=_text(fields["queue"]),
        status=_text(fields["status"]),
        attempts=int(_float(fields["attempts"]) or 0),
        created_at=_float(fields["created_at"]),
        started_at=_float(fields["started_at"]),
        finished_at=_float(fields["finished_at"]),
        updated_at=_float(fields["updated_at"]),
        worker=_text(fields["worker"]) or None,
    )


class TaskFeed:
    """See the module docstring. One per watching process; not safe for concurrent polls."""

    def __init__(self, store: RedisStateStore, *, track: int = 1000, first: int = 100) -> None:
        self._store = store
        self._track = track
        self._first = first
        self._position: float | None = None  # score (created_at) of the newest seen entry
        self._at_position: set[str] = set()  # ids seen with exactly that score
        self._known: dict[str, tuple[str, int, float | None]] = {}
        self._touched: set[str] = set()

    async def _cmd(self, *args: Any) -> Any:
        # Through the store's auto-pipeline: many concurrent reads go out as one batch, and
        # a cancellation is never swallowed (see RedisStateStore.reap).
        return await self._store._command(*args)

    def touch(self, task_id: str) -> None:
        """Re-read ``task_id`` at the next poll (a notification said it changed); beyond
        ``track`` touches per poll the rest are left out (a list view cannot show more)."""
        if len(self._touched) < self._track:
            self._touched.add(task_id)

    async def _summaries(self, ids: list[str]) -> list[TaskSummary | None]:
        keys = self._store.keys
        replies = await asyncio.gather(*(self._cmd("HMGET", keys.task(i), *_FIELDS) for i in ids))
        return [_summary(i, list(r)) for i, r in zip(ids, replies, strict=True)]

    async def _begin(self) -> None:
        """Start from the newest entry; remember the newest ``first`` tasks' states silently."""
        newest = await self._cmd(
            "ZREVRANGE", self._store.keys.tasks, 0, self._first - 1, "WITHSCORES"
        )
        pairs = _pairs(newest)
        self._position = pairs[0][1] if pairs else 0.0
        self._at_position = {i for i, score in pairs if score == self._position}
        ids = [i for i, _ in pairs]
        for summary in await self._summaries(ids):
            if summary is not None and not summary.terminal:
                self._known[summary.id] = (summary.status, summary.attempts, summary.updated_at)

    async def _created(self) -> tuple[list[str], int]:
        """Ids created since the previous poll (newest ``track``) and how many there were."""
        index, low = self._store.keys.tasks, repr(self._position or 0.0)
        count = int(await self._cmd("ZCOUNT", index, low, "+inf")) - len(self._at_position)
        if count <= 0:
            return [], 0
        found = await self._cmd(
            "ZREVRANGEBYSCORE", index, "+inf", low, "WITHSCORES", "LIMIT", 0, self._track
        )
        pairs = _pairs(found)
        if not pairs:
            return [], 0
        fresh = [i for i, _ in pairs if i not in self._at_position]
        top = pairs[0][1]
        if self._position is None or top > self._position:
            self._position, self._at_position = top, set()
        self._at_position |= {i for i, score in pairs if score == top}
        return fresh, count

    async def poll(self) -> FeedTick:
        """Read what changed since the previous poll (the first poll only positions).

        Raises:
            StateUnavailable: Redis did not answer.
        """
        if self._position is None:
            await self._begin()
            return FeedTick([], 0, {})
        fresh, created = await self._created()
        running = await self._cmd("ZRANGE", self._store.keys.running, 0, self._track - 1)
        touched, self._touched = self._touched, set()
        ids = list(dict.fromkeys([*self._known, *fresh, *map(_text, running), *touched]))
        changes: list[TaskSummary] = []
        by_queue: Counter[str] = Counter()
        new = set(fresh)
        for task_id, summary in zip(ids, await self._summaries(ids), strict=True):
            if summary is None:
                self._known.pop(task_id, None)
                continue
            if task_id in new:
                by_queue[summary.queue] += 1
            state = (summary.status, summary.attempts, summary.updated_at)
            if self._known.get(task_id) != state:
                changes.append(summary)
            if summary.terminal:
                self._known.pop(task_id, None)
            else:
                self._known[task_id] = state
        while len(self._known) > self._track:  # keep the newest: drop the oldest first
            self._known.pop(next(iter(self._known)))
        return FeedTick(changes, created, dict(by_queue))

    async def status_counts(self, sample: int) -> dict[str, int]:
        """How many of the newest ``sample`` tasks are in each status."""
        ids = [
            _text(i) for i in await self._cmd("ZREVRANGE", self._store.keys.tasks, 0, sample - 1)
        ]
        keys = self._store.keys
        statuses = await asyncio.gather(*(self._cmd("HGET", keys.task(i), "status") for i in ids))
        return dict(Counter(_text(s) for s in statuses if s is not None))

    async def terminal(self) -> AsyncIterator[tuple[str, str]]:
        """``(task_id, status)`` for every task reaching a terminal state, as published;
        resubscribes after a lost connection (notifications sent meanwhile are missed: the
        polls still see those tasks)."""
        channel = self._store.keys.terminal_channel
        while True:
            try:
                pubsub = self._store._redis().pubsub(ignore_subscribe_messages=True)
                async with pubsub:
                    await pubsub.subscribe(channel)
                    async for message in pubsub.listen():
                        task_id, _, status = _text(message["data"]).rpartition(":")
                        yield task_id, status
            except (OSError, ConnectionError, StateUnavailable, aioredis.RedisError):
                await asyncio.sleep(1.0)
