"""The HTTP edge (burrow.api.guard): the application's own routes need API keys, the API
answers only Host names it knows, cross-site writes are refused without keys, and the
application's routes answer and document errors in burrow's envelope."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, Field
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from burrow import Burrow, ConfigurationError, Settings
from burrow.api import create_app
from burrow.api.guard import host_name, parse_allowed_hosts
from tests.api.conftest import asgi_client, assert_envelope, serve

READ = "reader-key"
WRITE = "writer-key"
KEYS = f"{READ}:read,{WRITE}:read+write"


class Order(BaseModel):
    sku: str = Field(min_length=1)
    qty: int = Field(ge=1)


def add_shop_routes(app: Burrow, *, public: bool = False) -> Burrow:
    """An application router like examples/shop's: place and read orders."""
    router = APIRouter(tags=["shop"])

    @router.post("/orders", status_code=201)
    async def place_order(body: Order) -> dict[str, Any]:
        return {"code": 201, "message": "created", "data": body.model_dump()}

    @router.get("/orders/{order_id}")
    async def get_order(order_id: str) -> dict[str, Any]:
        return {"code": 200, "message": "ok", "data": {"id": order_id}}

    app.include_router(router, public=public)
    return app


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def keyed_shop(make_app: Callable[..., Burrow]) -> AsyncIterator[httpx.AsyncClient]:
    """An app with keys and the shop's routes, called in process."""
    async with asgi_client(add_shop_routes(make_app(api_keys=KEYS))) as client:
        yield client


# -- the application's routes need keys ---------------------------------------------------


async def test_app_routes_need_a_key_with_the_method_scope(
    keyed_shop: httpx.AsyncClient,
) -> None:
    """With keys set, an included router's routes answer 401 without a key, 403 without the
    scope of the method (GET: read, POST: write), and serve a key that has it."""
    body = {"sku": "tea", "qty": 1}
    r = await keyed_shop.post("/orders", json=body)
    assert r.status_code == 401
    assert assert_envelope(r)["error"]["type"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    r = await keyed_shop.post("/orders", json=body, headers=bearer("wrong"))
    assert r.status_code == 401
    r = await keyed_shop.post("/orders", json=body, headers=bearer(READ))
    assert r.status_code == 403
    assert assert_envelope(r)["error"]["details"] == {"required": "write"}
    r = await keyed_shop.post("/orders", json=body, headers=bearer(WRITE))
    assert r.status_code == 201, r.text
    assert (await keyed_shop.get("/orders/o-1")).status_code == 401
    r = await keyed_shop.get("/orders/o-1", headers=bearer(READ))
    assert (r.status_code, r.json()["data"]) == (200, {"id": "o-1"})


async def test_the_key_is_checked_before_the_body_is_read(keyed_shop: httpx.AsyncClient) -> None:
    """A request without a key is refused 401 whatever its body (a malformed one is not
    parsed first), and a key in the query string is refused 400 as on /api/v1."""
    r = await keyed_shop.post(
        "/orders", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 401
    r = await keyed_shop.get("/orders/o-1", params={"api_key": WRITE})
    assert r.status_code == 400
    assert assert_envelope(r)["error"]["type"] == "key_in_url"


async def test_burrow_endpoints_keep_their_rules_next_to_app_routes(
    keyed_shop: httpx.AsyncClient,
) -> None:
    """The health, schema and docs endpoints and the dashboard stay open with keys set
    while /metrics and /api/v1 still need a key."""
    for path in ("/healthz", "/openapi.json", "/docs", "/ui/"):
        r = await keyed_shop.get(path)
        assert r.status_code == 200, (path, r.status_code)
    assert (await keyed_shop.get("/metrics")).status_code == 401
    assert (await keyed_shop.get("/metrics", headers=bearer(READ))).status_code == 200
    assert (await keyed_shop.get("/api/v1/queues")).status_code == 401


async def test_a_public_router_is_served_without_a_key(make_app: Callable[..., Burrow]) -> None:
    """``include_router(router, public=True)`` serves its routes without a key, while the
    routes of other routers still need one."""
    app = add_shop_routes(make_app(api_keys=KEYS), public=True)
    private = APIRouter()

    @private.get("/internal/report")
    async def report() -> dict[str, Any]:
        return {"code": 200, "message": "ok", "data": {}}

    app.include_router(private)
    async with asgi_client(app) as client:
        r = await client.post("/orders", json={"sku": "tea", "qty": 1})
        assert r.status_code == 201, r.text
        assert (await client.get("/orders/o-2")).status_code == 200
        assert (await client.get("/internal/report")).status_code == 401
    schema = create_app(app).openapi()
    assert "security" not in schema["paths"]["/orders"]["post"]
    assert schema["paths"]["/internal/report"]["get"]["security"] == [{"HTTPBearer": []}]


async def test_a_catch_all_app_route_is_guarded_where_it_takes_requests(
    make_app: Callable[..., Burrow],
) -> None:
    """An application route with a path parameter needs its key for the requests it takes,
    also under burrow's prefixes, but not for the ones burrow's routes take first."""
    app = make_app(api_keys=KEYS)
    router = APIRouter()

    @router.get("/{anything:path}")
    async def fallback(anything: str) -> dict[str, Any]:
        return {"code": 200, "message": "ok", "data": anything}

    app.include_router(router)
    async with asgi_client(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/somewhere")).status_code == 401
        assert (await client.get("/api/v1/no-such-route")).status_code == 401
        r = await client.get("/api/v1/no-such-route", headers=bearer(READ))
        assert (r.status_code, r.json()["data"]) == (200, "api/v1/no-such-route")


async def test_without_keys_app_routes_answer_everyone(make_app: Callable[..., Burrow]) -> None:
    """Without keys (``make up``) the application's routes serve requests without a key."""
    async with asgi_client(add_shop_routes(make_app())) as client:
        r = await client.post("/orders", json={"sku": "tea", "qty": 2})
        assert r.status_code == 201, r.text


# -- errors of the application's routes --------------------------------------------------


async def test_app_routes_answer_and_document_errors_in_the_envelope(
    keyed_shop: httpx.AsyncClient,
) -> None:
    """A malformed body to an application route gets the 422 envelope, and /openapi.json
    documents the envelope (never FastAPI's HTTPValidationError) and the key's errors."""
    r = await keyed_shop.post("/orders", json={"sku": "", "qty": 0}, headers=bearer(WRITE))
    assert r.status_code == 422
    body = assert_envelope(r)
    assert body["error"]["type"] == "validation_error"
    assert {tuple(d["loc"]) for d in body["error"]["details"]} == {
        ("body", "sku"),
        ("body", "qty"),
    }
    schema = (await keyed_shop.get("/openapi.json")).json()
    operation = schema["paths"]["/orders"]["post"]
    for status in ("401", "403", "422", "429"):
        ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorEnvelope"), (status, ref)
    assert operation["security"] == [{"HTTPBearer": []}]
    for method, op in [*schema["paths"]["/orders/{order_id}"].items(), ("post", operation)]:
        assert "HTTPValidationError" not in json.dumps(op), method
    # burrow's own routes too: no operation documents FastAPI's error shape.
    wrong = [
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, op in operations.items()
        if "HTTPValidationError" in json.dumps(op)
    ]
    assert wrong == []


# -- Host (DNS rebinding) -----------------------------------------------------------------


async def test_a_foreign_host_is_refused_on_a_loopback_api(
    api_app: Callable[..., Burrow],
) -> None:
    """Without keys, a request naming a Host the API does not serve (a DNS-rebinding page)
    gets 421 in the envelope; loopback names, IP addresses and the listed names pass."""
    app = add_shop_routes(api_app(allowed_hosts="burrow.internal"))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        port = url.rsplit(":", 1)[1]
        for host in (f"evil.example:{port}", "evil.example", "localhost.evil.example"):
            r = await client.get("/api/v1/queues", headers={"Host": host})
            assert r.status_code == 421, host
            assert assert_envelope(r)["error"]["type"] == "misdirected_request"
        for host in (
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            "LOCALHOST.",
            f"[::1]:{port}",
            "10.1.2.3",
            f"burrow.internal:{port}",
        ):
            r = await client.get("/orders/o-1", headers={"Host": host})
            assert r.status_code == 200, (host, r.text)


async def test_the_host_check_holds_with_keys_on_loopback(api_app: Callable[..., Burrow]) -> None:
    """With keys, a loopback API still refuses a foreign Host, even with a valid key."""
    app = api_app(api_keys=KEYS)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        r = await client.get("/healthz", headers={"Host": "evil.example"})
        assert r.status_code == 421
        r = await client.get("/api/v1/queues", headers={"Host": "evil.example", **bearer(READ)})
        assert r.status_code == 421
        assert (await client.get("/healthz")).status_code == 200


async def test_allowed_hosts_star_turns_the_host_check_off(
    api_app: Callable[..., Burrow],
) -> None:
    """``BURROW_ALLOWED_HOSTS=*`` serves any Host (for a proxy that checks it itself)."""
    async with serve(api_app(allowed_hosts="*")) as url, httpx.AsyncClient(base_url=url) as c:
        assert (await c.get("/healthz", headers={"Host": "anything.example"})).status_code == 200


async def test_two_host_headers_are_refused(make_app: Callable[..., Burrow]) -> None:
    """A request with two Host headers is refused 400 (proxies may read either one)."""
    async with asgi_client(make_app()) as client:
        request = client.build_request("GET", "/healthz")
        request.headers = httpx.Headers([("host", "testserver"), ("host", "evil.example")])
        r = await client.send(request)
        assert r.status_code == 400
        assert assert_envelope(r)["error"]["type"] == "bad_request"


def test_allowed_hosts_are_parsed_and_checked() -> None:
    """``BURROW_ALLOWED_HOSTS`` takes bare names and addresses and refuses URLs and ports;
    a malformed value fails ``create_app``."""
    assert parse_allowed_hosts(" API.example.com., 10.0.0.5,[::1] ,") == {
        "api.example.com",
        "10.0.0.5",
        "::1",
    }
    for bad in ("http://api.example.com", "api.example.com:8000", "a b"):
        with pytest.raises(ConfigurationError, match="BURROW_ALLOWED_HOSTS"):
            parse_allowed_hosts(bad)
    assert [host_name(h) for h in ("[::1]:8000", "Example.COM.:80", "10.0.0.1")] == [
        "::1",
        "example.com",
        "10.0.0.1",
    ]
    with pytest.raises(ConfigurationError, match="BURROW_ALLOWED_HOSTS"):
        create_app(Burrow(settings=Settings(namespace="edge-unit", allowed_hosts="x:1")))


# -- Origin (cross-site request forgery) ---------------------------------------------------


async def test_a_cross_site_write_is_refused_without_keys(api_app: Callable[..., Burrow]) -> None:
    """Without keys, a bodyless cross-site POST (what any web page can make a browser send)
    is refused 403 before it replays anything; same-origin and header-less requests pass."""
    async with serve(api_app()) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        replay = "/api/v1/dead-letters/replay"
        for headers in (
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Origin": f"http://localhost:{int(url.rsplit(':', 1)[1]) + 1}"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site", "Origin": url},
        ):
            r = await client.post(replay, headers=headers)
            assert r.status_code == 403, headers
            assert assert_envelope(r)["error"]["type"] == "cross_origin"
        r = await client.delete("/api/v1/dead-letters", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        # The API's own pages (the dashboard), and clients that send no Origin.
        for headers in ({"Origin": url, "Sec-Fetch-Site": "same-origin"}, {}):
            r = await client.post(replay, headers=headers)
            assert r.status_code == 200, (headers, r.text)
        # Reads are not refused: the browser keeps a cross-site page from seeing the answer.
        r = await client.get("/api/v1/queues", headers={"Origin": "http://evil.example"})
        assert r.status_code == 200


async def test_with_keys_the_origin_is_not_checked(api_app: Callable[..., Burrow]) -> None:
    """With keys, a write from another origin is judged by its key alone (a browser never
    attaches the bearer key by itself, so a forged request has none)."""
    async with serve(api_app(api_keys=KEYS)) as url, httpx.AsyncClient(base_url=url) as client:
        headers = {"Origin": "http://tool.example", "Sec-Fetch-Site": "cross-site"}
        r = await client.post("/api/v1/dead-letters/replay", headers=headers)
        assert r.status_code == 401
        r = await client.post("/api/v1/dead-letters/replay", headers={**headers, **bearer(WRITE)})
        assert r.status_code == 403  # the key lacks admin: judged by the key, not the Origin


# -- websockets ------------------------------------------------------------------------------


async def test_websocket_handshakes_get_the_origin_and_key_checks(
    api_app: Callable[..., Burrow],
) -> None:
    """A websocket route of an included router refuses a handshake from another origin
    (with or without keys) and, with keys, one without a key; a proper one is served."""
    router = APIRouter()

    @router.websocket("/ws/echo")
    async def echo(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text(await socket.receive_text())
        await socket.close()

    for keys in ("", KEYS):
        app = api_app(api_keys=keys)
        app.include_router(router)
        async with serve(app) as url:
            ws_url = url.replace("http://", "ws://") + "/ws/echo"
            key = bearer(WRITE) if keys else {}
            with pytest.raises(InvalidStatus) as refused:
                await ws_connect(
                    ws_url, origin=Origin("http://evil.example"), additional_headers=key
                )
            assert refused.value.response.status_code == 403
            if keys:
                with pytest.raises(InvalidStatus) as refused:
                    await ws_connect(ws_url)
                assert refused.value.response.status_code == 403
            async with ws_connect(ws_url, origin=Origin(url), additional_headers=key) as socket:
                await socket.send("hello")
                assert await socket.recv() == "hello"
