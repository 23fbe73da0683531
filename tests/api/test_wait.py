"""Long-poll waits always end: ``RedisStateStore.wait`` by its deadline whatever happens to
the cancellations on the way, and ``GET /api/v1/tasks/{id}?wait=`` as soon as its client
goes away (no Redis polling is left behind)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection

from burrow import Burrow
from burrow.errors import OperationTimeout
from tests.api.conftest import assert_envelope, serve
from tests.conftest import eventually

ADD = "/api/v1/tasks/add"
#: Waits of every odd size: tiny, zero in several spellings, sub-normal, a second.
ODD_WAITS = ["0.00001", "0", "0.0", "-0", "1e-9", "1e-300", "0.001", "0.01", "0.05", "1"]


async def _queued_task(app: Burrow) -> str:
    """A task no worker will run (none is started): it stays queued."""
    handle = await app.submit("add", {"a": 1, "b": 2})
    return handle.id


async def test_tiny_waits_end_even_when_a_cancellation_is_swallowed(
    api_app: Callable[..., Burrow], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With redis-py's socket writes swallowing cancellations (as Python 3.11's wait_for
    does when the write completes as the cancellation arrives), 50 concurrent tiny waits
    on an unfinished task all end with OperationTimeout, promptly."""
    app = api_app()
    task_id = await _queued_task(app)
    real_send = AbstractConnection.send_packed_command

    async def swallowing_send(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        await real_send(self, *args, **kwargs)
        # What wait_for does when its inner future is already done: swallow it.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.02)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", swallowing_send)

    async def one(timeout: float) -> float:
        start = time.monotonic()
        with pytest.raises(OperationTimeout):
            await app.state.wait(task_id, timeout)
        return time.monotonic() - start

    tasks = [asyncio.ensure_future(one(t)) for t in (0.00001, 0.001, 0.01, 0.05, 0.0) * 10]
    done, pending = await asyncio.wait(tasks, timeout=20)
    for task in pending:
        task.cancel()
    assert not pending, f"{len(pending)} of {len(tasks)} waits never ended"
    assert max(t.result() for t in done) < 10
    monkeypatch.undo()
    assert app.state.waiting(task_id) == 0


async def test_many_concurrent_odd_waits_all_answer(api_app: Callable[..., Burrow]) -> None:
    """Over HTTP, 100 concurrent GETs with tiny, zero and odd ?wait= values on a queued
    task all answer 200 with the queued record, well within their bound."""
    app = api_app()
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as c:
        task_id = await _queued_task(app)
        path = f"/api/v1/tasks/{task_id}"
        requests = [asyncio.ensure_future(c.get(path, params={"wait": w})) for w in ODD_WAITS * 10]
        done, pending = await asyncio.wait(requests, timeout=45)
        for request in pending:
            request.cancel()
        assert not pending, f"{len(pending)} of {len(requests)} requests never answered"
        for request in done:
            response = request.result()
            assert response.status_code == 200, response.text
            assert assert_envelope(response)["data"]["status"] == "queued"


async def _hgetall_seen(key: str, seconds: float) -> int:
    """How many HGETALLs of ``key`` Redis executes in the next ``seconds`` (MONITOR)."""
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    seen = 0
    try:
        async with client.monitor() as monitor:

            async def count() -> None:
                nonlocal seen
                async for command in monitor.listen():
                    parts = str(command.get("command", "")).split()
                    if parts[:2] == ["HGETALL", key]:
                        seen += 1

            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await count()
    finally:
        await client.aclose()
    return seen


async def test_a_client_that_leaves_mid_wait_leaves_no_polling(
    api_app: Callable[..., Burrow],
) -> None:
    """A client that gives up on ?wait=30 after half a second: the server's wait ends at
    once (no waiter left within a few seconds) and Redis sees no more HGETALL of the task."""
    app = api_app()
    async with serve(app) as url:
        task_id = await _queued_task(app)
        async with httpx.AsyncClient(base_url=url, timeout=0.5) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await impatient.get(f"/api/v1/tasks/{task_id}", params={"wait": 30})
        await eventually(
            lambda: app.state.waiting(task_id) == 0,
            timeout=5,
            what="the wait to end after its client left",
        )
        # The wait polls its record once a second: 2.5 s of silence means it stopped.
        assert await _hgetall_seen(app.state.keys.task(task_id), 2.5) == 0


async def test_a_wait_still_returns_the_terminal_record_at_once(
    api_app: Callable[..., Burrow],
) -> None:
    """A long-poll on a task that is already terminal answers it at once, the record of a
    cancelled task here, even with a tiny wait."""
    app = api_app()
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as c:
        task_id = await _queued_task(app)
        await app.cancel(task_id)
        for wait in ("0.00001", "5"):
            start = time.monotonic()
            response = await c.get(f"/api/v1/tasks/{task_id}", params={"wait": wait})
            assert time.monotonic() - start < 4
            assert assert_envelope(response)["data"]["status"] == "cancelled"


async def test_a_nan_wait_is_refused(api_app: Callable[..., Burrow]) -> None:
    """The store refuses a NaN timeout instead of waiting on a deadline that never comes."""
    app = api_app()
    await app.state.open()
    with pytest.raises(ValueError, match="NaN"):
        await app.state.wait("whatever", float("nan"))
