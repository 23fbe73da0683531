"""Delays, dead-letter replay, idempotency keys and duplicate deliveries on the real
RabbitMQ and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pydantic_core
import pytest
from pydantic import BaseModel

from burrow import Burrow, Reject, TaskContext, TaskStatus
from burrow.broker.topology import TIERS_MS
from tests.conftest import eventually, running_worker

pytestmark = pytest.mark.integration


class Item(BaseModel):
    n: int


async def test_short_delays_do_not_wait_behind_long_ones(make_app: Callable[..., Burrow]) -> None:
    """Tasks delayed 1 s start after about 1 s even when tasks delayed 6 s were submitted
    first, and the 6 s ones start after about 6 s; no delayed copy is left behind."""
    app = make_app()
    started: dict[int, float] = {}
    runs: list[int] = []

    @app.task
    async def stamp(p: Item) -> None:
        started.setdefault(p.n, time.time())
        runs.append(p.n)

    submitted: dict[int, float] = {}
    async with running_worker(app):
        for n in range(10):
            submitted[n] = time.time()
            await app.submit("stamp", {"n": n}, delay=6 if n < 5 else 1)
        await eventually(lambda: len(started) == 10, timeout=15, what="all 10 tasks started")

        async def all_queues_empty() -> bool:
            names = [app.names.queue("default")] + [app.names.delay_queue(t) for t in TIERS_MS]
            for name in names:
                stats = await app.broker.queue_stats(name)
                if stats is not None and stats.messages:
                    return False
            return True

        await eventually(all_queues_empty, timeout=5, what="work and delay queues empty")
        await asyncio.sleep(0.5)

    waits = {n: started[n] - submitted[n] for n in range(10)}
    short, long_ = range(5, 10), range(5)
    for n in short:
        assert 1.0 <= waits[n] <= 2.0, sorted(waits.items())
    for n in long_:
        assert 6.0 <= waits[n] <= 7.5, waits
    assert max(started[n] for n in short) < min(started[n] for n in long_)
    assert sorted(runs) == list(range(10))  # each ran exactly once


async def test_replayed_dead_letter_reopens_and_succeeds(make_app: Callable[..., Burrow]) -> None:
    """A dead-lettered task replayed after its cause is fixed runs again under the same id
    and ends 'succeeded', leaving the DLQ empty."""
    app = make_app()
    broken = {"on": True}
    runs: list[int] = []

    @app.task(max_retries=0)
    async def fragile(p: Item, ctx: TaskContext) -> int:
        runs.append(ctx.attempt)
        if broken["on"]:
            raise Reject("downstream is broken")
        return p.n * 10

    async with running_worker(app):
        handle = await app.submit("fragile", {"n": 4})
        failed = await app.wait(handle.id, timeout=15)
        assert failed.status is TaskStatus.FAILED
        letters = await app.dead_letters("default")
        assert [(d.task_id, d.reason) for d in letters] == [(handle.id, "rejected")]

        broken["on"] = False
        assert await app.replay_dead_letters("default") == 1
        record = await eventually(
            lambda: _terminal_succeeded(app, handle.id), timeout=15, what="replayed task done"
        )
        remaining = await app.dead_letters("default")

    assert record.id == handle.id
    assert record.result == 40
    assert record.attempts == 1  # the run count was reset by the replay
    assert runs == [1, 1]
    assert remaining == []
    statuses = [e.status for e in await app.history(handle.id)]
    assert statuses[-3:] == ["queued", "running", "succeeded"]
    assert "failed" in statuses


async def _terminal_succeeded(app: Burrow, task_id: str) -> Any:
    record = await app.get(task_id)
    return record if record.status is TaskStatus.SUCCEEDED else None


async def test_concurrent_submits_with_one_idempotency_key_run_once(
    make_app: Callable[..., Burrow],
) -> None:
    """Twenty concurrent submits with the same idempotency key return one id and one run."""
    app = make_app()
    runs: list[str] = []

    @app.task
    async def t(p: Item, ctx: TaskContext) -> int:
        runs.append(ctx.task_id)
        return p.n

    async with running_worker(app) as worker:
        handles = await asyncio.gather(
            *(app.submit("t", {"n": i}, idempotency_key="k1") for i in range(20))
        )
        ids = {h.id for h in handles}
        assert len(ids) == 1
        (task_id,) = ids
        record = await app.wait(task_id, timeout=15)
        await asyncio.sleep(1.0)
        stats = worker.statistics()

    assert sum(not h.existing for h in handles) == 1
    assert record.status is TaskStatus.SUCCEEDED
    assert runs == [task_id]
    assert stats.received == 1


async def test_duplicate_of_finished_task_is_not_run_again(
    make_app: Callable[..., Burrow],
) -> None:
    """A second copy of an already succeeded task's message is acked without running."""
    app = make_app()
    runs: list[int] = []

    @app.task
    async def once(p: Item) -> int:
        runs.append(p.n)
        return p.n

    async with running_worker(app) as worker:
        handle = await app.submit("once", {"n": 7})
        record = await app.wait(handle.id, timeout=15)
        assert record.status is TaskStatus.SUCCEEDED
        await app.broker.publish(
            app.names.queue("default"),
            pydantic_core.to_json({"n": 7}),
            message_id=handle.id,
            type_="once",
        )
        await eventually(
            lambda: worker.statistics().deduplicated == 1, timeout=10, what="duplicate acked"
        )
        await asyncio.sleep(1.0)
        stats = worker.statistics()
        after = await app.get(handle.id)

    assert runs == [7]
    assert stats.received == 2
    assert stats.succeeded == 1
    assert after.status is TaskStatus.SUCCEEDED
    assert after.attempts == 1
    assert await app.dead_letters("default") == []
