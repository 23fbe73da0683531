"""Run slots: a worker holds ``4 x concurrency`` deliveries per queue by default (the
prefetch) but runs at most ``concurrency`` handlers of the queue at once; the others wait
for a slot without being started (their records stay ``queued``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from burrow import Burrow, TaskStatus
from burrow.config import PREFETCH_MULTIPLIER
from tests.conftest import eventually, running_worker

pytestmark = pytest.mark.integration

CONCURRENCY = 3
TASKS = 30


async def test_concurrency_bounds_handlers_while_the_prefetch_holds_more(
    make_app: Callable[..., Burrow],
) -> None:
    app = make_app()
    release = asyncio.Event()
    running = 0
    peak = 0

    @app.task(queue="slots")
    async def hold(p: dict[str, Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await release.wait()
        finally:
            running -= 1

    handles = await app.submit_many("hold", [{} for _ in range(TASKS)])
    prefetch = PREFETCH_MULTIPLIER * CONCURRENCY
    async with running_worker(app, concurrency=CONCURRENCY) as worker:
        assert worker.prefetch == prefetch
        await eventually(lambda: running == CONCURRENCY, timeout=10, what="3 handlers running")

        async def held() -> bool:
            stats = await app.broker.queue_stats(app.names.queue("slots"))
            return stats is not None and stats.messages == TASKS - prefetch

        # The worker took a full prefetch from the broker, and still runs only 3.
        await eventually(held, timeout=10, what=f"{prefetch} deliveries held by the worker")
        await asyncio.sleep(0.3)
        assert running == CONCURRENCY
        records = [await app.get(h.id) for h in handles]
        statuses = [r.status for r in records]
        assert statuses.count(TaskStatus.RUNNING) == CONCURRENCY
        assert statuses.count(TaskStatus.QUEUED) == TASKS - CONCURRENCY

        release.set()
        done = [await app.wait(h.id, timeout=30) for h in handles]
    assert [r.status for r in done] == [TaskStatus.SUCCEEDED] * TASKS
    assert peak == CONCURRENCY
