"""``GET /asyncapi.json`` and ``GET /asyncapi``: the AsyncAPI document of the messaging side
is valid against the official AsyncAPI 3.0.0 JSON Schema and describes every registration
(task queues, event exchanges and subscriber queues, RPC, dead letters); the page shows it
without loading anything from elsewhere."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi import APIRouter
from pydantic import BaseModel

from burrow import Burrow, Exchange
from burrow.api import create_app
from burrow.api.asyncapi import DEAD_LETTER_REASONS, build_document
from burrow.errors import ConfigurationError
from burrow.tasks.callbacks import HDR_CALLBACK
from burrow.tasks.envelope import (
    HDR_ATTEMPT,
    HDR_DEAD_AT,
    HDR_ERROR,
    HDR_ETA,
    HDR_HISTORY,
    HDR_ORIGIN,
    HDR_REASON,
    HDR_RUNS,
    HDR_TRACEPARENT,
)
from burrow.tasks.handlers import HDR_DEADLINE, HDR_RPC_STATUS
from tests.api.conftest import asgi_client

pytestmark = pytest.mark.integration

SCHEMA_FILE = Path(__file__).parent / "asyncapi" / "asyncapi-3.0.0.schema.json"


@cache
def asyncapi_validator() -> jsonschema.Draft7Validator:
    """A validator of the vendored official AsyncAPI 3.0.0 JSON Schema."""
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def asyncapi_errors(document: dict[str, Any]) -> list[str]:
    """Every violation of the AsyncAPI schema in ``document``, with where it is."""
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in asyncapi_validator().iter_errors(document)
    ]


class Order(BaseModel):
    id: str
    qty: int


class Quote(BaseModel):
    item: str
    qty: int


class Price(BaseModel):
    item: str
    total: float


def register_messaging(app: Burrow) -> Burrow:
    """Subscribers of every kind (shared topic, broadcast fanout, headers), RPC handlers
    and a task queue with priority lanes, next to the standard API test tasks."""
    orders = Exchange("shop.events", "topic")

    @app.subscriber(orders, ["order.*", "#.audit"], queue="inventory")
    async def reserve(o: Order) -> None:
        """Reserve stock for an order."""

    @app.subscriber(Exchange("audit", "fanout"))
    async def audit(e: dict[str, Any]) -> None:
        """Keep every event."""

    @app.subscriber(Exchange("mail", "headers"), {"kind": "sms"}, headers_match="any")
    async def sms(o: Order) -> None: ...

    @app.rpc("quote")
    async def quote(q: Quote) -> Price:
        return Price(item=q.item, total=2.5 * q.qty)

    @app.rpc()
    def ping(p: Any) -> str:
        return "pong"

    @app.task(queue="urgent", priorities=True, name="ns:page")
    async def page(p: dict[str, str]) -> None:
        """Page someone <b>now</b> & then."""

    return app


@pytest.fixture
def messaging_app(api_app: Callable[..., Burrow]) -> Burrow:
    return register_messaging(api_app())


async def fetch_document(app: Burrow) -> dict[str, Any]:
    async with asgi_client(app) as client:
        response = await client.get("/asyncapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    return document


def resolve(document: dict[str, Any], value: Any) -> Any:
    """``value``, or what its local ``$ref`` points to."""
    while isinstance(value, dict) and "$ref" in value:
        target: Any = document
        for part in value["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        value = target
    return value


def without_title(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "title"}


def operation_messages(document: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [resolve(document, ref) for ref in document["operations"][key]["messages"]]


def channel_of(document: dict[str, Any], key: str) -> dict[str, Any]:
    channel: dict[str, Any] = resolve(document, document["operations"][key]["channel"])
    return channel


async def test_document_is_valid_against_the_asyncapi_schema(messaging_app: Burrow) -> None:
    """/asyncapi.json of an app with tasks, lanes, every kind of subscriber and RPC has no
    violation of the official AsyncAPI 3.0.0 JSON Schema (AMQP bindings included)."""
    document = await fetch_document(messaging_app)
    assert document["asyncapi"] == "3.0.0"
    assert asyncapi_errors(document) == []


def test_the_schema_check_catches_a_broken_document(messaging_app: Burrow) -> None:
    """The vendored schema really checks: an operation without an action, a binding with a
    text `durable` and a channel address that is a number are each reported."""
    document = build_document(messaging_app)
    assert asyncapi_errors(document) == []
    document["operations"]["run.add"].pop("action")
    document["channels"]["task.math"]["bindings"]["amqp"]["queue"]["durable"] = "yes"
    document["channels"]["rpc.quote"]["address"] = 5
    errors = asyncapi_errors(document)
    for where in ("operations/run.add", "channels/task.math", "channels/rpc.quote"):
        assert any(e.startswith(where) for e in errors), (where, errors)


async def test_every_task_queue_and_its_dead_letters_are_described(messaging_app: Burrow) -> None:
    """Each task has a receive operation on its work queue (each lane of a queue with
    priorities) with type = the task name, the payload schema of its model, the wire
    format's properties and headers, and a send operation on the queue's .dlq."""
    app = messaging_app
    document = await fetch_document(app)
    ns = app.names.namespace
    for definition in app.registry:
        key = re.sub(r"[^A-Za-z0-9_.-]", "_", definition.name)
        lanes = ("high", "normal", "low") if definition.queue == "urgent" else ("normal",)
        for lane in lanes:
            suffix = "" if lane == "normal" else f".{lane}"
            op = document["operations"][f"run.{key}{suffix}"]
            assert op["action"] == "receive"
            channel = channel_of(document, f"run.{key}{suffix}")
            address = f"{ns}.{definition.queue}{suffix}"
            assert channel["address"] == address
            assert channel["bindings"]["amqp"]["queue"]["name"] == address
            assert channel["x-burrow-publish"] == {
                "exchange": "",
                "routingKey": address,
                "mandatory": True,
            }
            assert (
                channel["x-burrow-queue-arguments"]
                == app.work_queue_spec(definition.queue, lane).arguments
            )
            (message,) = operation_messages(document, f"run.{key}{suffix}")
            assert message["bindings"]["amqp"]["messageType"] == definition.name
            assert message["x-burrow-properties"]["properties"]["type"]["const"] == definition.name
            assert message["contentType"] == "application/json"
            headers = resolve(document, message["headers"])["properties"]
            assert set(headers) == {HDR_ATTEMPT, HDR_ETA, HDR_TRACEPARENT, HDR_CALLBACK}
        dlq = document["operations"][f"deadLetter.{definition.queue}"]
        assert dlq["action"] == "send"
        assert channel_of(document, f"deadLetter.{definition.queue}")["address"] == (
            f"{ns}.{definition.queue}.dlq"
        )
    (letter,) = operation_messages(document, "deadLetter.math")
    dead_headers = resolve(document, letter["headers"])["properties"]
    assert {HDR_REASON, HDR_ERROR, HDR_RUNS, HDR_HISTORY, HDR_ORIGIN, HDR_DEAD_AT} <= set(
        dead_headers
    )
    assert dead_headers[HDR_REASON]["enum"] == list(DEAD_LETTER_REASONS)


async def test_payload_schemas_are_the_ones_of_the_openapi_submit_routes(
    messaging_app: Burrow,
) -> None:
    """A task's payload schema in /asyncapi.json is the payload schema of its typed submit
    operation in /openapi.json (both from the handler's model)."""
    document = await fetch_document(messaging_app)
    async with asgi_client(messaging_app) as client:
        openapi = (await client.get("/openapi.json")).json()
    for name in ("add", "nap", "boom"):
        (message,) = operation_messages(document, f"run.{name}")
        body_ref = openapi["paths"][f"/api/v1/tasks/{name}"]["post"]["requestBody"]["content"][
            "application/json"
        ]["schema"]
        submit = resolve(openapi, body_ref)
        expected = resolve(openapi, submit["properties"]["payload"])
        # An inline schema gets the field's title ("Payload") in OpenAPI only.
        assert without_title(resolve(document, message["payload"])) == without_title(expected), name


async def test_events_name_the_exchange_bindings_queue_and_payload(messaging_app: Burrow) -> None:
    """Each exchange a subscriber uses has a channel with its type, and each subscriber a
    receive operation on its queue (shared or per worker) naming its bindings, dead-letter
    queue, record id and its model's payload schema."""
    document = await fetch_document(messaging_app)
    ns = messaging_app.names.namespace
    expected = {
        "shop.events": "topic",
        "audit": "fanout",
        "mail": "headers",
    }
    for name, kind in expected.items():
        channel = channel_of(document, f"publish.{name}")
        assert channel["address"] == f"{ns}.{name}"
        assert channel["bindings"]["amqp"]["exchange"]["type"] == kind
    reserve = channel_of(document, "subscribe.reserve")
    assert reserve["address"] == f"{ns}.inventory"
    assert reserve["bindings"]["amqp"]["queue"]["durable"] is True
    assert [(b["exchange"], b["routingKey"]) for b in reserve["x-burrow-bindings"]] == [
        (f"{ns}.shop.events", "order.*"),
        (f"{ns}.shop.events", "#.audit"),
    ]
    assert reserve["x-burrow-dead-letter-queue"] == f"{ns}.inventory.dlq"
    assert document["operations"]["subscribe.reserve"]["x-burrow-record-id"] == (
        "{message_id}:reserve"
    )
    (event,) = operation_messages(document, "subscribe.reserve")
    assert resolve(document, event["payload"]) == document["components"]["schemas"]["Order"]
    assert resolve(document, event["headers"])["properties"][HDR_TRACEPARENT]
    audit = channel_of(document, "subscribe.audit")
    assert audit["address"] == f"{ns}.sub.audit.{{workerId}}"
    assert audit["bindings"]["amqp"]["queue"]["exclusive"] is True
    assert audit["x-burrow-dead-letter-queue"] == f"{ns}.sub.audit.dlq"
    assert document["operations"]["subscribe.audit"]["x-burrow-record-id"] == (
        "{message_id}:audit@{workerId}"
    )
    (sms_binding,) = channel_of(document, "subscribe.sms")["x-burrow-bindings"]
    assert sms_binding["arguments"] == {"kind": "sms", "x-match": "any"}


async def test_rpc_names_the_request_queue_reply_and_error_forms(messaging_app: Burrow) -> None:
    """Each RPC handler has a receive operation on {ns}.rpc.{name} whose request requires
    an allowed reply_to, and whose reply (to reply_to, with the correlation id) is either
    the handler's return schema with status ok or the {type, message} error form."""
    document = await fetch_document(messaging_app)
    ns = messaging_app.names.namespace
    op = document["operations"]["rpc.quote"]
    assert channel_of(document, "rpc.quote")["address"] == f"{ns}.rpc.quote"
    (request,) = operation_messages(document, "rpc.quote")
    assert resolve(document, request["payload"]) == document["components"]["schemas"]["Quote"]
    properties = request["x-burrow-properties"]
    assert properties["required"] == ["reply_to"]
    pattern = properties["properties"]["reply_to"]["pattern"]
    assert re.match(pattern, "amq.rabbitmq.reply-to")
    assert re.match(pattern, "amq.gen-abc")
    assert not re.match(pattern, f"{ns}.math")
    assert request["correlationId"]["location"] == "$message.header#/correlation_id"
    assert HDR_DEADLINE in resolve(document, request["headers"])["properties"]
    assert op["reply"]["address"]["location"] == "$message.header#/reply_to"
    reply, error = (resolve(document, ref) for ref in op["reply"]["messages"])
    assert resolve(document, reply["payload"]) == document["components"]["schemas"]["Price"]
    reply_status = resolve(document, reply["headers"])["properties"][HDR_RPC_STATUS]
    error_status = resolve(document, error["headers"])["properties"][HDR_RPC_STATUS]
    assert (reply_status, error_status) == ({"const": "ok"}, {"const": "error"})
    assert resolve(document, error["payload"])["required"] == ["type", "message"]
    (ping,) = (
        resolve(document, r) for r in document["operations"]["rpc.ping"]["reply"]["messages"][:1]
    )
    assert ping["payload"] == {"type": "string"}


def test_an_empty_namespace_has_no_leading_dot() -> None:
    """With an empty namespace every address is the bare name, and the document is still
    valid."""
    app = Burrow(namespace="")

    @app.task(queue="math")
    def add(p: dict[str, int]) -> int:
        return sum(p.values())

    @app.subscriber(Exchange("events", "fanout"), queue="log")
    def log(e: Any) -> None: ...

    document = build_document(app)
    assert asyncapi_errors(document) == []
    assert channel_of(document, "run.add")["address"] == "math"
    assert channel_of(document, "deadLetter.math")["address"] == "math.dlq"
    assert channel_of(document, "publish.events")["address"] == "events"
    assert channel_of(document, "subscribe.log")["address"] == "log"
    assert "task:{message_id}" in document["operations"]["run.add"]["description"]


async def test_the_page_shows_every_channel_offline_and_escaped(messaging_app: Burrow) -> None:
    """/asyncapi is one HTML page with every queue and exchange address, its text escaped,
    nothing loaded from elsewhere (no script, no external link) and a CSP allowing only its
    own style."""
    app = messaging_app
    async with asgi_client(app) as client:
        response = await client.get("/asyncapi")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "style-src 'sha256-" in csp
    html = response.text
    document = build_document(app)
    for channel in document["channels"].values():
        if channel["address"]:
            assert channel["address"] in html, channel["address"]
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "Page someone &lt;b&gt;now&lt;/b&gt; &amp; then." in html
    assert "<b>now</b>" not in html
    assert 'href="#schema-Order"' in html


async def test_docs_and_dashboard_link_to_the_document(messaging_app: Burrow) -> None:
    """The OpenAPI description (shown at /docs) and the dashboard link to /asyncapi."""
    async with asgi_client(messaging_app) as client:
        openapi = (await client.get("/openapi.json")).json()
        dashboard = await client.get("/ui/")
    assert "/asyncapi.json" in openapi["info"]["description"]
    assert "(/asyncapi)" in openapi["info"]["description"]
    assert 'href="/asyncapi"' in dashboard.text
    assert not any(p.startswith("/asyncapi") for p in openapi["paths"])


async def test_the_document_needs_no_key(api_app: Callable[..., Burrow]) -> None:
    """With API keys set, /asyncapi.json and /asyncapi answer without one, like
    /openapi.json (names and schemas only; no broker address, no credentials)."""
    app = api_app(api_keys="k1")
    async with asgi_client(app) as client:
        document = await client.get("/asyncapi.json")
        page = await client.get("/asyncapi")
        tasks = await client.get("/api/v1/tasks")
    assert (document.status_code, page.status_code, tasks.status_code) == (200, 200, 401)
    text = document.text
    assert "guest" not in text
    assert "127.0.0.1" not in text
    assert document.json()["servers"]["rabbitmq"]["host"] == "{host}"


def test_application_routes_cannot_take_the_asyncapi_paths(messaging_app: Burrow) -> None:
    """An application router with /asyncapi or /asyncapi.json is refused at create_app."""
    for path in ("/asyncapi", "/asyncapi.json"):
        app = Burrow(settings=messaging_app.settings)
        router = APIRouter()
        router.add_api_route(path, lambda: None)
        app.include_router(router)
        with pytest.raises(ConfigurationError, match="burrow serves itself"):
            create_app(app)
