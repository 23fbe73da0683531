"""The HTTP contract end to end: a real uvicorn server, a real worker, RabbitMQ and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from burrow import Burrow
from tests._timing import LATE
from tests.api.conftest import assert_envelope, serve
from tests.conftest import running_worker

ADD = "/api/v1/tasks/add"


@pytest.fixture
async def stack(
    api_app: Callable[..., Burrow],
) -> AsyncIterator[tuple[Burrow, httpx.AsyncClient]]:
    """An app served over HTTP (no worker yet: tests start one when they need it)."""
    app = api_app()
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as c:
        yield app, c


async def _until(c: httpx.AsyncClient, task_id: str, status: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = (await c.get(f"/api/v1/tasks/{task_id}")).json()["data"]
        if data["status"] == status:
            return data
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} not {status} within {timeout} s")


async def test_submit_then_long_poll_for_the_result(
    stack: tuple[Burrow, httpx.AsyncClient],
) -> None:
    """A submitted task runs on the worker; GET ?wait= returns as soon as it is terminal."""
    app, c = stack
    async with running_worker(app):
        r = await c.post(ADD, json={"payload": {"a": 20, "b": 22}})
        assert r.status_code == 202
        start = time.monotonic()
        done = await c.get(r.headers["location"], params={"wait": 10})
        assert time.monotonic() - start < 5
        data = assert_envelope(done)["data"]
        assert data["status"] == "succeeded"
        assert data["result"] == 42
        assert data["attempts"] == 1
        assert data["started_at"]
        assert data["finished_at"]


async def test_long_poll_answers_the_current_record_at_its_limit(
    stack: tuple[Burrow, httpx.AsyncClient],
) -> None:
    """A task that is not terminal by then is returned as it is, after about ?wait seconds."""
    app, c = stack
    async with running_worker(app):
        r = await c.post("/api/v1/tasks/nap", json={"payload": {"seconds": 10}})
        task_id = r.json()["data"]["id"]
        start = time.monotonic()
        answer = await c.get(f"/api/v1/tasks/{task_id}", params={"wait": 0.6})
        elapsed = time.monotonic() - start
        assert answer.status_code == 200
        assert assert_envelope(answer)["data"]["status"] in ("queued", "running")
        assert 0.5 <= elapsed < 0.6 + LATE
        await c.post(f"/api/v1/tasks/{task_id}/cancel")


async def test_batch_submits_run(stack: tuple[Burrow, httpx.AsyncClient]) -> None:
    """The batch route answers 202 with the ids; every task runs."""
    app, c = stack
    async with running_worker(app):
        items = [{"payload": {"a": i, "b": i}} for i in range(25)]
        r = await c.post("/api/v1/tasks/add/batch", json={"items": items})
        assert r.status_code == 202
        data = assert_envelope(r)["data"]
        assert data["count"] == 25
        results = await asyncio.gather(
            *(c.get(f"/api/v1/tasks/{i}", params={"wait": 10}) for i in data["ids"])
        )
        assert [x.json()["data"]["result"] for x in results] == [2 * i for i in range(25)]


async def test_list_pages_newest_first_with_filters(
    stack: tuple[Burrow, httpx.AsyncClient],
) -> None:
    """Cursor paging lists each task once, newest first; filters narrow the listing."""
    _app, c = stack
    ids = []
    for i in range(7):
        r = await c.post(ADD, json={"payload": {"a": i, "b": 0}})
        ids.append(r.json()["data"]["id"])
    await c.post("/api/v1/tasks/nap", json={"payload": {"seconds": 0}})
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        params: dict[str, Any] = {"name": "add", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = assert_envelope(await c.get("/api/v1/tasks", params=params))["data"]
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    by_queue = (await c.get("/api/v1/tasks", params={"queue": "slow"})).json()["data"]
    assert [t["name"] for t in by_queue["items"]] == ["nap"]
    queued = (await c.get("/api/v1/tasks", params={"status": "queued", "limit": 50})).json()
    assert len(queued["data"]["items"]) == 8
    assert (await c.get("/api/v1/tasks", params={"status": "nonsense"})).status_code == 422
    assert (await c.get("/api/v1/tasks", params={"cursor": "garbage!"})).status_code == 422


async def test_cancel_a_queued_task_then_409(stack: tuple[Burrow, httpx.AsyncClient]) -> None:
    """A queued task is cancelled (200) and never runs; cancelling again is 409."""
    app, c = stack
    r = await c.post(ADD, json={"payload": {"a": 1, "b": 1}})
    task_id = r.json()["data"]["id"]
    cancelled = await c.post(f"/api/v1/tasks/{task_id}/cancel")
    assert cancelled.status_code == 200
    assert assert_envelope(cancelled)["data"]["status"] == "cancelled"
    again = await c.post(f"/api/v1/tasks/{task_id}/cancel")
    assert again.status_code == 409
    body = assert_envelope(again)
    assert body["error"]["type"] == "task_conflict"
    assert body["error"]["details"]["status"] == "cancelled"
    async with running_worker(app):
        await asyncio.sleep(0.5)
    record = (await c.get(f"/api/v1/tasks/{task_id}")).json()["data"]
    assert record["status"] == "cancelled"
    assert record["attempts"] == 0


async def test_cancel_a_running_task(stack: tuple[Burrow, httpx.AsyncClient]) -> None:
    """A running async handler is cancelled; the record ends cancelled, not succeeded."""
    app, c = stack
    async with running_worker(app):
        r = await c.post("/api/v1/tasks/nap", json={"payload": {"seconds": 20}})
        task_id = r.json()["data"]["id"]
        await _until(c, task_id, "running")
        start = time.monotonic()
        cancelled = await c.post(f"/api/v1/tasks/{task_id}/cancel")
        assert cancelled.status_code == 200
        final = await c.get(f"/api/v1/tasks/{task_id}", params={"wait": 5})
        assert final.json()["data"]["status"] == "cancelled"
        assert time.monotonic() - start < 5


async def test_retry_a_failed_task(stack: tuple[Burrow, httpx.AsyncClient]) -> None:
    """A failed task is run again under the same id (202) and can then succeed; retrying a
    task that did not fail is 409."""
    app, c = stack
    async with running_worker(app):
        r = await c.post("/api/v1/tasks/flaky", json={"payload": {"k": "v"}})
        task_id = r.json()["data"]["id"]
        failed = await c.get(f"/api/v1/tasks/{task_id}", params={"wait": 10})
        assert failed.json()["data"]["status"] == "failed"
        retried = await c.post(f"/api/v1/tasks/{task_id}/retry")
        assert retried.status_code == 202
        assert assert_envelope(retried)["data"]["id"] == task_id
        assert retried.headers["location"] == f"/api/v1/tasks/{task_id}"
        done = await c.get(f"/api/v1/tasks/{task_id}", params={"wait": 10})
        assert done.json()["data"]["status"] == "succeeded"
        assert done.json()["data"]["result"] == "second time lucky"
        conflict = await c.post(f"/api/v1/tasks/{task_id}/retry")
        assert conflict.status_code == 409
    missing = await c.post("/api/v1/tasks/nope/retry")
    assert missing.status_code == 404


async def test_queues_workers_and_dead_letters(stack: tuple[Burrow, httpx.AsyncClient]) -> None:
    """Queues show consumers and dead letters; dead letters are listed, replayed, purged."""
    app, c = stack
    async with running_worker(app):
        workers = assert_envelope(await c.get("/api/v1/workers"))["data"]
        assert len(workers) == 1
        r = await c.post("/api/v1/tasks/boom", json={"payload": {"x": 1}})
        task_id = r.json()["data"]["id"]
        dead = await c.get(f"/api/v1/tasks/{task_id}", params={"wait": 10})
        assert dead.json()["data"]["status"] == "failed"
        queues = {q["name"]: q for q in assert_envelope(await c.get("/api/v1/queues"))["data"]}
        assert queues["math"]["consumers"] >= 1
        for _ in range(50):
            letters = assert_envelope(await c.get("/api/v1/dead-letters", params={"queue": "math"}))
            if letters["data"]:
                break
            await asyncio.sleep(0.1)
        assert [d["task_id"] for d in letters["data"]] == [task_id]
        assert letters["data"][0]["payload"] == {"x": 1}
        queues = {q["name"]: q for q in (await c.get("/api/v1/queues")).json()["data"]}
        assert queues["math"]["dead_letters"] == 1
    # Replay without a worker, so the message waits in the queue, then purge nothing left.
    replayed = await c.post("/api/v1/dead-letters/replay", json={"queue": "math"})
    assert replayed.status_code == 200
    assert assert_envelope(replayed)["data"] == {"total": 1, "queues": {"math": 1}}
    record = (await c.get(f"/api/v1/tasks/{task_id}")).json()["data"]
    assert record["status"] == "queued"
    purged = await c.delete("/api/v1/dead-letters")
    assert assert_envelope(purged)["data"]["total"] == 0
