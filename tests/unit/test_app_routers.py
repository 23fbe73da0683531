"""``Burrow.include_router``: an application's own routes are served by burrow's API, next to
its own, and may not take the paths burrow serves."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter

from burrow import Burrow, ConfigurationError, Settings
from burrow.api import create_app


def _app() -> Burrow:
    return Burrow(settings=Settings(namespace="routers-unit"))


async def test_an_included_router_is_served_with_burrow_routes_and_in_the_schema() -> None:
    app = _app()
    router = APIRouter(tags=["shop"])

    @router.get("/orders/{order_id}")
    async def get_order(order_id: str) -> dict[str, str]:
        return {"id": order_id}

    app.include_router(router)
    api = create_app(app)
    transport = httpx.ASGITransport(app=api)  # no lifespan: nothing connects
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/orders/o-1")
        assert (r.status_code, r.json()) == (200, {"id": "o-1"})
        assert (await client.get("/healthz")).status_code == 200
        # Errors of the application's routes get burrow's envelope too.
        r = await client.get("/orders")
        assert r.status_code == 404
        assert r.json()["code"] == 404
    assert "/orders/{order_id}" in api.openapi()["paths"]


@pytest.mark.parametrize("path", ["/api/v1/orders", "/healthz", "/ui/x", "/metrics", "/api/v1"])
def test_a_router_that_takes_a_burrow_path_is_refused(path: str) -> None:
    app = _app()
    router = APIRouter()

    @router.get(path)
    async def clash() -> None:
        return None

    app.include_router(router)
    with pytest.raises(ConfigurationError, match="path burrow serves itself"):
        create_app(app)


def test_paths_that_only_share_a_prefix_string_are_allowed() -> None:
    app = _app()
    router = APIRouter()

    @router.get("/uix")
    async def fine() -> None:
        return None

    app.include_router(router)
    assert "/uix" in create_app(app).openapi()["paths"]
