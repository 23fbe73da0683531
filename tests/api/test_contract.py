"""HTTP contract without a worker: envelope, status codes, validation, auth, limits, OpenAPI.

Most tests call the app in process (``httpx.ASGITransport``, lifespan run) against the real
RabbitMQ and Redis; those about the wire (413 for chunked bodies) use a uvicorn server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from burrow import Burrow, ConfigurationError, Settings
from burrow.api import check_bind, create_app
from burrow.api.security import ApiKey, Scope, find_key, parse_api_keys
from tests._timing import LATE
from tests.api.conftest import asgi_client, assert_envelope, serve

ADD = "/api/v1/tasks/add"


async def test_healthz_and_readyz_answer_in_the_envelope(api_app: Callable[..., Burrow]) -> None:
    """/healthz is 200 and /readyz reports both servers ok."""
    async with asgi_client(api_app()) as c:
        assert assert_envelope(await c.get("/healthz"))["data"] == {"status": "ok"}
        ready = await c.get("/readyz")
        assert ready.status_code == 200
        assert assert_envelope(ready)["data"] == {"broker": "ok", "redis": "ok"}


async def test_submit_answers_202_with_location_and_record(api_app: Callable[..., Burrow]) -> None:
    """A submit is accepted with the queued record and a Location that reads it back."""
    async with asgi_client(api_app()) as c:
        r = await c.post(ADD, json={"payload": {"a": 1, "b": 2}, "priority": 7})
        assert r.status_code == 202
        data = assert_envelope(r)["data"]
        assert data["status"] == "queued"
        assert data["name"] == "add"
        assert data["queue"] == "math"
        assert data["payload"] == {"a": 1, "b": 2}
        assert r.headers["location"] == f"/api/v1/tasks/{data['id']}"
        again = await c.get(r.headers["location"])
        assert again.status_code == 200
        assert assert_envelope(again)["data"]["trace_id"] == data["trace_id"]


@pytest.mark.parametrize(
    ("path", "body", "status", "type_"),
    [
        ("/api/v1/tasks/nope", {"payload": {}}, 404, "unknown_task"),
        ("/api/v1/tasks/nope/batch", {"items": [{"payload": 1}]}, 404, "unknown_task"),
        (ADD, {"payload": {"a": "x", "b": 2}}, 422, "validation_error"),
        (ADD, {"payload": {"a": 1, "b": 2}, "extra": 1}, 422, "validation_error"),
        (ADD, {"payload": {"a": 1, "b": 2}, "priority": 10}, 422, "validation_error"),
        (ADD, {"payload": {"a": 1, "b": 2}, "delay": -1}, 422, "validation_error"),
        (
            ADD,
            {"payload": {"a": 1, "b": 2}, "eta": "2999-01-01T00:00:00Z"},
            422,
            "validation_error",
        ),
        (ADD, [], 422, "validation_error"),
        ("/api/v1/tasks/add/batch", {"items": []}, 422, "validation_error"),
        (
            ADD,
            {"payload": {"a": 1, "b": 2}, "callback_url": "http://127.0.0.1/x"},
            422,
            "callback_url_forbidden",
        ),
        (
            ADD,
            {"payload": {"a": 1, "b": 2}, "callback_url": "http://2130706433/"},
            422,
            "callback_url_forbidden",
        ),
        (
            ADD,
            {"payload": {"a": 1, "b": 2}, "callback_url": "file:///etc/passwd"},
            422,
            "callback_url_forbidden",
        ),
        (
            ADD,
            {"payload": {"a": 1, "b": 2}, "idempotency_key": "ключ"},
            400,
            "invalid_idempotency_key",
        ),
    ],
)
async def test_bad_submits_answer_with_status_and_type(
    api_app: Callable[..., Burrow], path: str, body: Any, status: int, type_: str
) -> None:
    """Each bad submit gets its status and a stable error type, in the envelope."""
    async with asgi_client(api_app()) as c:
        r = await c.post(path, json=body)
        assert r.status_code == status, r.text
        assert assert_envelope(r)["error"]["type"] == type_


@pytest.mark.parametrize(
    "raw",
    [
        b'{"payload": {"x": NaN}}',
        b'{"payload": {"x": -Infinity}}',
        b'{"payload": {"x": "\\ud800"}}',
        b'{"payload": {"x": ' + b"9" * 5000 + b"}}",
        b'{"payload": ' + b"[" * 10000 + b"]" * 10000 + b"}",
        b'{"payload":',
        b"",
    ],
)
async def test_malformed_json_is_a_4xx_never_a_500(
    api_app: Callable[..., Burrow], raw: bytes
) -> None:
    """Truncated JSON, NaN, lone surrogates, huge numbers and deep nesting are refused."""
    async with asgi_client(api_app()) as c:
        for path in ("/api/v1/tasks/boom", "/api/v1/tasks/boom/batch"):
            body = (
                raw
                if path.endswith("boom")
                else raw.replace(b'{"payload"', b'{"items": [{"payload"', 1)
            )
            r = await c.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code in (400, 422), r.text
            assert_envelope(r)


async def test_validation_errors_list_the_failing_fields(api_app: Callable[..., Burrow]) -> None:
    """A 422 names each failing field by its location."""
    async with asgi_client(api_app()) as c:
        r = await c.post(ADD, json={"payload": {"a": "x"}})
        details = assert_envelope(r)["error"]["details"]
        locs = {tuple(d["loc"]) for d in details}
        assert locs == {("body", "payload", "a"), ("body", "payload", "b")}


async def test_generic_route_validates_the_payload_with_the_task_model(
    api_app: Callable[..., Burrow],
) -> None:
    """A task registered after create_app goes through /tasks/{name}; its model still applies."""
    app = api_app()
    api = create_app(app)

    @app.task(queue="math")
    async def late(p: dict[str, int]) -> int:
        return sum(p.values())

    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            bad = await c.post("/api/v1/tasks/late", json={"payload": {"x": "y"}})
            assert bad.status_code == 422
            assert assert_envelope(bad)["error"]["type"] == "payload_invalid"
            good = await c.post("/api/v1/tasks/late", json={"payload": {"x": 1}})
            assert good.status_code == 202


@pytest.mark.parametrize(
    ("method", "path", "status", "type_"),
    [
        ("GET", "/no/such/path", 404, "not_found"),
        ("DELETE", "/healthz", 405, "method_not_allowed"),
        ("GET", "/api/v1/tasks/does-not-exist", 404, "task_not_found"),
        ("GET", "/api/v1/tasks?limit=0", 422, "validation_error"),
        ("GET", "/api/v1/tasks/x?wait=-1", 422, "validation_error"),
        ("GET", "/api/v1/dead-letters?queue=nope", 404, "unknown_queue"),
        ("POST", "/api/v1/tasks/x/cancel", 404, "task_not_found"),
    ],
)
async def test_framework_errors_use_the_envelope(
    api_app: Callable[..., Burrow], method: str, path: str, status: int, type_: str
) -> None:
    """FastAPI's own 404/405/422 and our lookups all answer in the envelope."""
    async with asgi_client(api_app()) as c:
        r = await c.request(method, path)
        assert r.status_code == status, r.text
        assert assert_envelope(r)["error"]["type"] == type_


async def test_unexpected_errors_are_500_without_traceback(
    api_app: Callable[..., Burrow], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception nobody expected is a 500 envelope that leaks no detail."""
    app = api_app()

    async def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.state, "workers", broken)
    async with asgi_client(app) as c:
        r = await c.get("/api/v1/workers")
        assert r.status_code == 500
        body = assert_envelope(r)
        assert body["error"]["type"] == "internal_error"
        assert "secret" not in r.text
        assert "Traceback" not in r.text


async def test_unsupported_content_type_is_415(api_app: Callable[..., Burrow]) -> None:
    """Bodies must be JSON in UTF-8."""
    async with asgi_client(api_app()) as c:
        for ctype in ("text/plain", "application/json; charset=utf-16"):
            r = await c.post(
                ADD, content=b'{"payload": {"a": 1, "b": 2}}', headers={"content-type": ctype}
            )
            assert r.status_code == 415
            assert assert_envelope(r)["error"]["type"] == "unsupported_media_type"


async def test_body_over_the_cap_is_413_with_and_without_content_length(
    api_app: Callable[..., Burrow],
) -> None:
    """413 before reading with an honest Content-Length, and mid-stream when chunked."""
    app = api_app(max_body_bytes=1000)
    big = b'{"payload": {"a": 1, "b": 2}, "idempotency_key": "' + b"x" * 2000 + b'"}'

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as c:
        r = await c.post(ADD, content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert assert_envelope(r)["error"]["type"] == "body_too_large"
        status, body = await _post_chunked(url, ADD, big)
        assert status == 413
        assert b'"body_too_large"' in body
        ok = await c.post(ADD, json={"payload": {"a": 1, "b": 2}})
        assert ok.status_code == 202


async def _post_chunked(url: str, path: str, body: bytes) -> tuple[int, bytes]:
    """POST ``body`` chunked (no Content-Length) on a raw socket, sending the chunks slowly
    enough for the server to answer mid-stream; returns the status and what was read."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    received = bytearray()

    async def read_all() -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                received.extend(chunk)

    reading = asyncio.create_task(read_all())
    writer.write(head.encode())
    with contextlib.suppress(ConnectionError):  # the server may close before the end
        for i in range(0, len(body), 100):
            part = body[i : i + 100]
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.005)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    await asyncio.wait_for(reading, timeout=10)  # the server closes after the 413
    writer.close()
    return int(received.split(b" ", 2)[1]), bytes(received)


# -- idempotency ---------------------------------------------------------------------------


async def test_twenty_concurrent_repeats_make_one_task(api_app: Callable[..., Burrow]) -> None:
    """20 concurrent submits with one Idempotency-Key: one 202, nineteen 200, one task id."""
    async with asgi_client(api_app()) as c:
        body = {"payload": {"a": 2, "b": 3}}
        answers = await asyncio.gather(
            *(c.post(ADD, json=body, headers={"Idempotency-Key": "order-42"}) for _ in range(20))
        )
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200] * 19 + [202]
        ids = {assert_envelope(r)["data"]["id"] for r in answers}
        assert len(ids) == 1
        # The body field works the same way, and later repeats still return the task.
        later = await c.post(ADD, json={**body, "idempotency_key": "order-42"})
        assert later.status_code == 200
        assert later.json()["data"]["id"] in ids


async def test_reused_idempotency_key_with_another_payload_is_409(
    api_app: Callable[..., Burrow],
) -> None:
    """The same key with a different payload is a conflict, not the first task."""
    async with asgi_client(api_app()) as c:
        first = await c.post(ADD, json={"payload": {"a": 1, "b": 1}, "idempotency_key": "k"})
        assert first.status_code == 202
        other = await c.post(ADD, json={"payload": {"a": 9, "b": 9}, "idempotency_key": "k"})
        assert other.status_code == 409
        assert assert_envelope(other)["error"]["type"] == "idempotency_key_reused"
        mismatch = await c.post(
            ADD,
            json={"payload": {"a": 1, "b": 1}, "idempotency_key": "k"},
            headers={"Idempotency-Key": "other"},
        )
        assert mismatch.status_code == 422


# -- auth ----------------------------------------------------------------------------------


def test_api_keys_parse_with_scopes_and_hide_the_secret() -> None:
    """``key`` has every scope, ``key:read+write`` those named; repr never shows the key."""
    keys = parse_api_keys("all-key, ro-key:read ,rw:read+write")
    assert [k.scopes for k in keys] == [
        frozenset(Scope),
        frozenset({Scope.READ}),
        frozenset({Scope.READ, Scope.WRITE}),
    ]
    assert "all-key" not in repr(keys[0])
    assert find_key(keys, "ro-key") is keys[1]
    assert find_key(keys, "ro-ke") is None
    for bad in ("k:root", ":read", "k,k"):
        with pytest.raises(ConfigurationError) as info:
            parse_api_keys(bad)
        assert "root" not in str(info.value) or bad == "k:root"


def test_check_bind_refuses_public_hosts_without_keys() -> None:
    """No keys: loopback only, unless insecure; with keys any host."""
    open_settings = Settings()
    check_bind(open_settings, "127.0.0.1", insecure=False)
    check_bind(open_settings, "::1", insecure=False)
    check_bind(open_settings, "localhost", insecure=False)
    with pytest.raises(ConfigurationError, match="BURROW_API_KEYS"):
        check_bind(open_settings, "0.0.0.0", insecure=False)  # noqa: S104
    check_bind(open_settings, "0.0.0.0", insecure=True)  # noqa: S104
    check_bind(Settings(api_keys="s3cret"), "0.0.0.0", insecure=False)  # noqa: S104
    assert isinstance(parse_api_keys("a")[0], ApiKey)


async def test_keys_and_scopes(api_app: Callable[..., Burrow]) -> None:
    """401 without or with an unknown key, 403 without the scope, 2xx with it."""
    app = api_app(api_keys="reader:read,writer:write,boss")
    async with asgi_client(app) as c:
        none = await c.get("/api/v1/workers")
        assert none.status_code == 401
        assert none.headers["www-authenticate"] == "Bearer"
        assert assert_envelope(none)["error"]["type"] == "unauthorized"
        wrong = await c.get("/api/v1/workers", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        basic = await c.get("/api/v1/workers", headers={"Authorization": "Basic cmVhZGVy"})
        assert basic.status_code == 401

        def as_(key: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {key}"}

        assert (await c.get("/api/v1/workers", headers=as_("reader"))).status_code == 200
        denied = await c.post(ADD, json={"payload": {"a": 1, "b": 1}}, headers=as_("reader"))
        assert denied.status_code == 403
        assert assert_envelope(denied)["error"]["details"] == {"required": "write"}
        ok = await c.post(ADD, json={"payload": {"a": 1, "b": 1}}, headers=as_("writer"))
        assert ok.status_code == 202
        assert (await c.get("/api/v1/workers", headers=as_("writer"))).status_code == 403
        assert (await c.delete("/api/v1/dead-letters", headers=as_("writer"))).status_code == 403
        purge = await c.delete("/api/v1/dead-letters", headers=as_("boss"))
        assert purge.status_code == 200
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers=as_("reader"))).status_code == 200
        in_url = await c.get("/api/v1/workers?api_key=reader")
        assert in_url.status_code == 400
        # Probes and the schema need no key.
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/readyz")).status_code == 200
        assert (await c.get("/openapi.json")).status_code == 200


# -- limits --------------------------------------------------------------------------------


async def test_queue_depth_limit_is_429_with_retry_after(api_app: Callable[..., Burrow]) -> None:
    """Past BURROW_MAX_QUEUE_DEPTH ready messages a submit is refused; depth is cached."""
    app = api_app(max_queue_depth=3)
    api = create_app(app)
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for i in range(3):
                r = await c.post(ADD, json={"payload": {"a": i, "b": 0}})
                assert r.status_code == 202
                await asyncio.sleep(1.1)  # let the cached depth expire
            full = await c.post(ADD, json={"payload": {"a": 9, "b": 9}})
            assert full.status_code == 429
            assert int(full.headers["retry-after"]) >= 1
            body = assert_envelope(full)
            assert body["error"]["type"] == "queue_full"
            assert body["error"]["details"]["depth"] == 3
            batch = await c.post(
                "/api/v1/tasks/add/batch", json={"items": [{"payload": {"a": 1, "b": 1}}]}
            )
            assert batch.status_code == 429
            # Other queues are not affected.
            assert (
                await c.post("/api/v1/tasks/nap", json={"payload": {"seconds": 0}})
            ).status_code == 202
        guard = api.state.burrow_api.depth
        before = guard.fetches
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            answers = await asyncio.gather(
                *(c.post(ADD, json={"payload": {"a": 1, "b": 1}}) for _ in range(20))
            )
        assert {r.status_code for r in answers} == {429}
        assert guard.fetches - before <= 2  # read from the broker about once a second


async def test_queue_depth_limit_counts_every_priority_lane(
    api_app: Callable[..., Burrow], make_app: Callable[..., Burrow]
) -> None:
    """On a queue with priority lanes the depth guard adds the lanes up: 2 high and 1 low
    ready messages make a queue of 3 full, whatever lane the next submit would use."""
    app = api_app(max_queue_depth=3)
    make_app.extra_queues.update({"ranked", "ranked.high", "ranked.low"})  # type: ignore[attr-defined]

    @app.task(queue="ranked", priorities=True)
    async def ranked(p: dict[str, int]) -> None: ...

    for priority in (9, 9, 0):
        await app.submit("ranked", {}, priority=priority)
    api = create_app(app)
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            full = await c.post("/api/v1/tasks/ranked", json={"payload": {}})
    assert full.status_code == 429, full.text
    assert assert_envelope(full)["error"]["details"]["depth"] == 3


async def test_rate_limit_per_key_is_429_with_retry_after(api_app: Callable[..., Burrow]) -> None:
    """BURROW_API_RATE_LIMIT is a sliding window per key, kept in Redis."""
    app = api_app(api_keys="one,two", api_rate_limit="3/s")
    async with asgi_client(app) as c:
        one = {"Authorization": "Bearer one"}
        answers = [await c.get("/api/v1/workers", headers=one) for _ in range(4)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        limited = answers[-1]
        assert limited.headers["retry-after"] == "1"
        assert assert_envelope(limited)["error"]["type"] == "rate_limited"
        # Another key has its own window.
        other = await c.get("/api/v1/workers", headers={"Authorization": "Bearer two"})
        assert other.status_code == 200
        await asyncio.sleep(1.05)
        assert (await c.get("/api/v1/workers", headers=one)).status_code == 200


# -- servers down --------------------------------------------------------------------------


async def test_redis_unreachable_gives_fast_503(api_app: Callable[..., Burrow]) -> None:
    """With Redis down, submits answer 503 with Retry-After within the
    API's timeout (not the client's); /readyz says redis."""
    app = api_app(redis_url="redis://127.0.0.1:1/0")
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as c:
        start = time.monotonic()
        r = await c.post(ADD, json={"payload": {"a": 1, "b": 2}})
        assert time.monotonic() - start < app.settings.api_timeout + LATE
        assert r.status_code == 503
        assert "retry-after" in r.headers
        assert assert_envelope(r)["error"]["type"] == "state_unavailable"
        assert (await c.get("/api/v1/tasks/abc")).status_code == 503
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert assert_envelope(ready)["error"]["details"] == {
            "broker": "ok",
            "redis": "unavailable",
        }


async def test_broker_unreachable_gives_fast_503(api_app: Callable[..., Burrow]) -> None:
    """With the broker down, submits answer 503 within the API's timeout (not
    the client's); /readyz says broker."""
    app = api_app(amqp_url="amqp://guest:guest@127.0.0.1:1/")
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as c:
        start = time.monotonic()
        r = await c.post(ADD, json={"payload": {"a": 1, "b": 2}})
        assert time.monotonic() - start < app.settings.api_timeout + LATE
        assert r.status_code == 503
        assert r.headers["retry-after"] == "2"
        assert assert_envelope(r)["error"]["type"] == "broker_unavailable"
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert assert_envelope(ready)["error"]["details"] == {
            "broker": "unavailable",
            "redis": "ok",
        }


# -- schema and metrics --------------------------------------------------------------------


async def test_each_task_has_a_typed_submit_operation(api_app: Callable[..., Burrow]) -> None:
    """/openapi.json holds one submit operation per task, with the task's payload model."""
    async with asgi_client(api_app()) as c:
        schema = (await c.get("/openapi.json")).json()
        assert (await c.get("/docs")).status_code == 200
    op = schema["paths"]["/api/v1/tasks/add"]["post"]
    assert op["operationId"] == "submit_add"
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    body = schema["components"]["schemas"][ref]
    payload_ref = body["properties"]["payload"]["$ref"].split("/")[-1]
    assert set(schema["components"]["schemas"][payload_ref]["properties"]) == {"a", "b"}
    assert "/api/v1/tasks/nap" in schema["paths"]
    assert "/api/v1/tasks/add/batch" in schema["paths"]
    errors = op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert errors.endswith("/ErrorEnvelope")


async def test_metrics_count_submissions_and_requests(api_app: Callable[..., Burrow]) -> None:
    """/metrics serves this app's own registry: submissions by task and queue, and HTTP
    requests by route template and status."""
    async with asgi_client(api_app()) as c:
        await c.post(ADD, json={"payload": {"a": 1, "b": 2}})
        await c.post("/api/v1/tasks/add/batch", json={"items": [{"payload": {"a": 1, "b": 2}}] * 2})
        await c.get("/api/v1/tasks/missing")
        text = (await c.get("/metrics")).text
    assert 'burrow_tasks_submitted_total{queue="math",task="add"} 3.0' in text
    assert (
        'burrow_http_requests_total{method="GET",route="/api/v1/tasks/{task_id}",status="404"} 1.0'
        in text
    )
    # A second app has its own registry (no clash, no shared counts).
    other = create_app(Burrow(settings=Settings(namespace="metrics-check")))
    assert other.state.burrow_api.metrics.registry is not None
