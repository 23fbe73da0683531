"""POST /api/v1/events/{exchange} and POST /api/v1/rpc/{name} against a real worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from burrow import Burrow, Exchange
from tests.api.conftest import asgi_client, assert_envelope
from tests.conftest import eventually, running_worker

pytestmark = pytest.mark.integration


async def test_publish_and_call_over_http(make_app: Callable[..., Burrow]) -> None:
    """POST /events publishes (202, 404 for an unknown exchange); POST /rpc answers 200
    with the reply, 502 for a handler error, 504 on timeout, 404 for a handler nobody
    serves."""
    app = make_app()
    seen: list[Any] = []

    @app.subscriber(Exchange("shop.events", "topic"), "order.*", queue="http-orders")
    async def on_order(p: dict[str, int]) -> None:
        seen.append(p)

    @app.rpc("double")
    async def double(p: dict[str, float]) -> float:
        if p["x"] < 0:
            raise ValueError("negative")
        await asyncio.sleep(p.get("nap", 0))
        return p["x"] * 2

    async with running_worker(app), asgi_client(app) as client:
        r = await client.post(
            "/api/v1/events/shop.events",
            json={"routing_key": "order.created", "payload": {"id": 1}},
        )
        assert r.status_code == 202
        assert assert_envelope(r)["data"]["exchange"] == "shop.events"
        await eventually(lambda: seen == [{"id": 1}], timeout=10, what="event over HTTP")
        missing = await client.post("/api/v1/events/nope", json={"payload": 1})
        assert missing.status_code == 404
        assert assert_envelope(missing)["error"]["type"] == "unknown_exchange"

        r = await client.post("/api/v1/rpc/double", json={"payload": {"x": 2.5}})
        assert r.status_code == 200
        assert assert_envelope(r)["data"] == 5.0
        r = await client.post("/api/v1/rpc/double", json={"payload": {"x": -1}})
        assert r.status_code == 502
        assert assert_envelope(r)["error"]["details"] == {
            "type": "ValueError",
            "message": "negative",
        }
        r = await client.post(
            "/api/v1/rpc/double", json={"payload": {"x": 1, "nap": 2}, "timeout": 0.5}
        )
        assert r.status_code == 504
        assert assert_envelope(r)["error"]["type"] == "rpc_timeout"
        r = await client.post("/api/v1/rpc/nobody", json={"payload": {}})
        assert r.status_code == 404
        assert assert_envelope(r)["error"]["type"] == "unknown_rpc"
