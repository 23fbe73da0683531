"""Delay accuracy: delayed tasks start within max(3 s, 5 %) after their due time (what a
loaded machine may add),
never before it, show ``queued`` with the due time while they wait, and survive a restart
of the worker while they wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from burrow import Burrow, TaskStatus
from tests._timing import LATE
from tests.conftest import eventually, running_worker
from tests.integration._procs import wait_all

pytestmark = pytest.mark.integration

DELAYS = (8.0, 5.0, 3.0, 2.0, 1.0, 0.5)
#: The record's timestamps are Redis's Lua numbers written with 14 significant digits
#: (0.1 ms at today's Unix times); the due time is compared with that much slack.
ROUNDING = 0.001


def allowed_lateness(delay: float) -> float:
    return max(LATE, 0.05 * delay)


def register(app: Burrow) -> None:
    @app.task
    async def stamp(p: dict[str, Any]) -> None:
        return None


async def test_a_spread_of_delays_starts_on_time_and_never_early(
    make_app: Callable[..., Burrow],
) -> None:
    """Three tasks for each delay of 0.5-8 s, longest first and interleaved, on a running
    worker: each is ``queued`` with its due time in the record while it waits, and starts
    no earlier than that time and at most max(1 s, 5 %) after it."""
    app = make_app()
    register(app)
    due: dict[str, tuple[float, float]] = {}  # task id -> (delay, due time from the record)
    async with running_worker(app):
        for _ in range(3):
            for delay in DELAYS:
                before = time.time()
                handle = await app.submit("stamp", {}, delay=delay)
                after = time.time()
                record = await app.get(handle.id)
                assert record.status is TaskStatus.QUEUED
                assert record.eta is not None
                assert before + delay - ROUNDING <= record.eta <= after + delay + ROUNDING
                due[handle.id] = (delay, record.eta)

        async def longest_still_waiting() -> bool:
            record = await app.get(next(iter(due)))
            return record.status is TaskStatus.QUEUED and record.eta == due[record.id][1]

        assert await longest_still_waiting()
        records = await wait_all(app, list(due), timeout=30)

    late: list[tuple[float, float]] = []
    for record in records:
        delay, eta = due[record.id]
        assert record.status is TaskStatus.SUCCEEDED
        assert record.started_at is not None
        assert record.started_at >= eta - ROUNDING, (delay, record.started_at - eta)
        late.append((delay, record.started_at - eta))
    assert all(lag <= allowed_lateness(delay) for delay, lag in late), sorted(late)


async def test_a_delayed_task_survives_a_worker_restart(make_app: Callable[..., Burrow]) -> None:
    """A task delayed 4 s: its worker stops while it waits and a new one starts; the task
    still starts within 1 s after its due time (the delay is held by the broker)."""
    app = make_app()
    register(app)
    async with running_worker(app):
        handle = await app.submit("stamp", {}, delay=4.0)
        record = await app.get(handle.id)
        assert record.eta is not None
        eta = record.eta
        await eventually(lambda: time.time() > eta - 3.0, timeout=5, what="1 s of waiting")
    assert (await app.get(handle.id)).status is TaskStatus.QUEUED  # stopped while waiting

    other = make_app()  # a new worker process's app: nothing shared with the first
    register(other)
    await eventually(lambda: time.time() > eta - 2.0, timeout=5, what="a pause with no worker")
    async with running_worker(other):
        done = await other.wait(handle.id, timeout=15)
    assert done.status is TaskStatus.SUCCEEDED
    assert done.started_at is not None
    assert eta - ROUNDING <= done.started_at <= eta + LATE
