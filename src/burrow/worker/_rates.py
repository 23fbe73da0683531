"""``RateRecorder``: a worker's started, succeeded and failed counts, added once a second to
the per-second counters in Redis (``burrow.state.rates``) for the dashboard's chart.

It reads the executor's in-memory counters (``ExecutorStats``), which the hot path keeps
anyway: a task costs nothing more, and the worker writes one pipelined batch per second in
which something moved. If Redis does not answer, the counts wait for the next write (they
land a second or more late, not lost) and the failure is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

import structlog

from burrow._clock import Clock
from burrow.errors import StateError
from burrow.state.rates import KINDS, RateCounters
from burrow.worker.executor import ExecutorStats

log = structlog.get_logger("burrow.worker")

#: How far past a second's end its counts are written (the flush runs just after the
#: boundary, so a second's counts go under that second).
_AFTER_BOUNDARY = 0.01


def totals(stats: ExecutorStats) -> dict[str, int]:
    """The running totals of ``KINDS`` in ``stats``: a dead letter, or a message that could
    not run at all, is a failure."""
    return {
        "started": stats.started,
        "succeeded": stats.succeeded,
        "failed": stats.dead + stats.rejected_messages,
    }


class RateRecorder:
    """Adds the growth of ``stats`` since its previous write to the counters, per second."""

    def __init__(self, counters: RateCounters, stats: ExecutorStats, clock: Clock) -> None:
        self._counters = counters
        self._stats = stats
        self._clock = clock
        self._written = totals(stats)
        self._failing = False

    async def flush(self, second: int) -> None:
        """Write what was counted since the previous write under ``second``; on a Redis
        failure keep it for the next write (and log the first failure)."""
        now = totals(self._stats)
        grown = {kind: now[kind] - self._written[kind] for kind in KINDS}
        if not any(grown.values()):
            return
        try:
            await self._counters.add(second, grown)
        except StateError as exc:
            if not self._failing:
                self._failing = True
                log.warning("task rates not written to Redis; retrying", error=str(exc))
            return
        if self._failing:
            self._failing = False
            log.info("task rates written to Redis again")
        self._written = now

    async def run(self, done: asyncio.Event) -> None:
        """Write after every second boundary until ``done`` is set, then once more (the
        counts of the last, partial second)."""
        while not done.is_set():
            now = self._clock.time()
            wait = math.floor(now) + 1 - now + _AFTER_BOUNDARY
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await done.wait()
            if done.is_set():
                break
            await self.flush(math.floor(self._clock.time()) - 1)
        await self.flush(math.floor(self._clock.time()))
