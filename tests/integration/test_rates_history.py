"""Task rates of the last minutes are kept in Redis while nobody watches: the worker adds
its counts once a second (never per task), and the event stream's ``hello`` starts with
them, so a dashboard opened after the work shows it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from burrow import Burrow, Reject
from burrow.errors import StateUnavailable
from burrow.state.rates import RateCounters
from burrow.worker._rates import RateRecorder
from burrow.worker.executor import ExecutorStats
from tests.api.conftest import serve
from tests.conftest import running_worker
from tests.ui.test_stream import events

pytestmark = pytest.mark.integration

OK, BAD = 30, 7


def with_tasks(app: Burrow) -> Burrow:
    @app.task(queue="work")
    async def fine(p: dict[str, Any]) -> int:
        return int(p["n"])

    @app.task(queue="work", max_retries=0)
    async def refuse(p: dict[str, Any]) -> None:
        raise Reject("not today")

    return app


def totals(points: list[dict[str, float]], step: float = 2.0) -> dict[str, float]:
    """How many of each kind the points add up to (a point is a rate over ``step`` s)."""
    kinds = ("submitted", "started", "succeeded", "failed")
    return {k: round(sum(p.get(k, 0.0) for p in points) * step, 6) for k in kinds}


async def test_hello_carries_the_rates_of_work_done_while_nobody_watched(
    make_app: Callable[..., Burrow],
) -> None:
    """Tasks run and end with no stream open; a stream opened afterwards starts with a
    history whose past points add up to exactly what was submitted, started, succeeded
    and failed."""
    app = with_tasks(make_app())
    async with running_worker(app):
        handles = [await app.submit("fine", {"n": i}) for i in range(OK)]
        handles += [await app.submit("refuse", {}) for _ in range(BAD)]
        for handle in handles:
            await app.wait(handle.id, timeout=30)
    # The worker wrote its last counts when it stopped; the hub reads the seconds before it
    # started (cut at an even second), so open it past the next one.
    await asyncio.sleep(3)
    async with (
        serve(app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        client.stream("GET", "/api/v1/events/stream") as response,
    ):
        event, hello = await anext(events(response))
    assert event == "hello"
    history = hello["history"]
    assert len(history) >= 150  # five minutes of 2 s points, quiet ones included
    now = time.time()
    past = [p for p in history if p["t"] <= now]
    assert past == history, "history points are in the past"
    assert totals(history) == {
        "submitted": OK + BAD,
        "started": OK + BAD,
        "succeeded": OK,
        "failed": BAD,
    }
    busy = [p for p in history if p["succeeded"] > 0]
    assert busy, history[-10:]
    assert max(p["t"] for p in busy) > now - 60  # the work is at the recent end


async def test_worker_writes_once_a_second_not_once_per_task(
    make_app: Callable[..., Burrow], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hundreds of tasks cost the counters one batched write per second in which work
    happened: the hot path makes no Redis call of its own for them."""
    writes: list[dict[str, int]] = []
    real_add = RateCounters.add

    async def counted_add(self: RateCounters, second: int, counts: dict[str, int]) -> None:
        writes.append(dict(counts))
        await real_add(self, second, counts)

    monkeypatch.setattr(RateCounters, "add", counted_add)
    app = with_tasks(make_app())
    tasks = 400
    async with running_worker(app, concurrency=32):
        began = time.monotonic()
        handles = await app.submit_many("fine", [{"n": i} for i in range(tasks)])
        for handle in handles:
            await app.wait(handle.id, timeout=60)
        elapsed = time.monotonic() - began
    assert sum(w.get("succeeded", 0) for w in writes) == tasks
    # One write per second boundary crossed while work went on, plus the final one.
    assert len(writes) <= elapsed + 3, (len(writes), elapsed)
    assert len(writes) < tasks / 10


async def test_counts_survive_a_failed_write_and_land_later(
    make_app: Callable[..., Burrow],
) -> None:
    """When Redis does not take a write, the counts stay with the worker and are added by
    the next write, not lost."""
    app = make_app()
    counters = RateCounters(app.state)  # not open yet: every write fails
    stats = ExecutorStats()
    recorder = RateRecorder(counters, stats, app.clock)
    stats.started, stats.succeeded, stats.dead = 5, 4, 1
    second = int(time.time()) - 10
    with pytest.raises(StateUnavailable):
        await counters.add(second, {"started": 1})
    await recorder.flush(second)  # fails, logged, kept
    await app.state.open()
    await recorder.flush(second)
    await recorder.flush(second)  # nothing new: nothing written twice
    points = await counters.history(end=second + 2, seconds=4, step=2)
    assert totals(points)["started"] == 5
    assert totals(points)["succeeded"] == 4
    assert totals(points)["failed"] == 1


async def test_history_points_cut_the_window_into_steps(make_app: Callable[..., Burrow]) -> None:
    """``history`` returns one point per step over the window, oldest first, each the rate
    per second of what was added to its seconds."""
    app = make_app()
    await app.state.open()
    counters = RateCounters(app.state)
    base = (int(time.time()) // 60) * 60 - 120  # two minutes ago, on a minute boundary
    await counters.add(base - 1, {"succeeded": 6})  # the minute before: read across keys
    await counters.add(base, {"succeeded": 4, "failed": 2})
    await counters.add(base + 1, {"succeeded": 2})
    await counters.add(base + 2, {"started": 10, "succeeded": 0})
    points = await counters.history(end=base + 4, seconds=8, step=2)
    assert [p["t"] for p in points] == [base - 2, base, base + 2, base + 4]
    assert [p["succeeded"] for p in points] == [0.0, 3.0, 3.0, 0.0]
    assert [p["failed"] for p in points] == [0.0, 0.0, 1.0, 0.0]
    assert [p["started"] for p in points] == [0.0, 0.0, 0.0, 5.0]
    assert all(p["submitted"] == 0.0 for p in points)
