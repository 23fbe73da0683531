"""HTTP API fixtures: an app with a few tasks, served by a real uvicorn server in this event
loop (end-to-end tests), or called through ``httpx.ASGITransport`` (contract tests)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import BaseModel, Field

from burrow import Burrow, Reject, TaskContext
from burrow.api import create_app
from burrow.api.app import uvicorn_options


class Add(BaseModel):
    a: int
    b: int


class Nap(BaseModel):
    seconds: float = Field(ge=0, le=30)


def register_tasks(app: Burrow) -> Burrow:
    """The tasks every API test app has."""

    @app.task(queue="math")
    async def add(p: Add) -> int:
        """Add two integers."""
        return p.a + p.b

    @app.task(queue="slow", timeout=30)
    async def nap(p: Nap) -> str:
        await asyncio.sleep(p.seconds)
        return "rested"

    @app.task(queue="math", max_retries=0)
    async def boom(p: dict[str, Any]) -> None:
        raise Reject("always fails")

    runs: dict[str, int] = {}

    @app.task(queue="math", max_retries=0)
    async def flaky(p: dict[str, str], ctx: TaskContext) -> str:
        """Fails on its first run, succeeds on the next (per task id)."""
        runs[ctx.task_id] = runs.get(ctx.task_id, 0) + 1
        if runs[ctx.task_id] == 1:
            raise Reject("first run fails")
        return "second time lucky"

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_port(app: Burrow, *, access_log: bool = False) -> AsyncIterator[int]:
    """Serve ``create_app(app)`` with uvicorn and ``uvicorn_options(app.settings)`` (what
    ``serve`` and ``burrow api`` pass) on a free loopback port; yields the port."""
    port = free_port()
    config = uvicorn.Config(
        create_app(app),
        host="127.0.0.1",
        port=port,
        log_level="info" if access_log else "warning",
        access_log=access_log,
        lifespan="on",
        **uvicorn_options(app.settings),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(400):
        if server.started or task.done():
            break
        await asyncio.sleep(0.025)
    if task.done():
        task.result()
    assert server.started, "uvicorn did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


@contextlib.asynccontextmanager
async def serve(app: Burrow) -> AsyncIterator[str]:
    """``serve_port``, yielding the base URL."""
    async with serve_port(app) as port:
        yield f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def asgi_client(app: Burrow, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client calling ``create_app(app)`` in process, with its lifespan run."""
    api = create_app(app)
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as client:
            yield client


@pytest.fixture
def api_app(make_app: Callable[..., Burrow]) -> Callable[..., Burrow]:
    """Build a test app with the standard tasks (settings overrides as keyword arguments)."""

    def factory(**overrides: Any) -> Burrow:
        return register_tasks(make_app(**overrides))

    return factory


@pytest.fixture
async def client(api_app: Callable[..., Burrow]) -> AsyncIterator[httpx.AsyncClient]:
    """A client on a real uvicorn server for an app without keys or limits."""
    async with serve(api_app()) as url, httpx.AsyncClient(base_url=url, timeout=30) as c:
        yield c


def assert_envelope(response: httpx.Response) -> dict[str, Any]:
    """The body is the API's one envelope with ``code`` equal to the status; returns it."""
    body = response.json()
    assert isinstance(body, dict), body
    assert body["code"] == response.status_code, body
    assert isinstance(body["message"], str)
    assert "data" in body
    if response.status_code >= 400:
        assert body["data"] is None
        assert isinstance(body["error"]["type"], str)
        assert "details" in body["error"]
    else:
        assert "error" not in body
    return body
