"""Worker processes that are killed, stopped or crash, on the real RabbitMQ and Redis.

Workers run as subprocesses (``python -m burrow worker tests.integration.crash_app:app``);
the app journals each run of ``sleep_ms`` to a file, so the test can see which task started
and finished on which process.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from burrow import Burrow, TaskStatus
from tests.conftest import eventually
from tests.integration._journal import open_runs, read_journal
from tests.integration._procs import (
    FAULT_GRACE,
    WorkerPool,
    alive,
    children_of,
    exit_code_within,
    fault_pool,
    wait_all,
)
from tests.integration.crash_app import register

pytestmark = pytest.mark.integration

APP = "tests.integration.crash_app:app"
GRACE = FAULT_GRACE


@pytest.fixture
def workers(namespace: str, tmp_path: Path) -> Iterator[WorkerPool]:
    """Start worker subprocesses on the test namespace; all are SIGKILLed afterwards."""
    yield from fault_pool(namespace, APP, tmp_path)


@pytest.mark.chaos
async def test_sigkill_mid_run_reruns_only_the_interrupted_tasks(
    make_app: Callable[..., Burrow], workers: WorkerPool
) -> None:
    """After SIGKILL of a busy worker, a second worker finishes all 60 tasks, and only tasks
    that were mid-run on the killed process ever start twice."""
    app = register(make_app())
    rng = random.Random(7)
    handles = await app.submit_many(
        "sleep_ms", [{"ms": rng.randint(1000, 2000)} for _ in range(60)]
    )
    ids = [h.id for h in handles]

    first = workers.start()
    await eventually(
        lambda: (
            len(open_runs(read_journal(workers.journal), first.pid)) >= 8
            and sum(1 for e in read_journal(workers.journal) if e["event"] == "end") >= 4
        ),
        timeout=20,
        what="8 tasks running on the first worker",
        pool=workers,
    )
    first.send_signal(signal.SIGKILL)
    assert exit_code_within(first, 10) == -signal.SIGKILL
    interrupted = open_runs(read_journal(workers.journal), first.pid)
    assert interrupted, "the kill should have interrupted running tasks"

    workers.start()
    records = await wait_all(app, ids, timeout=30, pool=workers)

    assert [r.status for r in records] == [TaskStatus.SUCCEEDED] * 60
    entries = read_journal(workers.journal)
    starts: dict[str, int] = {}
    for e in entries:
        if e["event"] == "start":
            starts[e["task_id"]] = starts.get(e["task_id"], 0) + 1
    assert set(starts) == set(ids)
    rerun = {task_id for task_id, n in starts.items() if n > 1}
    assert rerun <= interrupted
    assert all(n <= 2 for n in starts.values())
    ends = [e["task_id"] for e in entries if e["event"] == "end"]
    assert sorted(ends) == sorted(ids)  # each task finished exactly once
    for r in records:
        assert r.attempts in (1, 2)


async def test_sigterm_finishes_in_flight_tasks_and_exits_zero(
    make_app: Callable[..., Burrow], workers: WorkerPool
) -> None:
    """SIGTERM lets the in-flight tasks finish within grace, exits 0, and a second worker
    runs the rest: every task starts exactly once and succeeds."""
    app = register(make_app())
    handles = await app.submit_many("sleep_ms", [{"ms": 1000} for _ in range(24)])
    ids = [h.id for h in handles]

    first = workers.start()
    await eventually(
        lambda: len(open_runs(read_journal(workers.journal), first.pid)) >= 8,
        timeout=20,
        what="8 tasks running on the first worker",
        pool=workers,
    )
    signalled = time.monotonic()
    first.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(exit_code_within, first, GRACE + 5)
    took = time.monotonic() - signalled
    assert code == 0, workers.output()
    assert took < GRACE + 5

    entries = read_journal(workers.journal)
    on_first = {e["task_id"] for e in entries if e["pid"] == first.pid and e["event"] == "start"}
    assert len(on_first) >= 8
    assert open_runs(entries, first.pid) == set()  # everything it started, it finished

    workers.start()
    records = await wait_all(app, ids, timeout=30, pool=workers)
    assert [r.status for r in records] == [TaskStatus.SUCCEEDED] * len(ids)
    entries = read_journal(workers.journal)
    starts = sorted(e["task_id"] for e in entries if e["event"] == "start")
    ends = sorted(e["task_id"] for e in entries if e["event"] == "end")
    assert starts == sorted(ids)  # each task started exactly once overall
    assert ends == sorted(ids)
    assert all(r.attempts == 1 for r in records)


@pytest.mark.chaos
async def test_task_that_kills_its_worker_is_dead_lettered_after_its_runs(
    make_app: Callable[..., Burrow], workers: WorkerPool
) -> None:
    """A task that kills its worker process each run (max_retries=2) ends 'failed' with
    reason 'delivery_limit' in the DLQ while the supervisor restarts children, and normal
    tasks still succeed afterwards."""
    app = register(make_app())
    supervisor = workers.start("--processes", "2", concurrency=4)
    poison = await app.submit("exit_now", {})

    try:
        record = await app.wait(poison.id, timeout=35)
    except TimeoutError:
        pytest.fail(f"poison task never ended\n{workers.output()}")
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert record.error.reason == "delivery_limit"
    assert record.attempts == 3
    runs = [e for e in read_journal(workers.journal) if e["task_id"] == poison.id]
    assert [e["event"] for e in runs] == ["start"] * 3
    letters = await app.dead_letters("default")
    assert [(d.task_id, d.reason) for d in letters] == [(poison.id, "delivery_limit")]

    normal = await app.submit("sleep_ms", {"ms": 10})
    done = await app.wait(normal.id, timeout=20)
    assert done.status is TaskStatus.SUCCEEDED
    assert supervisor.poll() is None  # the supervisor itself kept running
    work, _ = await app.queue_stats("default")
    assert work is not None
    assert work.messages == 0  # no stray copies of the poison left behind

    supervisor.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(exit_code_within, supervisor, GRACE + 5)
    assert code == 0, workers.output()


@pytest.mark.chaos
async def test_children_stop_gracefully_when_their_supervisor_is_killed(
    make_app: Callable[..., Burrow], workers: WorkerPool
) -> None:
    """SIGKILL of the supervisor of ``--processes 2``: its children get SIGTERM from the
    kernel (they follow the supervisor), finish their in-flight tasks and exit, instead
    of running on as orphans; a new worker then runs what is left, each task once."""
    app = register(make_app())
    handles = await app.submit_many("sleep_ms", [{"ms": 500} for _ in range(40)])
    supervisor = workers.start("--processes", "2", concurrency=4)

    def children() -> set[int] | None:
        pids = children_of(supervisor.pid)
        return pids if len(pids) == 2 else None

    pids = await eventually(children, timeout=30, what="two children", pool=workers)
    await eventually(
        lambda: all(open_runs(read_journal(workers.journal), pid) for pid in pids),
        timeout=30,
        what="both children running tasks",
        pool=workers,
    )
    supervisor.send_signal(signal.SIGKILL)
    assert exit_code_within(supervisor, 10) == -signal.SIGKILL
    await eventually(
        lambda: not any(alive(pid) for pid in pids),
        timeout=GRACE + 10,
        what="the orphaned children to stop",
        pool=workers,
    )
    entries = read_journal(workers.journal)
    for pid in pids:
        assert open_runs(entries, pid) == set()  # they finished what they had started

    workers.start()
    records = await wait_all(app, [h.id for h in handles], timeout=60, pool=workers)
    assert [r.status for r in records] == [TaskStatus.SUCCEEDED] * len(handles)
    starts = sorted(e["task_id"] for e in read_journal(workers.journal) if e["event"] == "start")
    assert starts == sorted(h.id for h in handles)  # graceful: nothing ran twice
