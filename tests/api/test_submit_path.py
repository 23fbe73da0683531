"""The lean submit path: ``ApiFront`` sends submits straight to the handlers of the
``LeanRoute``s, which parse, validate and answer without FastAPI's request handling. These
tests pin that it answers exactly as the routed path does, and what the 202 body holds."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from burrow import Burrow
from burrow.api import create_app
from burrow.tasks.record import TaskRecord
from tests.api.conftest import assert_envelope

ADD = "/api/v1/tasks/add"
BOOM = "/api/v1/tasks/boom"
JSON = {"content-type": "application/json"}

#: (path, raw body, extra headers): good and bad submits on every submit route.
REQUESTS: list[tuple[str, bytes, dict[str, Any]]] = [
    (ADD, b'{"payload": {"a": 1, "b": 2}}', {}),
    (ADD, b'{"payload": {"a": "1", "b": 2.0}, "priority": "3"}', {}),
    (ADD, b'{"payload": {"a": 1, "b": 2}, "delay": 5}', {}),
    (ADD, b'{"payload": {"a": "x"}}', {}),
    (ADD, b'{"payload": {"a": 1, "b": 2}, "extra": 1}', {}),
    (ADD, b'{"payload": {"a": 1, "b": 2}, "eta": "2999-01-01T00:00:00Z"}', {}),
    (ADD, b'{"payload": {"a": 1, "b": 2}, "idempotency_key": "k1"}', {"Idempotency-Key": "k2"}),
    (ADD, b'{"payload": {"a": 1, "b": 2}}', {"Idempotency-Key": b"\xe9"}),
    (ADD, b"[]", {}),
    (ADD, b"null", {}),
    (ADD, b"", {}),
    (ADD, b'{"payload":', {}),
    (ADD + "?api_key=k", b'{"payload": {"a": 1, "b": 2}}', {}),
    (BOOM, b'{"payload": {"x": NaN}}', {}),
    (BOOM, b'{"payload": {"x": 1e400}}', {}),
    (BOOM, b'{"payload": {"x": "\\ud800"}}', {}),
    (BOOM, b'{"payload": {"x": "NaN and Infinity as text"}}', {}),
    (BOOM, b'{"payload": {"x": "\xc3\x28"}}', {}),
    (BOOM, b'{"payload": {"x": ' + b"9" * 5000 + b"}}", {}),
    (BOOM, b'\xef\xbb\xbf{"payload": {}}', {}),
    (BOOM, b'{"payload": {"a": 1}, "payload": {"b": 2}}', {}),
    (BOOM + "/batch", b'{"items": [{"payload": {}}, {"payload": {"x": [1, 2.5, "y"]}}]}', {}),
    (BOOM + "/batch", b'{"items": [{"payload": {"x": NaN}}]}', {}),
    (BOOM + "/batch", b'{"items": []}', {}),
    (BOOM + "/batch", b'{"items": [{"payload": {}, "priority": 1}]}', {}),
    (ADD + "/batch", b'{"items": [{"payload": {"a": 1}}]}', {}),
    (ADD + "/batch", b"", {}),
    ("/api/v1/tasks/late", b'{"payload": {"x": 1}}', {}),
    ("/api/v1/tasks/late", b'{"payload": {"x": "y"}}', {}),
    ("/api/v1/tasks/late/batch", b'{"items": [{"payload": {"x": 1}}]}', {}),
    ("/api/v1/tasks/late/batch", b'{"items": [{"payload": {"x": "y"}}]}', {}),
    ("/api/v1/tasks/nope", b'{"payload": {}}', {}),
    ("/api/v1/tasks/nope/batch", b'{"items": [{"payload": {}}]}', {}),
    ("/api/v1/tasks/" + "n" * 201, b"{}", {}),
    ("/api/v1/tasks/" + "n" * 201 + "/batch", b"{}", {}),
]


def _masked(response: httpx.Response) -> tuple[int, str, str | None]:
    text = re.sub(r'"[0-9a-f-]{32,36}"', '"<id>"', response.text)
    text = re.sub(r"\d{10}\.\d+", "<ts>", text)
    location = response.headers.get("location")
    return response.status_code, text, location and re.sub(r"[0-9a-f-]{36}", "<id>", location)


@pytest.fixture
async def clients(
    api_app: Callable[..., Burrow],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two clients on one app: the first takes the lean path; the second sets a root path,
    which ``ApiFront`` leaves to the router (the ``LeanRoute`` handlers behind FastAPI's
    middleware and routing)."""
    app = api_app()
    api = create_app(app)

    @app.task(queue="math")
    async def late(p: dict[str, int]) -> int:
        return sum(p.values())

    async with api.router.lifespan_context(api):
        lean = httpx.ASGITransport(app=api)
        routed = httpx.ASGITransport(app=api, root_path="/mounted")
        async with (
            httpx.AsyncClient(transport=lean, base_url="http://t") as a,
            httpx.AsyncClient(transport=routed, base_url="http://t") as b,
        ):
            yield a, b


async def test_the_lean_path_answers_as_the_routed_path(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    """Every request gets the same status, body (ids and times aside) and Location both
    ways, and every answer is the envelope."""
    lean, routed = clients
    for path, body, headers in REQUESTS:
        a = await lean.post(path, content=body, headers={**JSON, **headers})
        b = await routed.post(path, content=body, headers={**JSON, **headers})
        assert _masked(a) == _masked(b), (path, body)
        assert_envelope(a)
        assert a.status_code < 500, (path, body, a.text)


async def test_strict_json_and_parse_errors_keep_their_answers(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    """NaN, Infinity (also as an overflowing number), lone surrogates, bytes that are not
    UTF-8 and broken JSON are all 422 validation_error, saying where; the words NaN and
    Infinity inside strings are fine."""
    lean, _ = clients
    expected = {
        b'{"payload": {"x": NaN}}': 422,
        b'{"payload": {"x": 1e400}}': 422,
        b'{"payload": {"x": "\\ud800"}}': 422,
        b'{"payload":': 422,
        b'{"payload": {"x": "\xc3\x28"}}': 422,
        b'{"payload": {"x": "NaN and Infinity as text"}}': 202,
    }
    for body, status in expected.items():
        r = await lean.post(BOOM, content=body, headers=JSON)
        assert r.status_code == status, (body, r.text)
        if status == 422:
            envelope = assert_envelope(r)
            assert envelope["error"]["type"] == "validation_error"
            assert envelope["message"].startswith("malformed JSON at line 1, column "), body
    broken = await lean.post(BOOM, content=b'{"payload":', headers=JSON)
    assert assert_envelope(broken)["error"]["details"] == [
        {"loc": ["body"], "msg": "expecting value", "type": "json_invalid", "line": 1, "column": 12}
    ]


async def test_the_202_body_is_the_task_record(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    """The 202 data built without the model has TaskRecord's fields in order and types,
    the payload as validated (coerced by the task's model), and matches the stored record."""
    lean, _ = clients
    r = await lean.post(ADD, json={"payload": {"a": "1", "b": 2.0}, "delay": 30})
    assert r.status_code == 202
    data = assert_envelope(r)["data"]
    assert list(data) == list(TaskRecord.model_fields)
    assert TaskRecord.model_validate(data).model_dump(mode="json") == data
    assert data["payload"] == {"a": 1, "b": 2}
    assert data["status"] == "queued"
    assert data["eta"] == pytest.approx(data["created_at"] + 30, abs=1)
    stored = assert_envelope(await lean.get(r.headers["location"]))["data"]
    for field in ("id", "name", "queue", "payload", "max_retries", "trace_id", "eta"):
        assert stored[field] == data[field], field


async def test_integers_past_64_bits_are_kept(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    """A payload integer past 64 bits is accepted and echoed exactly (it used to be
    published and then answered with a 500)."""
    lean, _ = clients
    big = 2**70 + 1
    r = await lean.post(BOOM, content=json.dumps({"payload": {"n": big}}), headers=JSON)
    assert r.status_code == 202, r.text
    assert json.loads(r.text)["data"]["payload"] == {"n": big}


async def test_submit_metrics_and_route_labels_on_the_lean_path(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    """Requests served directly are counted under their route template and status."""
    lean, _ = clients
    await lean.post(ADD, json={"payload": {"a": 1, "b": 2}})
    await lean.post("/api/v1/tasks/late", json={"payload": {"x": 1}})
    await lean.post(ADD, json={"payload": {"a": "x"}})
    text = (await lean.get("/metrics")).text
    for line in (
        'burrow_http_requests_total{method="POST",route="/api/v1/tasks/add",status="202"} 1.0',
        'burrow_http_requests_total{method="POST",route="/api/v1/tasks/add",status="422"} 1.0',
        'burrow_http_requests_total{method="POST",route="/api/v1/tasks/{name}",status="202"} 1.0',
        'burrow_tasks_submitted_total{queue="math",task="late"} 1.0',
    ):
        assert line in text, line


def _schema_of(api: Any) -> dict[str, Any]:
    schema: dict[str, Any] = api.openapi()
    return schema


async def test_submit_operations_keep_their_typed_bodies(api_app: Callable[..., Burrow]) -> None:
    """The lean routes still document their typed body, the Idempotency-Key header and the
    bearer security in /openapi.json."""
    schema = _schema_of(create_app(api_app()))
    for path in ("/api/v1/tasks/add", "/api/v1/tasks/add/batch"):
        op = schema["paths"][path]["post"]
        assert op["requestBody"]["required"] is True
        assert "$ref" in op["requestBody"]["content"]["application/json"]["schema"]
        assert op["security"] == [{"HTTPBearer": []}]
    headers = [p["name"] for p in schema["paths"]["/api/v1/tasks/add"]["post"]["parameters"]]
    assert headers == ["Idempotency-Key"]
