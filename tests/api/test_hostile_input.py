"""What a hostile client sends the HTTP API: non-finite numbers and duplicate keys are
refused on every route that takes a JSON body (never stored as null), every body that is not
JSON is one documented 422 saying where it broke, the key is checked before the body is
read, a refused cancel reads as a sentence, and a submit's 202 answer is the stored record."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel

from burrow import Burrow
from tests.api.conftest import asgi_client, assert_envelope

JSON = {"content-type": "application/json"}


class Note(BaseModel):
    """A typed payload whose fields are not numbers."""

    text: str
    meta: Any = None
    tags: dict[str, Any] = {}


class Order(BaseModel):
    """The body of an application's own route."""

    sku: str


def _with_hostile_tasks(app: Burrow) -> Burrow:
    """The API test tasks plus ``note`` (typed, fields that are not numbers) and
    ``anything`` (the payload is Any)."""

    @app.task(queue="math")
    async def note(p: Note) -> None:
        """Store a note."""

    @app.task(queue="math")
    async def anything(p: Any) -> None:
        """Take any JSON."""

    return app


#: (route, body with ``{v}`` where the hostile value goes) for every route with a JSON body.
BODY_ROUTES: list[tuple[str, str]] = [
    ("/api/v1/tasks/boom", '{{"payload": {{"x": {v}}}}}'),
    ("/api/v1/tasks/note", '{{"payload": {{"text": "hi", "meta": {{"x": {v}}}}}}}'),
    ("/api/v1/tasks/note", '{{"payload": {{"text": "hi", "tags": {{"x": {v}}}}}}}'),
    ("/api/v1/tasks/anything", '{{"payload": [1, {v}]}}'),
    ("/api/v1/tasks/boom/batch", '{{"items": [{{"payload": {{}}}}, {{"payload": {{"x": {v}}}}}]}}'),
    ("/api/v1/tasks/late", '{{"payload": {{"x": {v}}}}}'),
    ("/api/v1/tasks/late/batch", '{{"items": [{{"payload": {{"x": {v}}}}}]}}'),
    ("/api/v1/events/orders", '{{"payload": {{"x": {v}}}}}'),
    ("/api/v1/rpc/quote", '{{"payload": {{"x": {v}}}}}'),
    ("/api/v1/schedules", '{{"task": "boom", "cron": "* * * * *", "payload": {{"x": {v}}}}}'),
    ("/api/v1/dead-letters/replay", '{{"queue": "math", "ids": [{v}]}}'),
]


@pytest.fixture
async def hostile(
    api_app: Callable[..., Burrow],
) -> AsyncIterator[tuple[Burrow, httpx.AsyncClient]]:
    """An app with the hostile tasks (``late`` registered after the API is built, so only
    the generic routes serve it) and an in-process client."""
    app = _with_hostile_tasks(api_app())
    async with asgi_client(app) as client:

        @app.task(queue="math")
        async def late(p: dict[str, Any]) -> None:
            """Registered after create_app."""

        yield app, client


async def _stored(app: Burrow) -> list[Any]:
    """Every task record of the test's namespace."""
    return (await app.list_tasks(limit=500)).items


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
async def test_non_finite_numbers_are_refused_on_every_body_route(
    hostile: tuple[Burrow, httpx.AsyncClient], value: str
) -> None:
    """NaN, Infinity, -Infinity and numbers past a double's range are 422 on every route
    that takes a body, typed or not, saying which value and where; nothing is stored."""
    app, client = hostile
    answers = [
        (path, body, await client.post(path, content=body, headers=JSON))
        for path, body in ((p, t.format(v=value)) for p, t in BODY_ROUTES)
    ]
    accepted = [(path, r.status_code) for path, _, r in answers if r.status_code != 422]
    assert accepted == []
    assert await _stored(app) == []
    for path, body, r in answers:
        envelope = assert_envelope(r)
        column = body.index(value) + 1
        assert envelope["message"].startswith(f"malformed JSON at line 1, column {column}: "), (
            path,
            envelope["message"],
        )
        assert value.lstrip("-") in envelope["message"]
        assert envelope["error"]["type"] == "validation_error"


async def test_duplicate_keys_are_refused_naming_the_key(
    hostile: tuple[Burrow, httpx.AsyncClient],
) -> None:
    """An object with the same key twice is 422 naming the key, on every body route, also
    at the top level of a submit; nothing is stored."""
    app, client = hostile
    cases = [(path, template.format(v='{"k": 1, "k": 2}')) for path, template in BODY_ROUTES]
    cases.append(("/api/v1/tasks/boom", '{"payload": {"a": 1}, "payload": {"b": 2}}'))
    for path, body in cases:
        r = await client.post(path, content=body, headers=JSON)
        assert r.status_code == 422, (path, body, r.text)
        message = assert_envelope(r)["message"]
        assert message.startswith("malformed JSON at line 1, column "), message
        assert "duplicate key" in message
        assert "'k'" in message or "'payload'" in message, message
    assert await _stored(app) == []


#: Bodies that are not JSON, each for every body route.
NOT_JSON: list[bytes] = [
    b'{"payload": {"x": "\xc3\x28"}}',  # not UTF-8
    b'{"payload": {"x": "\\ud800"}}',  # a lone surrogate
    b'{"payload": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # nested too deeply
    b'{"payload": {"x": ' + b"9" * 5000 + b"}}",  # an integer past 4300 digits
    b'{"payload": {"x": 1}',  # broken
    b"   ",  # only whitespace
]


async def test_bodies_that_are_not_json_are_one_documented_422_everywhere(
    hostile: tuple[Burrow, httpx.AsyncClient],
) -> None:
    """Whatever is wrong with the JSON, every body route answers 422 validation_error in
    the envelope (never 400), with a message that starts "malformed JSON"."""
    _, client = hostile
    for path, _template in BODY_ROUTES:
        for body in NOT_JSON:
            r = await client.post(path, content=body, headers=JSON)
            assert r.status_code == 422, (path, body[:40], r.text)
            envelope = assert_envelope(r)
            assert envelope["error"]["type"] == "validation_error"
            assert envelope["message"].startswith("malformed JSON"), envelope["message"]
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/api/v1/events/{exchange}"]["post"]
    assert "422" in operation["responses"]
    assert "400" not in operation["responses"]


async def test_malformed_json_says_where_it_broke(
    hostile: tuple[Burrow, httpx.AsyncClient],
) -> None:
    """The message names the line, the column and what the parser expected, on the submit
    routes and on the routes FastAPI serves alike."""
    _, client = hostile
    for path in ("/api/v1/tasks/boom", "/api/v1/tasks/late", "/api/v1/events/orders"):
        r = await client.post(path, content=b'{"payload": {"x" 1}}', headers=JSON)
        assert r.status_code == 422
        envelope = assert_envelope(r)
        assert envelope["message"] == "malformed JSON at line 1, column 18: expecting ':' delimiter"
        assert envelope["error"]["details"] == [
            {
                "loc": ["body"],
                "msg": "expecting ':' delimiter",
                "type": "json_invalid",
                "line": 1,
                "column": 18,
            }
        ]
    r = await client.post(
        "/api/v1/tasks/boom", content=b'{\n  "payload": {"x": 1},\n  "delay" 5\n}', headers=JSON
    )
    assert assert_envelope(r)["message"] == (
        "malformed JSON at line 3, column 11: expecting ':' delimiter"
    )


async def test_the_applications_own_routes_say_where_too(
    api_app: Callable[..., Burrow],
) -> None:
    """A body FastAPI itself could not parse, on an application route, is answered with
    the same 422 and "malformed JSON at line, column" message (bytes that are not UTF-8
    too, which FastAPI answers with a 400 of its own)."""
    app = api_app()
    router = APIRouter()

    @router.post("/orders")
    async def create_order(order: Order) -> dict[str, str]:
        return {"sku": order.sku}

    app.include_router(router)
    async with asgi_client(app) as client:
        r = await client.post("/orders", content=b'{"sku": "a",}', headers=JSON)
        not_utf8 = await client.post("/orders", content=b'{"sku":\n "\xff"}', headers=JSON)
    assert r.status_code == 422
    message = assert_envelope(r)["message"]
    assert message.startswith("malformed JSON at line 1, column 13: expecting property name")
    assert not_utf8.status_code == 422
    assert assert_envelope(not_utf8)["message"] == (
        "malformed JSON at line 2, column 3: invalid UTF-8 (byte 0xff)"
    )


async def test_the_key_is_checked_before_the_body_is_parsed(
    api_app: Callable[..., Burrow],
) -> None:
    """With BURROW_API_KEYS set, a malformed body without a key is 401 on every body route
    (nothing about the body leaks); with the key it is the 422."""
    app = _with_hostile_tasks(api_app(api_keys="k1"))
    async with asgi_client(app) as client:
        for path, _template in BODY_ROUTES:
            if path.startswith("/api/v1/tasks/late"):
                continue  # only registered in the other fixture: the generic route serves it
            for body in (b'{"payload": {"x": NaN', b"\xff", b'{"a": 1, "a": 2}'):
                anonymous = await client.post(path, content=body, headers=JSON)
                assert anonymous.status_code == 401, (path, body, anonymous.text)
                assert assert_envelope(anonymous)["error"]["type"] == "unauthorized"
                keyed = await client.post(
                    path, content=body, headers={**JSON, "authorization": "Bearer k1"}
                )
                assert keyed.status_code == 422, (path, body, keyed.text)


async def test_the_key_is_checked_once_per_request(api_app: Callable[..., Burrow]) -> None:
    """A route that checks the key before its body and again in its dependency counts the
    request once against the rate limit."""
    app = api_app(api_keys="k1", api_rate_limit="2/m")
    keyed = {**JSON, "authorization": "Bearer k1"}
    async with asgi_client(app) as client:
        statuses = [
            (await client.post("/api/v1/events/orders", content=b"{", headers=keyed)).status_code
            for _ in range(3)
        ]
    assert statuses == [422, 422, 429]


async def test_a_refused_cancel_reads_as_a_sentence(
    hostile: tuple[Burrow, httpx.AsyncClient],
) -> None:
    """Cancelling a task twice is 409 "cannot cancel task '<id>': it was cancelled"."""
    _, client = hostile
    r = await client.post("/api/v1/tasks/add", json={"payload": {"a": 1, "b": 2}})
    task_id = assert_envelope(r)["data"]["id"]
    assert (await client.post(f"/api/v1/tasks/{task_id}/cancel")).status_code == 200
    again = await client.post(f"/api/v1/tasks/{task_id}/cancel")
    assert again.status_code == 409
    assert assert_envelope(again)["message"] == f"cannot cancel task {task_id!r}: it was cancelled"


@pytest.mark.parametrize(
    ("path", "options"),
    [
        ("/api/v1/tasks/add", {}),
        ("/api/v1/tasks/add", {"delay": 30}),
        ("/api/v1/tasks/add", {"eta": "2000-01-01T00:00:00Z"}),
        ("/api/v1/tasks/late", {"delay": 5}),
    ],
)
async def test_the_202_answer_is_the_stored_record(
    hostile: tuple[Burrow, httpx.AsyncClient], path: str, options: dict[str, Any]
) -> None:
    """The record a submit answers with has exactly the fields and values stored: the
    timestamps are the ones the record was written with, not the API's clock."""
    _, client = hostile
    payload = {"a": 1, "b": 2} if path.endswith("add") else {"x": 1}
    r = await client.post(path, json={"payload": payload, **options})
    assert r.status_code == 202, r.text
    answered = assert_envelope(r)["data"]
    stored = assert_envelope(await client.get(r.headers["location"]))["data"]
    assert answered == stored


async def test_an_invalid_payload_is_answered_with_where_and_what(
    hostile: tuple[Burrow, httpx.AsyncClient],
) -> None:
    """A payload that does not validate gets a 422 whose message names each failing field
    and what is wrong with it, not only where."""
    _, client = hostile
    r = await client.post("/api/v1/tasks/add", json={"payload": {"a": "one"}})
    body = assert_envelope(r)
    assert r.status_code == 422
    assert body["error"]["type"] == "validation_error"
    message = body["message"]
    assert "body.payload.a: Input should be a valid integer" in message, message
    assert "body.payload.b: Field required" in message, message
