"""``GET /api/v1/events/stream`` and ``GET /api/v1/tasks/{id}/history`` over HTTP (no
browser): the events a client gets, and the scope the stream needs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from tests.ui.conftest import SECRET, submit

pytestmark = pytest.mark.integration


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """``(event, data)`` of a server-sent event stream (comments skipped)."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, orjson.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


async def test_stream_sends_hello_stats_and_each_status_of_a_task(base: str) -> None:
    seen: list[str] = []
    stats: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        client.stream("GET", "/api/v1/events/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        stream = events(response)
        first, hello = await anext(stream)
        assert first == "hello"
        assert set(hello) == {"history", "stats"}
        await asyncio.sleep(1.5)  # the feed positions itself on its first poll
        task_id = await submit(base, "nap", {"seconds": 1.2})
        async with asyncio.timeout(30):
            async for event, data in stream:
                if event == "stats":
                    stats.append(data)
                elif event == "task" and data["id"] == task_id:
                    assert data["name"] == "nap"
                    assert data["queue"] == "images"
                    seen.append(data["status"])
                    if data["status"] == "succeeded":
                        break
    assert seen[-1] == "succeeded"
    assert "running" in seen  # a run of 1.2 s is seen by a poll every second
    queues = {q["name"]: q for q in stats[-1]["queues"]}
    assert set(queues) == {"images", "email", "billing"}
    assert queues["images"]["consumers"] == 1
    assert {"submitted", "succeeded", "failed", "t"} <= set(stats[-1]["rates"])
    assert stats[-1]["broker"] is True
    assert stats[-1]["redis"] is True


async def test_history_is_the_timeline_and_404_for_an_unknown_task(base: str) -> None:
    task_id = await submit(base, "send_email", {"to": "a@b.c", "subject": "hi"})
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        record = (await client.get(f"/api/v1/tasks/{task_id}?wait=20")).json()["data"]
        assert record["status"] == "succeeded"
        history = (await client.get(f"/api/v1/tasks/{task_id}/history")).json()
        missing = await client.get("/api/v1/tasks/no-such-task/history")
    assert [e["status"] for e in history["data"]] == ["queued", "running", "succeeded"]
    assert history["code"] == 200
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "task_not_found"


async def test_stream_needs_the_read_scope_and_refuses_keys_in_the_url(
    secured_base: str,
) -> None:
    async with httpx.AsyncClient(base_url=secured_base, timeout=30) as client:
        anonymous = await client.get("/api/v1/events/stream")
        in_url = await client.get("/api/v1/events/stream", params={"api_key": SECRET})
        async with client.stream(
            "GET", "/api/v1/events/stream", headers={"Authorization": f"Bearer {SECRET}"}
        ) as response:
            assert response.status_code == 200
            first = await anext(events(response))
    assert anonymous.status_code == 401
    assert in_url.status_code == 400
    assert in_url.json()["error"]["type"] == "key_in_url"
    assert first[0] == "hello"
