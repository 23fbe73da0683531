"""Rate limits per task name, shared through Redis by two worker processes.

The worker subprocesses run ``tests.integration.test_rate_limits:app`` (this module).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from burrow import Burrow, Exchange, TaskStatus
from tests._timing import JITTER
from tests.conftest import eventually, running_worker
from tests.integration._procs import WorkerPool, wait_all

pytestmark = pytest.mark.integration

APP = "tests.integration.test_rate_limits:app"
QUEUE = "limits"
LIMIT = 5  # starts per second


def register(app: Burrow) -> Burrow:
    """The tasks of this test, on the workers' app and on the test's producer app."""

    @app.task(queue=QUEUE, rate_limit=f"{LIMIT}/s")
    async def limited(p: dict[str, Any]) -> None:
        await asyncio.sleep(0.02)

    @app.task(queue=QUEUE)
    async def unlimited(p: dict[str, Any]) -> None:
        return None

    return app


app = register(Burrow())


@pytest.fixture
def workers(namespace: str, tmp_path: Path) -> Iterator[WorkerPool]:
    pool = WorkerPool(namespace, APP, tmp_path, {"grace": "5", "worker_heartbeat": "1"})
    try:
        yield pool
    finally:
        pool.kill_all()


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of ``times`` inside one half-open window ``[t, t + window)``."""
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u < t + window) for i, t in enumerate(times))


async def consumers(app: Burrow) -> int:
    work, _ = await app.queue_stats(QUEUE)
    return work.consumers if work is not None else -1


async def test_rate_limit_holds_across_two_worker_processes(
    make_app: Callable[..., Burrow], workers: WorkerPool
) -> None:
    """30 tasks limited to 5/s on two worker processes: the recorded starts never exceed 5
    in any 1 s window (+1 for window edges), both processes ran some, all succeed; a waiting
    task is ``queued`` with its due time in the record; and an unlimited task submitted
    behind the limited backlog, on the same workers, finishes before that backlog does."""
    producer = register(make_app())
    await producer.connect()
    await producer.declare_queue(QUEUE)
    for _ in range(2):
        workers.start(concurrency=4)
    await eventually(
        lambda: _is(consumers(producer), 2), timeout=30, what="2 workers", pool=workers
    )

    handles = await producer.submit_many("limited", [{"n": n} for n in range(30)])
    behind = await producer.submit("unlimited", {})
    ids = [h.id for h in handles]

    async def one_waits_with_its_due_time() -> bool:
        now = time.time()
        for task_id in reversed(ids):
            record = await producer.get(task_id)
            if record.status is TaskStatus.QUEUED and record.eta is not None and record.eta > now:
                return True
        return False

    await eventually(
        one_waits_with_its_due_time, timeout=10, what="a queued task with its eta", pool=workers
    )
    records = await wait_all(producer, ids, timeout=60, pool=workers)
    quick = await producer.wait(behind.id, timeout=30)

    assert {r.status for r in records} == {TaskStatus.SUCCEEDED}
    assert all(r.attempts == 1 for r in records)
    starts = [r.started_at for r in records if r.started_at is not None]
    assert len(starts) == 30
    assert most_in_any_window(starts, 1.0 - JITTER) <= LIMIT, sorted(starts)
    # Evenly spaced: 30 starts at 5/s span at least 29 intervals (less the lateness of the
    # first start).
    assert max(starts) - min(starts) >= 29 / LIMIT - 2 * JITTER
    assert len({r.worker.rsplit("-", 2)[1] for r in records if r.worker}) == 2
    assert quick.status is TaskStatus.SUCCEEDED
    assert quick.finished_at is not None
    assert quick.finished_at < max(r.finished_at or 0 for r in records)


async def _is(value: Any, expected: int) -> bool:
    return await value == expected


async def test_a_subscriber_rate_limit_spaces_its_runs(make_app: Callable[..., Burrow]) -> None:
    """``@app.subscriber(..., rate_limit="4/s")``: 8 events published at once start at
    most 4 (+1 for window edges) in any second, and all succeed."""
    producer = make_app()
    orders = Exchange("orders", "topic")
    starts: list[float] = []

    @producer.subscriber(orders, "order.*", queue="sms", rate_limit="4/s")
    async def sms(p: dict[str, Any]) -> None:
        starts.append(time.monotonic())

    async with running_worker(producer):
        ids = [await producer.publish(orders, "order.created", {"n": n}) for n in range(8)]
        records = await asyncio.gather(*(producer.wait(f"{i}:sms", timeout=30) for i in ids))
    assert {r.status for r in records} == {TaskStatus.SUCCEEDED}
    assert len(starts) == 8
    assert most_in_any_window(starts, 1.0 - JITTER) <= 4, sorted(starts)
    assert max(starts) - min(starts) >= 1.0  # 8 starts at 4/s span well over a second
