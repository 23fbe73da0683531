"""Repeated kills, scaled down: worker children SIGKILLed mid-task, repeatedly.

``burrow worker --processes 2`` runs two supervised children of ``crash_app`` (each run of
``sleep_ms`` is journaled with its pid and attempt). Three rounds each SIGKILL a random busy
child and wait until the supervisor has started a replacement; then every task must
succeed exactly once, with the only re-runs being runs the kills interrupted.

I_k, the runs round k interrupted, comes from two sources:

* the journal: tasks with a ``start`` and no ``end`` on the killed pid (read once the
  process is gone), the scenario's definition;
* the task histories in Redis: runs started by the killed child whose outcome was never
  stored (an attempt that is not the task's last). This also covers the two short windows
  the journal cannot see: a kill after the attempt started in Redis but before the
  handler's ``start`` line, and a kill after the ``end`` line but before the outcome was
  written. The journal's set must be a subset of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from burrow import Burrow, TaskEvent, TaskRecord, TaskStatus
from burrow.broker.topology import TIERS_MS
from tests.conftest import eventually
from tests.integration._journal import open_runs, read_journal
from tests.integration._procs import (
    FAULT_GRACE,
    WAITERS,
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
PROCESSES = 2
CONCURRENCY = 4  # runs at once per child
ROUNDS = 3
TASKS = 400
PACE = 4.0  # at least this many seconds between two kills (the scenario: every 5 s)
GRACE = FAULT_GRACE
TERMINAL = {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED}


@dataclass(frozen=True)
class Kill:
    pid: int
    at: float  # wall clock just before the SIGKILL
    journal_open: frozenset[str]  # `start` without `end` on pid, read after it died
    replacement: int  # the new child pid the supervisor started afterwards


@pytest.fixture
def workers(namespace: str, tmp_path: Path) -> Iterator[WorkerPool]:
    """A pool for one supervisor; it and every child it started are SIGKILLed afterwards
    (``WorkerPool.kill_all`` kills a supervisor's children too)."""
    yield from fault_pool(namespace, APP, tmp_path)


def _pid_of(worker: str | None) -> int:
    """The pid in a worker id (``{hostname}-{pid}-{suffix}``)."""
    assert worker is not None
    return int(worker.rsplit("-", 2)[1])


def _supervisor_events(pool: WorkerPool, event: str) -> list[dict[str, Any]]:
    found = []
    for path in pool.logs.glob("worker-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"{event}"' in line:
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
    return [e for e in found if e.get("event") == event]


async def _records_and_histories(
    app: Burrow, ids: list[str]
) -> dict[str, tuple[TaskRecord, list[TaskEvent]]]:
    gate = asyncio.Semaphore(WAITERS)

    async def one(task_id: str) -> tuple[TaskRecord, list[TaskEvent]]:
        async with gate:
            return await app.get(task_id), await app.history(task_id)

    found = await asyncio.gather(*(one(i) for i in ids))
    return dict(zip(ids, found, strict=True))


async def _residue(app: Burrow) -> dict[str, int]:
    """Messages left in the work queue (ready), its dead-letter queue and the delay tiers."""
    work, dead = await app.queue_stats("default")
    left = {"work": work.messages if work else -1, "dlq": dead.messages if dead else 0}
    for tier in TIERS_MS:
        stats = await app.broker.queue_stats(app.names.delay_queue(tier))
        if stats is not None and stats.messages:
            left[f"tier {tier}"] = stats.messages
    return left


@pytest.mark.chaos
async def test_repeated_sigkill_of_supervised_children_loses_nothing(
    make_app: Callable[..., Burrow], workers: WorkerPool
) -> None:
    """Three rounds of SIGKILL of a random busy child of ``--processes 2``: the supervisor
    replaces each killed child, every task succeeds with one terminal entry, only runs the
    kills interrupted ran again (at most once more per kill), and no message is left."""
    app = register(make_app(concurrency=CONCURRENCY))
    prefetch = app.settings.worker.prefetch  # what each child holds unacked at most
    seed = random.randrange(2**32)
    print(f"seed {seed}")  # shown with a failure: payloads and victims derive from it
    rng = random.Random(seed)
    handles = await app.submit_many(
        "sleep_ms", [{"ms": rng.randint(100, 400)} for _ in range(TASKS)]
    )
    ids = [h.id for h in handles]
    supervisor = workers.start("--processes", str(PROCESSES), concurrency=CONCURRENCY)

    def full_set() -> set[int] | None:
        pids = children_of(supervisor.pid)
        return pids if len(pids) == PROCESSES else None

    seen: set[int] = set(await eventually(full_set, timeout=60, what="2 children", pool=workers))
    # Steady state first: both children run tasks before the first kill. (A child still
    # binding its control queue when the only bound one dies gets NOT_FOUND for the
    # auto-delete control exchange and exits 1: not what this scenario is about.)
    await eventually(
        lambda: seen <= {e["pid"] for e in read_journal(workers.journal)},
        timeout=60,
        what="both children run tasks",
        pool=workers,
    )
    kills: list[Kill] = []
    for k in range(ROUNDS):
        victim = rng.choice(sorted(await eventually(full_set, timeout=60, what="2 children")))
        await eventually(
            lambda: len(open_runs(read_journal(workers.journal), victim)) >= 2,  # noqa: B023
            timeout=60,
            what=f"round {k}: 2 tasks running on child {victim}",
            pool=workers,
        )
        at = time.time()
        os.kill(victim, signal.SIGKILL)
        await eventually(lambda: not alive(victim), timeout=20, what=f"child {victim} gone")  # noqa: B023
        journal_open = frozenset(open_runs(read_journal(workers.journal), victim))
        seen.add(victim)

        def replaced() -> set[int] | None:
            pids = full_set()
            return pids - seen if pids and pids - seen else None  # noqa: B023

        new = await eventually(
            replaced,
            timeout=60,
            what=f"round {k}: the supervisor replaced child {victim}",
            pool=workers,
        )
        assert len(new) == 1, f"more than one new child after one kill: {new}"
        seen |= new
        replacement = next(iter(new))
        kills.append(Kill(victim, at, journal_open, replacement))
        await eventually(
            lambda: replacement in {e["pid"] for e in read_journal(workers.journal)},  # noqa: B023
            timeout=60,
            what=f"round {k}: the replacement {replacement} runs tasks",
            pool=workers,
        )
        await asyncio.sleep(max(0.0, at + PACE - time.time()))

    records = await wait_all(app, ids, timeout=120, pool=workers)
    assert supervisor.poll() is None, workers.output()  # the supervisor itself kept running

    # lost = 0: every task succeeded.
    statuses = Counter(r.status for r in records)
    assert statuses == {TaskStatus.SUCCEEDED: TASKS}, statuses

    # The supervisor replaced each killed child, and only those: 2 + ROUNDS pids in all,
    # and its log reports exactly the killed pids as died (by SIGKILL) and restarted.
    assert len(seen) == PROCESSES + ROUNDS, seen
    died = _supervisor_events(workers, "process died; restarting")
    assert sorted((e.get("pid"), e.get("code")) for e in died) == sorted(
        (kill.pid, -signal.SIGKILL) for kill in kills
    ), died
    started = {e.get("pid") for e in _supervisor_events(workers, "process started")}
    assert started == seen, (started, seen)

    # Redis: one terminal entry per task, runs numbered 1..attempts; every run but the
    # last was on a killed child and the next run started after that kill.
    state = await _records_and_histories(app, ids)
    killed = {kill.pid: kill for kill in kills}
    interrupted: dict[int, set[str]] = {kill.pid: set() for kill in kills}  # I_k
    for task_id, (record, history) in state.items():
        terminal = [e for e in history if e.status in TERMINAL]
        assert [(e.status, e.attempt) for e in terminal] == [
            (TaskStatus.SUCCEEDED, record.attempts)
        ], (task_id, history)
        runs = [e for e in history if e.status == TaskStatus.RUNNING]
        assert [e.attempt for e in runs] == list(range(1, record.attempts + 1)), history
        for run, after in itertools.pairwise(runs):
            pid = _pid_of(run.worker)
            assert pid in killed, (task_id, "an unfinished run on a child not killed", history)
            assert task_id not in interrupted[pid], (task_id, "two runs on one child", history)
            assert after.at > killed[pid].at, (task_id, "re-run before the kill", history)
            interrupted[pid].add(task_id)

    print(
        "kills (pid, journal open, interrupted):",
        [(kill.pid, len(kill.journal_open), len(interrupted[kill.pid])) for kill in kills],
    )
    # The journal agrees: the runs it saw open on a killed child are interrupted runs and
    # ran again; each journaled run is the attempt Redis recorded for that pid.
    entries = read_journal(workers.journal)
    for kill in kills:
        assert kill.journal_open <= interrupted[kill.pid], (kill, interrupted[kill.pid])
        assert interrupted[kill.pid], f"the kill of {kill.pid} interrupted nothing"
        assert len(interrupted[kill.pid]) <= prefetch, interrupted[kill.pid]
    starts: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    ends: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for e in entries:
        (starts if e["event"] == "start" else ends)[e["task_id"]].append(e)
    assert sum(map(len, starts.values())) + sum(map(len, ends.values())) == len(entries)
    for task_id, (record, history) in state.items():
        by_attempt = {e.attempt: _pid_of(e.worker) for e in history if e.status == "running"}
        for e in starts[task_id] + ends[task_id]:
            assert by_attempt.get(e["attempt"]) == e["pid"], (task_id, e, history)
        attempts = [e["attempt"] for e in starts[task_id]]
        assert len(attempts) == len(set(attempts)), (task_id, "an attempt started twice")
        rounds = sum(task_id in s for s in interrupted.values())
        assert record.attempts == 1 + rounds, (task_id, record.attempts, rounds)
        assert 1 <= len(starts[task_id]) <= 1 + rounds, (task_id, starts[task_id])
        # exactly one `end` of the run that counted; any other `end` is of a run whose
        # outcome the kill prevented from being stored (killed just after the handler)
        final = [e for e in ends[task_id] if e["attempt"] == record.attempts]
        assert len(final) == 1, (task_id, ends[task_id])
        wasted = [e for e in ends[task_id] if e["attempt"] != record.attempts]
        assert all(task_id in interrupted.get(e["pid"], ()) for e in wasted), (task_id, wasted)
    union = set().union(*interrupted.values())
    rerun = {t for t, s in starts.items() if len(s) > 1}
    assert rerun <= union, rerun - union
    assert set().union(*(kill.journal_open for kill in kills)) <= rerun
    assert all(len(ends[t]) == 1 for t in ids if t not in union)
    dup_exec = sum(len(s) - 1 for s in starts.values())
    assert dup_exec <= sum(map(len, interrupted.values())) <= ROUNDS * prefetch

    # residue = 0: nothing left in the work queue, the DLQ or the delay tiers ...
    await eventually(lambda: _residue_is_zero(app), timeout=30, what="empty queues", pool=workers)
    supervisor.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(exit_code_within, supervisor, GRACE + 15)
    assert code == 0, workers.output()
    # ... and with every consumer gone, no unacked message came back either.
    work = await eventually(
        lambda: _stopped_work_queue(app), timeout=30, what="no consumers", pool=workers
    )
    assert work.messages == 0, work


async def _residue_is_zero(app: Burrow) -> bool:
    return not any((await _residue(app)).values())


async def _stopped_work_queue(app: Burrow) -> Any:
    work, _ = await app.queue_stats("default")
    assert work is not None
    return work if work.consumers == 0 else None
