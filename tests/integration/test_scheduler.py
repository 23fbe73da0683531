"""The cron scheduler on the real servers: one fire per tick with two schedulers, fencing,
failover to a standby, the misfire policy, and ``burrow schedules`` from a shell."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from burrow import Burrow, TaskContext, TaskRecord
from burrow.scheduler import Scheduler
from burrow.scheduler.cron import Cron, Schedule
from tests.conftest import eventually, running_worker
from tests.integration._procs import REPO, burrow
from tests.integration.crash_app import register

pytestmark = pytest.mark.integration

CRASH_APP = "tests.integration.crash_app:app"
EVERY_SECOND = "* * * * * *"


@contextlib.asynccontextmanager
async def running_scheduler(app: Burrow, **kwargs: float) -> AsyncIterator[Scheduler]:
    """Run a scheduler for ``app`` in this event loop for the duration of the block."""
    stop = asyncio.Event()
    scheduler = Scheduler(app, **kwargs)
    task = asyncio.create_task(scheduler.run(stop))
    try:
        await eventually(
            lambda: task.done() or scheduler.ready.is_set(), timeout=20, what="scheduler ready"
        )
        if task.done():
            task.result()
        yield scheduler
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def records_of(app: Burrow, name: str) -> list[TaskRecord]:
    """Every task of ``name``, oldest first."""
    page = await app.list_tasks(name=name, limit=500)
    return sorted(page.items, key=lambda r: r.created_at)


def ticks_of(app: Burrow, schedule_id: str, records: list[TaskRecord]) -> list[int]:
    """The tick each record was fired for (its id is derived from schedule and tick); fails
    for a record that is no fire of the schedule, and when two records share a tick."""
    ticks: list[int] = []
    for record in records:
        for tick in range(int(record.created_at) - 30, int(record.created_at) + 1):
            key = f"burrow:{app.names.namespace}:schedule:{schedule_id}:{tick}"
            if record.id == str(uuid.uuid5(uuid.NAMESPACE_URL, key)):
                ticks.append(tick)
                break
        else:
            pytest.fail(f"task {record.id} is not a fire of {schedule_id!r}")
    assert len(set(ticks)) == len(ticks), f"a tick fired twice: {sorted(ticks)}"
    return ticks


async def test_two_schedulers_fire_each_tick_once(make_app: Callable[..., Burrow]) -> None:
    """Two schedulers on separate connections, an every-second schedule: one leads, each
    tick becomes exactly one task, and each task runs once (a normal task: it succeeds)."""
    runs: list[str] = []

    def build() -> Burrow:
        app = make_app(scheduler_lock_ttl=10)  # no failover wanted here, even under load

        @app.periodic(EVERY_SECOND, name="tick")
        async def tick(ctx: TaskContext) -> None:
            runs.append(ctx.task_id)

        return app

    first, second, worker_app = build(), build(), build()
    async with (
        running_worker(worker_app),
        running_scheduler(first) as s1,
        running_scheduler(second) as s2,
    ):
        await eventually(lambda: len(runs) >= 4, timeout=30, what="four ticks ran")
        assert sorted([s1.is_leader(), s2.is_leader()]) == [False, True]
    created = await records_of(worker_app, "tick")
    stats = [s1.statistics(), s2.statistics()]
    assert sum(s.fired for s in stats) == len(created)
    assert min(s.fired for s in stats) == 0  # the standby never fired
    assert len(ticks_of(worker_app, "tick", created)) >= 4
    assert len(runs) == len(set(runs))
    record = await worker_app.get(runs[0])
    assert record.status == "succeeded"


async def test_two_leaders_cannot_double_enqueue(make_app: Callable[..., Burrow]) -> None:
    """Even two schedulers that both fire the same tick (a stale leader) enqueue one task,
    and a token that lost the lock cannot move a cursor."""
    app = register(make_app())
    other = register(make_app())
    schedule = Schedule("dup", "sleep_ms", Cron("0 * * * *"), {"ms": 1})
    tick = Cron("0 * * * *").latest_at_or_before(time.time())
    a, b = Scheduler(app), Scheduler(other)
    await app.state.open()
    await other.state.open()
    assert all(await asyncio.gather(a.fire(schedule, tick), b.fire(schedule, tick)))
    assert (await records_of(app, "sleep_ms")).__len__() == 1
    assert sorted([a.statistics().fired, b.statistics().fired]) == [0, 1]
    assert a.statistics().duplicates + b.statistics().duplicates == 1

    store = app.schedule_store
    old = await store.acquire(None, 30, owner="a")
    assert old is not None
    assert await other.schedule_store.acquire(None, 30, owner="b") is None
    assert await store.set_cursor(old, "dup", tick)
    assert await store.release(old)
    new = await other.schedule_store.acquire(None, 30, owner="b")
    assert new is not None
    assert int(new.split(":")[0]) > int(old.split(":")[0])  # the fence grows
    assert not await store.set_cursor(old, "dup", tick + 3600)  # fenced out
    assert (await store.cursors())["dup"] == tick


async def test_misfire_runs_the_last_missed_tick_once(make_app: Callable[..., Burrow]) -> None:
    """A scheduler back after three years: the default policy fires the latest missed tick
    once (no burst); 'skip' fires none and moves the cursor past them."""
    app = register(make_app())
    app.periodic("0 0 1 1 *", task="sleep_ms", name="yearly", payload={"ms": 1})
    app.periodic(
        "0 0 1 1 *", task="sleep_ms", name="yearly-skip", payload={"ms": 2}, misfire="skip"
    )
    await app.state.open()
    long_ago = time.time() - 3 * 366 * 86400
    await app.schedule_store.force_cursor("yearly", long_ago)
    await app.schedule_store.force_cursor("yearly-skip", long_ago)
    async with running_scheduler(app) as scheduler:
        await eventually(lambda: scheduler.statistics().fired >= 1, timeout=20, what="catch-up")
        rounds = scheduler.statistics().rounds
        await eventually(
            lambda: scheduler.statistics().rounds >= rounds + 2, timeout=20, what="two more rounds"
        )
    stats = scheduler.statistics()
    assert stats.fired == 1
    assert stats.skipped >= 3  # older ticks of "yearly", all of "yearly-skip"
    page = await app.list_tasks(name="sleep_ms")
    assert [r.payload for r in page.items] == [{"ms": 1}]
    latest = Cron("0 0 1 1 *").latest_at_or_before(time.time())
    assert await app.schedule_store.cursors() == {"yearly": latest, "yearly-skip": latest}
    assert await app.schedule_store.fired() == {"yearly": latest}


def start_scheduler(namespace: str, log: Path, lock_ttl: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BURROW_NAMESPACE": namespace}
    argv = ["scheduler", CRASH_APP, "--lock-ttl", str(lock_ttl), "--log-format", "json"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "burrow", *argv],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def test_standby_takes_over_when_the_leader_dies(
    make_app: Callable[..., Burrow], namespace: str, tmp_path: Path
) -> None:
    """Two `burrow scheduler` processes; SIGKILL the leader (no lock release): the standby
    takes the lock once its TTL ran out and keeps firing, still one task per tick."""
    app = register(make_app())
    await app.add_schedule("sleep_ms", EVERY_SECOND, {"ms": 1}, schedule_id="fast")
    ttl = 2.0
    procs = [start_scheduler(namespace, tmp_path / f"s{i}.log", ttl) for i in range(2)]

    def logs() -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(tmp_path.glob("s*.log")))

    try:
        store = app.schedule_store
        token = await eventually(store.holder, timeout=30, what=f"a leader\n{logs()}")
        leader = int(token.split(":")[2])
        assert leader in [p.pid for p in procs]
        await eventually(lambda: records_of(app, "sleep_ms"), timeout=20, what="first fire")
        os.kill(leader, signal.SIGKILL)
        killed_at = time.time()

        async def new_leader() -> bool:
            held = await store.holder()
            return held is not None and int(held.split(":")[2]) != leader

        await eventually(new_leader, timeout=ttl * 5, what=f"takeover\n{logs()}")

        async def fired_after_kill() -> bool:
            return (await store.fired()).get("fast", 0) > killed_at + 1

        await eventually(fired_after_kill, timeout=20, what=f"fires after takeover\n{logs()}")
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    ticks = ticks_of(app, "fast", await records_of(app, "sleep_ms"))
    assert max(ticks) > killed_at + 1


async def test_cli_schedules_add_list_remove(
    make_app: Callable[..., Burrow], namespace: str
) -> None:
    """`burrow schedules APP add|list|remove` from a shell; a bad cron fails saying why."""
    make_app()  # cleans the namespace up afterwards
    add = burrow(
        namespace,
        "schedules",
        CRASH_APP,
        "add",
        "nightly",
        "--task",
        "sleep_ms",
        "--cron",
        "30 2 * * *",
        "--payload",
        '{"ms": 5}',
        "--timezone",
        "Europe/Berlin",
    )
    assert add.returncode == 0, add.stderr
    assert "nightly" in add.stdout
    listed = burrow(namespace, "schedules", CRASH_APP, "list")
    assert listed.returncode == 0, listed.stderr
    assert "nightly" in listed.stdout
    assert "Europe/Berlin" in listed.stdout
    assert "30 2 * * *" in listed.stdout
    bad = burrow(
        namespace, "schedules", CRASH_APP, "add", "--task", "sleep_ms", "--cron", "99 * * * *"
    )
    assert bad.returncode == 1
    assert "out of range" in bad.stdout + bad.stderr
    removed = burrow(namespace, "schedules", CRASH_APP, "remove", "nightly")
    assert removed.returncode == 0, removed.stderr
    assert "nightly" not in burrow(namespace, "schedules", CRASH_APP, "list").stdout
    again = burrow(namespace, "schedules", CRASH_APP, "remove", "nightly")
    assert again.returncode == 1
    assert "no schedule 'nightly'" in again.stdout + again.stderr
