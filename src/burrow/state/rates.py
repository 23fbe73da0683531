"""``RateCounters``: task counts per second of the last minutes, kept in Redis, so the
dashboard's throughput chart starts full when it opens after work ran unwatched.

What is counted, and by whom:

* **started, succeeded, failed**: by the workers, which know them already (the executor's
  in-memory counters, ``burrow.worker._rates``). Once a second each worker adds what it
  counted during the previous second to the hash of that minute (``keys.rates``; field
  ``{second}:{kind}``): one ``HINCRBY`` per kind that moved and one ``EXPIRE``, sent
  together through the store's pipeline. Nothing is written per task, and nothing at all
  while a worker is idle. Several workers add to the same fields.
* **submitted**: not counted anywhere. Every record is in the listing index scored by its
  ``created_at`` (``create.lua``), so the submissions of a past interval are a ``ZCOUNT``
  there: exact for every producer (a script that submits and exits too) at no cost on the
  submit path.

Each hash expires ``WINDOW + 120`` seconds after its last write. Seconds are Unix seconds
of the writer's clock (the index uses Redis's): hosts are assumed to keep time (NTP); a
skew of a second shifts a point of a chart, nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from burrow.state.redis import RedisStateStore, _text

#: Seconds of counts kept (and read back by ``history``).
WINDOW = 300
#: What the workers count, in the order a point lists them.
KINDS = ("started", "succeeded", "failed")
_TTL = WINDOW + 120


class RateCounters:
    """Reads and adds to the per-second counters of one namespace (see the module)."""

    def __init__(self, store: RedisStateStore) -> None:
        self._store = store

    async def add(self, second: int, counts: Mapping[str, int]) -> None:
        """Add ``counts`` (kind -> how many; zeros are skipped) to ``second``'s counters.

        Raises:
            StateUnavailable: Redis did not answer (nothing was added, or only part).
            StateError: Redis refused a command.
        """
        key = self._store.keys.rates(second // 60)
        writes = [
            self._store._command("HINCRBY", key, f"{second}:{kind}", n)
            for kind, n in counts.items()
            if n
        ]
        if writes:
            await asyncio.gather(*writes, self._store._command("EXPIRE", key, _TTL))

    async def _counted(self, first: int, last: int) -> dict[str, int]:
        """Every ``{second}:{kind}`` count from second ``first`` to ``last``."""
        keys = self._store.keys
        replies = await asyncio.gather(
            *(
                self._store._command("HGETALL", keys.rates(m))
                for m in range(first // 60, last // 60 + 1)
            )
        )
        counts: dict[str, int] = {}
        for reply in replies:
            for field, value in _hash_items(reply):
                counts[field] = counts.get(field, 0) + int(value)
        return counts

    async def history(
        self, *, end: int, seconds: int = WINDOW, step: int = 2
    ) -> list[dict[str, float]]:
        """Rates per second (``{"t", "submitted", "started", "succeeded", "failed"}``) over
        the ``seconds`` before the Unix second ``end`` (rounded down to a multiple of
        ``step``), one point per ``step`` seconds, oldest
        first; ``t`` is the end of each point's interval, and intervals with nothing at all
        are points of zeros (a chart shows the quiet time too).

        Raises:
            StateUnavailable: Redis did not answer.
        """
        end -= end % step  # aligned, so that every reader cuts the same intervals
        start = end - seconds
        bounds = list(range(start, end, step))
        index = self._store.keys.tasks
        submitted, counted = await asyncio.gather(
            asyncio.gather(
                *(self._store._command("ZCOUNT", index, b, f"({b + step}") for b in bounds)
            ),
            self._counted(start, end),
        )
        points: list[dict[str, float]] = []
        for begin, created in zip(bounds, submitted, strict=True):
            point = {"t": float(begin + step), "submitted": int(created) / step}
            for kind in KINDS:
                total = sum(counted.get(f"{s}:{kind}", 0) for s in range(begin, begin + step))
                point[kind] = total / step
            points.append(point)
        return points


def _hash_items(reply: Any) -> list[tuple[str, Any]]:
    """``(field, value)`` of an ``HGETALL`` reply: a dict (RESP3, redis-py's parser) or a
    flat list (RESP2 through the raw pipeline)."""
    if isinstance(reply, dict):
        return [(_text(k), v) for k, v in reply.items()]
    return [(_text(reply[i]), reply[i + 1]) for i in range(0, len(reply), 2)]
