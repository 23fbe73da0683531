"""``burrow.testing`` on the real servers: ``running_worker`` runs tasks in the test's loop,
``purge`` leaves nothing of the namespace behind, ``capture_spans`` and ``capture_logs``
see what a run did, and ``FakeClock`` moves only when told."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel

from burrow import Burrow, Exchange, Settings, TaskStatus
from burrow.testing import (
    FakeClock,
    capture_logs,
    capture_spans,
    purge,
    running_worker,
)
from tests._leaks import new_namespace

pytestmark = pytest.mark.integration


class Add(BaseModel):
    a: int
    b: int


def make(namespace: str) -> Burrow:
    app = Burrow(settings=Settings(namespace=namespace, grace=5.0))

    @app.task(queue="math", priorities=True)
    async def add(p: Add) -> int:
        return p.a + p.b

    @app.subscriber(Exchange("orders", "topic"), "order.*", queue="audit")
    async def audit(p: dict[str, Any]) -> None:
        return None

    @app.rpc("ping")
    async def ping(p: dict[str, Any]) -> str:
        return "pong"

    return app


async def redis_keys(namespace: str) -> list[bytes]:
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        return [k async for k in client.scan_iter(match=f"{namespace}:*")]
    finally:
        await client.aclose()


async def test_running_worker_and_purge_leave_nothing_behind() -> None:
    namespace = new_namespace("th")
    app = make(namespace)
    try:
        async with running_worker(app, concurrency=4) as worker:
            handle = await app.submit("add", {"a": 2, "b": 3}, priority=9)
            record = await app.wait(handle.id, timeout=15)
            assert await app.call("ping", {}, timeout=5) == "pong"
            assert worker.statistics().succeeded == 1
        assert record.status is TaskStatus.SUCCEEDED
        assert record.result == 5
        assert await redis_keys(namespace)
    finally:
        await purge(app)
    assert await redis_keys(namespace) == []
    probe = Burrow(settings=Settings(namespace=namespace))
    try:
        await probe.connect(timeout=10)
        for queue in ("math", "math.high", "math.low", "math.dlq", "audit", "rpc.ping"):
            assert await probe.broker.queue_stats(probe.names.prefixed(queue)) is None, queue
        assert not await probe.broker.exchange_exists(probe.names.exchange("orders"))
    finally:
        await probe.close()


async def test_purge_of_named_queues_deletes_their_priority_lanes() -> None:
    """``purge(other_app, queues=[...])``, from an app that does not register the queue (as
    a test's cleanup does), still deletes the queue's priority lanes: they were left
    behind before, and enough of them exhausted the broker's file handles."""
    namespace = new_namespace("th")
    app = make(namespace)
    await app.connect(timeout=10)
    await app.declare_queue("math")  # with its lanes: math.high, math.low
    assert await app.broker.queue_stats(app.names.lane("math", "high")) is not None
    await app.close()
    await purge(Burrow(settings=Settings(namespace=namespace)), queues=["math", "audit"])
    probe = Burrow(settings=Settings(namespace=namespace))
    try:
        await probe.connect(timeout=10)
        for queue in ("math", "math.high", "math.low", "math.dlq"):
            assert await probe.broker.queue_stats(probe.names.prefixed(queue)) is None, queue
    finally:
        await probe.close()


async def test_capture_spans_and_logs_see_a_run() -> None:
    app = make(new_namespace("th"))
    try:
        with capture_spans() as spans, capture_logs() as logs:
            async with running_worker(app):
                handle = await app.submit("add", {"a": 1, "b": 1})
                await app.wait(handle.id, timeout=15)
        finished = spans.get_finished_spans()
        trace_ids = {s.context.trace_id for s in finished}
        assert len(finished) >= 2  # the publish and the run
        assert len(trace_ids) == 1
        assert any(e.get("event") == "worker started" for e in logs), logs[:5]
    finally:
        await purge(app)


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(start=100.0)
    assert (clock.time(), clock.monotonic()) == (100.0, 0.0)
    clock.advance(2.5)
    assert (clock.time(), clock.monotonic()) == (102.5, 2.5)
    clock.set(110.0)
    assert (clock.time(), clock.monotonic()) == (110.0, 10.0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
