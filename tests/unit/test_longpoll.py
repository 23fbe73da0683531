"""``burrow.api.longpoll.while_connected``: a wait runs only while its client is there."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request
from starlette.types import Message

from burrow.api.envelope import ApiError
from burrow.api.longpoll import while_connected
from burrow.errors import TaskNotFound


class Client:
    """An ASGI ``receive``: the (empty) request body, then ``http.disconnect`` once
    ``leave()`` is called."""

    def __init__(self) -> None:
        self._gone = asyncio.Event()
        self._sent_body = False

    def leave(self) -> None:
        self._gone.set()

    async def receive(self) -> Message:
        if not self._sent_body:
            self._sent_body = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    def request(self) -> Request:
        scope: dict[str, Any] = {"type": "http", "method": "GET", "headers": []}
        return Request(scope, self.receive)


async def test_the_wait_is_cancelled_when_the_client_leaves() -> None:
    """A wait still running when the client disconnects is cancelled (its cleanup runs)
    and the route gets a 499 error."""
    client = Client()
    cleaned = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    asyncio.get_running_loop().call_later(0.05, client.leave)
    with pytest.raises(ApiError) as caught:
        async with asyncio.timeout(10):
            await while_connected(client.request(), forever())
    assert caught.value.status == 499
    assert caught.value.type == "client_closed_request"
    assert cleaned.is_set()


async def test_a_wait_that_ends_first_is_answered() -> None:
    """The wait's result, or its own error unchanged, when it ends before any disconnect;
    no cancellation is left pending on the task afterwards."""
    client = Client()

    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 42

    async def missing() -> None:
        raise TaskNotFound("t")

    assert await while_connected(client.request(), answer()) == 42
    with pytest.raises(TaskNotFound):
        await while_connected(client.request(), missing())
    client.leave()
    await asyncio.sleep(0.05)  # a disconnect after the answer cancels nothing
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    """A task cancelled by someone else (server shutdown) is cancelled, not a 499."""
    client = Client()
    route = asyncio.ensure_future(while_connected(client.request(), asyncio.sleep(3600)))
    await asyncio.sleep(0.02)
    route.cancel()
    with pytest.raises(asyncio.CancelledError):
        await route
