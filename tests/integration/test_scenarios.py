"""Fault scenarios, scaled down to run in the suite: a clean load on two worker processes, a
paused (zombie) worker, hung handlers, poison messages, and retry and backoff timing.

Each test checks the same criteria, in one vocabulary: *lost* (not terminal after the
drain), *dup_exec* (runs started more than once), *terminal_writes* (terminal entries in a
task's history, always exactly 1), *stuck* (left ``running``) and *residue* (messages left
in the work queue). The clean load and the paused worker run worker subprocesses
(``tests.integration.scenario_app``) that journal every run to a file; the others run the
worker in the test's event loop and count runs in memory.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from burrow import Burrow, TaskContext, TaskEvent, TaskStatus
from burrow.broker.topology import TIERS_MS
from tests._timing import LATE
from tests.conftest import eventually, running_worker
from tests.integration._journal import open_runs, read_journal
from tests.integration._procs import WAITERS, WorkerPool, exit_code_within, fault_pool, wait_all
from tests.integration.scenario_app import register

pytestmark = pytest.mark.integration

APP = "tests.integration.scenario_app:app"
TERMINAL = frozenset(s.value for s in TaskStatus if s.terminal)


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def workers(namespace: str, tmp_path: Path) -> Iterator[WorkerPool]:
    """Start worker subprocesses on the test namespace; all are killed afterwards."""
    yield from fault_pool(namespace, APP, tmp_path)


def starts_per_task(entries: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["task_id"] for e in entries if e["event"] == "start")


def pid_of(worker_id: str | None) -> int | None:
    """The process id inside a worker id (``{host}-{pid}-{suffix}``)."""
    if not worker_id:
        return None
    parts = worker_id.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


async def histories(app: Burrow, ids: list[str]) -> dict[str, list[TaskEvent]]:
    gate = asyncio.Semaphore(WAITERS)

    async def one(task_id: str) -> list[TaskEvent]:
        async with gate:
            return await app.history(task_id)

    found = await asyncio.gather(*(one(i) for i in ids))
    return dict(zip(ids, found, strict=True))


def terminal_writes(events: list[TaskEvent]) -> int:
    return sum(1 for e in events if e.status in TERMINAL)


async def consumers(app: Burrow, queue: str = "default") -> int:
    work, _ = await app.queue_stats(queue)
    return work.consumers if work is not None else -1


async def residue(app: Burrow, queue: str = "default") -> int:
    """Messages left in the work queue and in the delay tiers (ready ones; unacked messages
    count once their consumers are gone, so call this after the workers stopped)."""
    work, _ = await app.queue_stats(queue)
    total = work.messages if work is not None else 0
    for tier in TIERS_MS:
        stats = await app.broker.queue_stats(app.names.delay_queue(tier))
        total += stats.messages if stats is not None else 0
    return total


async def running_count(app: Burrow) -> int:
    """Tasks still in the ``running`` index of the state store (*stuck* when nothing runs)."""
    await app.state.open()
    return int(await app.state._redis().zcard(app.state.keys.running))


async def test_baseline_conservation_two_workers(
    make_app: Callable[..., Burrow], workers: WorkerPool
) -> None:
    """2000 tasks of 20-200 ms on 2 worker processes, no faults: none lost,
    none run twice, exactly one terminal entry per history, nothing left in the queues,
    and each worker ran within ±25 % of the mean share."""
    app = register(make_app())
    await app.connect()
    await app.declare_queue("default")
    procs = [workers.start(concurrency=16) for _ in range(2)]
    await eventually(
        lambda: _equals(consumers(app), 2), timeout=30, what="2 consumers", pool=workers
    )

    rng = random.Random(1)
    handles = await app.submit_many("nap", [{"ms": rng.randint(20, 200)} for _ in range(2000)])
    ids = [h.id for h in handles]
    records = await wait_all(app, ids, timeout=90, pool=workers)

    # lost = 0: every task succeeded, after exactly one run.
    assert Counter(r.status for r in records) == {TaskStatus.SUCCEEDED: len(ids)}
    assert all(r.attempts == 1 for r in records)
    # terminal_writes = 1, and the history is the plain one.
    for task_id, events in (await histories(app, ids)).items():
        assert [e.status for e in events] == ["queued", "running", "succeeded"], task_id
    # dup_exec = 0 and unexpected = 0, from the workers' own journal.
    entries = read_journal(workers.journal)
    starts = starts_per_task(entries)
    assert set(starts) == set(ids)
    assert max(starts.values()) == 1
    ends = Counter(e["task_id"] for e in entries if e["event"] == "end")
    assert ends == starts
    # No prefetch hoarding: both processes ran a fair share (the record names the worker).
    share = Counter(pid_of(r.worker) for r in records)
    assert set(share) == {p.pid for p in procs}, share
    mean = len(ids) / len(procs)
    for pid, n in share.items():
        assert abs(n - mean) <= 0.25 * mean, (pid, share)
    assert share == Counter(e["pid"] for e in entries if e["event"] == "start")

    # residue = 0 once the workers are gone (an unacked message would be ready again).
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert await asyncio.to_thread(exit_code_within, proc, 15) == 0, workers.output()
    assert await residue(app) == 0
    assert await running_count(app) == 0


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


# -- paused worker (SIGSTOP), the zombie case ------------------------------------


@pytest.mark.chaos
async def test_paused_worker_is_fenced_and_resumes(
    make_app: Callable[..., Burrow], workers: WorkerPool
) -> None:
    """A worker is SIGSTOPped while it runs 2 s tasks. The broker drops it after
    the heartbeat timeout, the other worker finishes its tasks; after SIGCONT the zombie's
    late terminal writes are refused (histories unchanged, one terminal entry each), nothing
    is lost, only the tasks in flight at the pause ran twice, and the zombie reconnects and
    consumes again."""
    app = register(make_app())
    await app.connect()
    await app.declare_queue("default")
    zombie = workers.start(concurrency=4, heartbeat="2")
    await eventually(
        lambda: _equals(consumers(app), 1), timeout=30, what="zombie consuming", pool=workers
    )
    other = workers.start(concurrency=8, heartbeat="2")
    await eventually(
        lambda: _equals(consumers(app), 2), timeout=30, what="2 consumers", pool=workers
    )

    handles = await app.submit_many("nap", [{"ms": 2000} for _ in range(16)])
    ids = [h.id for h in handles]
    await eventually(
        lambda: len(open_runs(read_journal(workers.journal), zombie.pid)) >= 4,
        timeout=20,
        what="4 tasks running on the worker to pause",
        pool=workers,
    )
    zombie.send_signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    await asyncio.sleep(0.3)  # let Redis run what the zombie had already sent

    # In flight at the pause: started on the zombie (its attempt holds the record) and not
    # terminal. Only these may run twice.
    before = {r.id: r for r in await asyncio.gather(*(app.get(i) for i in ids))}
    in_flight = {i for i, r in before.items() if pid_of(r.worker) == zombie.pid and not r.terminal}
    assert len(in_flight) >= 4, before
    assert open_runs(read_journal(workers.journal), zombie.pid) <= in_flight

    # The broker closes the silent connection after the heartbeat timeout (<= 3 x 2 s, plus
    # 2 s for polling the consumer count) ...
    await eventually(
        lambda: _equals(consumers(app), 1),
        timeout=12,
        what="broker drops the zombie",
        pool=workers,
    )
    assert time.monotonic() - paused_at <= 3 * 2 + 2 + LATE
    # ... and the other worker finishes everything while the zombie is still stopped.
    records = await wait_all(app, ids, timeout=40, pool=workers)
    assert zombie.poll() is None
    assert all(r.status is TaskStatus.SUCCEEDED for r in records)
    for i in in_flight:
        assert pid_of(records[ids.index(i)].worker) == other.pid
    frozen = await histories(app, ids)

    zombie.send_signal(signal.SIGCONT)
    # The zombie's handlers wake up, finish their runs and try to write their outcomes.
    await eventually(
        lambda: (
            in_flight
            <= {
                e["task_id"]
                for e in read_journal(workers.journal)
                if e["pid"] == zombie.pid and e["event"] == "end"
            }
        ),
        timeout=10,
        what="the zombie's runs ending after SIGCONT",
        pool=workers,
    )
    # It reconnects and consumes again within 10 s.
    await eventually(
        lambda: _equals(consumers(app), 2),
        timeout=10,
        what="zombie consuming again",
        pool=workers,
    )
    more = await app.submit_many("nap", [{"ms": 300} for _ in range(24)])
    again = await wait_all(app, [h.id for h in more], timeout=30, pool=workers)
    assert all(r.status is TaskStatus.SUCCEEDED for r in again)
    assert zombie.pid in {pid_of(r.worker) for r in again}  # the resumed worker runs tasks

    # terminal_writes = 1: the zombie's late writes were fenced; no history changed at all.
    after = await histories(app, ids)
    assert after == frozen
    for task_id, events in after.items():
        assert terminal_writes(events) == 1, (task_id, events)
    final = await asyncio.gather(*(app.get(i) for i in ids))
    assert [r.status for r in final] == [TaskStatus.SUCCEEDED] * len(ids)
    # dup_exec ≤ in flight at the pause, and only those tasks ran twice.
    starts = starts_per_task(read_journal(workers.journal))
    assert set(ids) <= set(starts)
    twice = {i for i in ids if starts[i] > 1}
    assert twice <= in_flight
    assert all(starts[i] <= 2 for i in ids)
    assert sum(starts[i] - 1 for i in ids) <= len(in_flight)
    for i in in_flight:  # the redelivery ran as a new attempt with its own lease
        assert [e.status for e in after[i]].count("running") == 2, after[i]

    for proc in (zombie, other):
        proc.send_signal(signal.SIGTERM)
    for proc in (zombie, other):
        assert await asyncio.to_thread(exit_code_within, proc, 15) == 0, workers.output()
    assert await residue(app) == 0
    assert await running_count(app) == 0


# -- hung handlers -------------------------------------------------------------


class Job(BaseModel):
    n: int


async def test_hung_handlers_time_out_retry_and_dead_letter(
    make_app: Callable[..., Burrow],
) -> None:
    """10 handlers that never return (timeout 1 s, max_retries 1) among 300 normal tasks.
    Each hung run is cancelled after 1 s (never before, and not much after), every hung task
    ends 'failed' after exactly 2 runs, with a TaskTimeout error, and is in the DLQ; normal
    tasks all succeed at once; nothing is left running."""
    timeout, max_retries = 1.0, 1
    app = make_app()
    runs: Counter[str] = Counter()

    @app.task(timeout=timeout, max_retries=max_retries)
    async def hang(p: Job, ctx: TaskContext) -> None:
        runs[ctx.task_id] += 1
        await asyncio.Event().wait()  # never set

    # The normal tasks get a timeout no loaded machine reaches: the test submits and runs
    # 310 tasks in one event loop, and a 10 ms sleep can resume more than 1 s late there.
    @app.task(timeout=timeout + LATE * 10, max_retries=max_retries)
    async def quick(p: Job, ctx: TaskContext) -> int:
        runs[ctx.task_id] += 1
        await asyncio.sleep(0.01)
        return p.n

    async with running_worker(app, concurrency=32):
        hung = [h.id for h in await app.submit_many("hang", [{"n": n} for n in range(10)])]
        normal = [h.id for h in await app.submit_many("quick", [{"n": n} for n in range(300)])]
        records = {r.id: r for r in await wait_all(app, hung + normal, timeout=40)}
        letters = await app.dead_letters("default", limit=50)
        assert await running_count(app) == 0  # stuck = 0
    assert await residue(app) == 0

    events = await histories(app, hung + normal)
    for task_id in normal:
        assert records[task_id].status is TaskStatus.SUCCEEDED
        assert runs[task_id] == 1
        assert [e.status for e in events[task_id]] == ["queued", "running", "succeeded"]
    for task_id in hung:
        record = records[task_id]
        assert record.status is TaskStatus.FAILED
        assert record.attempts == max_retries + 1
        assert runs[task_id] == max_retries + 1
        assert record.error is not None
        assert record.error.type == "TaskTimeout"
        # The last run's timeout exhausts the retries: docs/wire-format.md names the
        # dead-letter reason 'max_retries' (error type TaskTimeout) and keeps 'timeout' as
        # the reason of each timed-out run in the history.
        assert record.error.reason == "max_retries"
        history = events[task_id]
        assert [e.status for e in history] == ["queued", "running", "retrying", "running", "failed"]
        assert terminal_writes(history) == 1
        retried = history[2]
        assert retried.error is not None
        assert (retried.error.type, retried.error.reason) == ("TaskTimeout", "timeout")
        # Each hung run was cancelled by the timeout: not before it, and not much after.
        for began, ended in ((history[1], history[2]), (history[3], history[4])):
            assert timeout - 0.05 <= ended.at - began.at <= timeout + LATE, history
    assert sorted(d.task_id or "" for d in letters) == sorted(hung)
    for letter in letters:
        assert letter.reason == "max_retries"
        assert letter.runs == max_retries + 1
        assert letter.error is not None
        assert letter.error["type"] == "TaskTimeout"


# -- poison messages ----------------------------------------------------------


class PoisonError(Exception):
    pass


async def test_poison_tasks_run_max_times_then_dead_letter(
    make_app: Callable[..., Burrow],
) -> None:
    """30 always-failing tasks run exactly max_retries + 1 = 3 times, end
    'failed' (max_retries) and are exactly the DLQ's contents; 30 flaky(2) tasks run exactly
    3 times and succeed; 300 normal tasks run once and succeed; the work queue is empty."""
    max_retries = 2
    app = make_app()
    attempts: dict[str, list[int]] = {}

    def ran(ctx: TaskContext) -> None:
        attempts.setdefault(ctx.task_id, []).append(ctx.attempt)

    @app.task(max_retries=max_retries)
    async def always_fail(p: Job, ctx: TaskContext) -> None:
        ran(ctx)
        raise PoisonError(f"poison {p.n} run {ctx.attempt}")

    @app.task(max_retries=3)
    async def flaky(p: Job, ctx: TaskContext) -> str:
        ran(ctx)
        if ctx.attempt <= 2:
            raise ConnectionError("transient")
        return "ok"

    @app.task(max_retries=max_retries)
    async def normal(p: Job, ctx: TaskContext) -> int:
        ran(ctx)
        return p.n

    async with running_worker(app, concurrency=32):
        poison = [h.id for h in await app.submit_many("always_fail", [{"n": n} for n in range(30)])]
        flakes = [h.id for h in await app.submit_many("flaky", [{"n": n} for n in range(30)])]
        plain = [h.id for h in await app.submit_many("normal", [{"n": n} for n in range(300)])]
        every = poison + flakes + plain
        records = {r.id: r for r in await wait_all(app, every, timeout=40)}
        letters = await app.dead_letters("default", limit=100)
        assert await running_count(app) == 0
    assert await residue(app) == 0
    # Runs per task, as the handlers saw them (unexpected = 0, no run beyond the limit).
    assert attempts == {
        **{i: [1, 2, 3] for i in poison + flakes},
        **{i: [1] for i in plain},
    }
    assert {i: r.status for i, r in records.items()} == {
        **dict.fromkeys(poison, TaskStatus.FAILED),
        **dict.fromkeys(flakes + plain, TaskStatus.SUCCEEDED),
    }
    assert {i: r.attempts for i, r in records.items()} == {i: len(attempts[i]) for i in every}
    for task_id in poison:
        error = records[task_id].error
        assert error is not None
        assert (error.type, error.reason) == ("PoisonError", "max_retries")
        assert error.message.endswith(f"run {max_retries + 1}")
    assert {records[i].result for i in flakes} == {"ok"}
    for task_id, history in (await histories(app, every)).items():
        assert terminal_writes(history) == 1, (task_id, history)
    # dlq_match: the DLQ holds exactly the poison tasks, once each, with why they died.
    assert sorted(d.task_id or "" for d in letters) == sorted(poison)
    for letter in letters:
        assert (letter.reason, letter.runs, letter.name) == ("max_retries", 3, "always_fail")
        assert letter.error is not None
        assert letter.error["type"] == "PoisonError"


# -- retry and backoff timing ---------------------------------------------------


async def test_retry_backoff_follows_the_policy(make_app: Callable[..., Burrow]) -> None:
    """30 flaky(3) tasks submitted at random times, backoff base 0.2 s, factor
    2, jitter 0.25. From each history: attempt n+1 starts no earlier than
    base·2^(n-1)·(1-jitter) after attempt n failed and at most 1 s later than that; the
    scheduled ETA lies in the jitter band and is honoured; the attempt count the handler
    sees follows our own header. Tasks delayed longer than their timeout run once."""
    base, factor, jitter, max_retries = 0.2, 2.0, 0.25, 3
    app = make_app(retry_base=base, retry_factor=factor, retry_jitter=jitter, retry_cap=30.0)
    seen: dict[str, list[int]] = {}
    failed_at: dict[tuple[str, int], float] = {}  # (task, attempt) -> when the run raised

    @app.task(max_retries=max_retries)
    async def flaky3(p: Job, ctx: TaskContext) -> int:
        seen.setdefault(ctx.task_id, []).append(ctx.attempt)
        if ctx.attempt <= 3:
            failed_at[ctx.task_id, ctx.attempt] = time.time()
            raise ConnectionError(f"attempt {ctx.attempt}")
        return ctx.attempt

    @app.task(timeout=0.5, max_retries=2)
    async def later(p: Job, ctx: TaskContext) -> int:
        seen.setdefault(ctx.task_id, []).append(ctx.attempt)
        return p.n

    rng = random.Random(17)
    async with running_worker(app):
        delayed = [h.id for h in await app.submit_many("later", [{"n": 1}] * 5, delay=1.5)]
        ids: list[str] = []
        for n in range(30):
            ids.append((await app.submit("flaky3", {"n": n})).id)
            await asyncio.sleep(rng.uniform(0, 0.05))
        records = await wait_all(app, ids + delayed, timeout=30)
    assert [r.status for r in records] == [TaskStatus.SUCCEEDED] * len(records)

    for task_id, history in (await histories(app, ids)).items():
        assert seen[task_id] == [1, 2, 3, 4]
        assert [e.status for e in history] == [
            "queued",
            *(["running", "retrying"] * 3),
            "running",
            "succeeded",
        ]
        for n in (1, 2, 3):
            failed, next_start = history[2 * n], history[2 * n + 1]
            assert (failed.attempt, next_start.attempt) == (n, n + 1)
            nominal = base * factor ** (n - 1)
            earliest = nominal * (1 - jitter)
            # The run raised at failed_at; the history has when the next one started.
            gap = next_start.at - failed_at[task_id, n]
            assert earliest <= gap <= earliest + 1.0 + LATE, (n, gap, history)
            # The scheduled ETA is in the jitter band, and the next run does not beat it.
            eta = (failed.model_extra or {})["eta"]
            assert earliest <= eta - failed_at[task_id, n], (n, history)
            assert eta - failed.at <= nominal * (1 + jitter), (n, history)
            assert next_start.at >= eta - 0.01, (n, history)
    for task_id in delayed:  # an ETA longer than the timeout never causes a second run
        assert seen[task_id] == [1]
