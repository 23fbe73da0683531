"""Priorities under a backlog, on quorum and classic queues: priority lanes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from burrow import Burrow, Reject, Retry, TaskContext, TaskStatus
from burrow.broker.topology import LANES
from tests.conftest import eventually, running_worker
from tests.integration._procs import wait_all

pytestmark = pytest.mark.integration

PREFETCH = 2


def lanes_cleaned_up(make_app: Callable[..., Burrow], queue: str) -> None:
    """The fixture deletes ``{ns}.{q}`` and ``{ns}.{q}.dlq`` of each queue it knows; the
    lanes ``{ns}.{q}.high`` and ``{ns}.{q}.low`` are such names too."""
    make_app.extra_queues.update(f"{queue}.{lane}" for lane in LANES if lane != "normal")  # type: ignore[attr-defined]


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
async def test_high_priority_tasks_start_first_under_a_backlog(
    make_app: Callable[..., Burrow], queue_type: Any
) -> None:
    """30 low (priority 1) then 10 high (priority 9, one ``submit_many``) tasks wait with
    no worker running; one
    worker with concurrency 1 then starts the 10 high ones before all but at most a
    prefetch of the low ones. ``queue_stats`` counts the messages of every lane."""
    queue = f"ranked_{queue_type}"
    lanes_cleaned_up(make_app, queue)
    app = make_app(prefetch=PREFETCH)

    @app.task(queue=queue, queue_type=queue_type, priorities=True)
    async def work(p: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)

    low = [await app.submit("work", {"n": n}, priority=1) for n in range(30)]
    high = await app.submit_many("work", [{"n": n} for n in range(10)], priority=9)
    work_stats, _ = await app.queue_stats(queue)
    assert work_stats is not None
    assert work_stats.messages == 40

    async with running_worker(app, concurrency=1):
        records = await wait_all(app, [h.id for h in low + high], timeout=60)

    assert {r.status for r in records} == {TaskStatus.SUCCEEDED}
    started = {r.id: r.started_at or 0.0 for r in records}
    last_high = max(started[h.id] for h in high)
    low_before = sum(1 for h in low if started[h.id] < last_high)
    assert low_before <= PREFETCH, (low_before, sorted(started.values()))


async def test_retries_delays_and_dead_letters_keep_working_on_lanes(
    make_app: Callable[..., Burrow],
) -> None:
    """On a queue with lanes: a retried task of each band runs again and succeeds, a
    delayed one starts, a rejected one reaches the queue's one dead-letter queue, and a
    foreign producer's message published straight to the high lane runs."""
    queue = "lanes"
    lanes_cleaned_up(make_app, queue)
    app = make_app()

    @app.task(queue=queue, priorities=True)
    async def flaky(p: dict[str, Any], ctx: TaskContext) -> int:
        if ctx.attempt == 1:
            raise Retry(delay=0.2)
        return ctx.attempt

    @app.task(queue=queue)
    async def doomed(p: dict[str, Any]) -> None:
        raise Reject("no")

    async with running_worker(app):
        retried = [await app.submit("flaky", {}, priority=p) for p in (0, 5, 9)]
        delayed = await app.submit("flaky", {}, priority=9, delay=0.5)
        dead = await app.submit("doomed", {}, priority=8)
        await app.broker.publish(
            app.names.lane(queue, "high"), b"{}", message_id="foreign-1", type_="flaky"
        )
        ids = [h.id for h in [*retried, delayed]] + ["foreign-1"]
        records = await wait_all(app, ids, timeout=30)
        assert [(r.status, r.attempts, r.result) for r in records] == [
            (TaskStatus.SUCCEEDED, 2, 2)
        ] * 5
        failed = await app.wait(dead.id, timeout=10)
        assert failed.status is TaskStatus.FAILED

        async def dead_lettered() -> bool:
            return any(d.task_id == dead.id for d in await app.dead_letters(queue))

        await eventually(dead_lettered, timeout=10, what="the dead letter in the queue's dlq")
