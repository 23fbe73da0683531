"""Worker heartbeats on the real Redis: two worker processes are listed by ``burrow workers``
and ``GET /api/v1/workers`` with every field; one killed with SIGKILL (no goodbye) drops
out once its heartbeat expires (3 x ``BURROW_WORKER_HEARTBEAT``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from burrow import Burrow
from burrow.api import create_app
from tests.conftest import eventually
from tests.integration._procs import WorkerPool, burrow

pytestmark = pytest.mark.integration

APP = "tests.integration.test_workers_cli:app"
HEARTBEAT = 0.5  # seconds; a heartbeat is kept for 3 of them
FIELDS = {
    "id",
    "host",
    "pid",
    "queues",
    "concurrency",
    "in_flight",
    "processed",
    "started_at",
    "last_seen",
}


class Ping(BaseModel):
    n: int


def register(target: Burrow) -> Burrow:
    @target.task(queue="pings")
    async def ping(p: Ping) -> int:
        return p.n

    return target


#: The app the worker processes run (namespace from BURROW_NAMESPACE).
app = register(Burrow())


def _cli_workers(namespace: str) -> list[dict[str, Any]]:
    done = burrow(namespace, "workers", APP, "--json")
    assert done.returncode == 0, done.stderr
    beats: list[dict[str, Any]] = json.loads(done.stdout)
    return beats


async def _api_workers(client_app: Burrow) -> list[dict[str, Any]]:
    api = create_app(client_app)
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/api/v1/workers")
    assert response.status_code == 200, response.text
    beats: list[dict[str, Any]] = response.json()["data"]
    return beats


async def test_live_workers_are_listed_and_a_killed_one_drops_out(
    make_app: Callable[..., Burrow], namespace: str, tmp_path: Path
) -> None:
    client = register(make_app())
    pool = WorkerPool(namespace, APP, tmp_path, {"worker_heartbeat": str(HEARTBEAT)})
    first = pool.start(concurrency=3)
    second = pool.start(concurrency=5)
    try:
        handle = await client.submit("ping", {"n": 1})
        await client.wait(handle.id, timeout=30)

        async def both() -> list[dict[str, Any]]:
            beats = await asyncio.to_thread(_cli_workers, namespace)
            pids = {b["pid"] for b in beats}
            processed = sum(b["processed"] for b in beats)
            return beats if pids == {first.pid, second.pid} and processed == 1 else []

        beats = await eventually(both, timeout=30, what="both workers listed", pool=pool)
        by_pid = {b["pid"]: b for b in beats}
        for proc, concurrency in ((first, 3), (second, 5)):
            beat = by_pid[proc.pid]
            assert set(beat) >= FIELDS, beat
            assert beat["host"] == socket.gethostname()
            assert beat["queues"] == ["pings"]
            assert beat["concurrency"] == concurrency
            assert beat["in_flight"] == 0
            assert beat["started_at"] <= beat["last_seen"] <= time.time() + 1
            assert time.time() - beat["last_seen"] < 10
        assert {b["id"] for b in beats} == {b["id"] for b in await _api_workers(client)}
        table = burrow(namespace, "workers", APP)
        assert table.returncode == 0, table.stderr
        assert "2 live workers" in table.stdout
        assert str(first.pid) in table.stdout
        assert str(second.pid) in table.stdout

        os.killpg(first.pid, signal.SIGKILL)

        async def only_second() -> list[dict[str, Any]]:
            beats = await _api_workers(client)
            return beats if [b["pid"] for b in beats] == [second.pid] else []

        await eventually(only_second, timeout=20, what="the killed worker dropped", pool=pool)
        assert [b["pid"] for b in await asyncio.to_thread(_cli_workers, namespace)] == [second.pid]
    finally:
        pool.kill_all()


async def test_the_worker_index_expires_with_the_last_heartbeat(
    make_app: Callable[..., Burrow],
) -> None:
    """A namespace whose workers all stopped without a goodbye keeps no key: each heartbeat
    and the index of workers expire after the heartbeat's time to live."""
    producer = make_app()
    await producer.state.open()
    await producer.state.heartbeat("w-gone", {"id": "w-gone", "last_seen": time.time()}, 0.5)
    redis = producer.state._redis()
    assert 0 < await redis.pttl(producer.state.keys.workers) <= 500
    keys = (producer.state.keys.workers, producer.state.keys.worker("w-gone"))

    async def gone() -> bool:
        return await redis.exists(*keys) == 0

    await eventually(gone, timeout=10, what="the heartbeat and the index to expire")
