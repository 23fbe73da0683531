"""A foreign client built from /asyncapi.json alone (plain pika, no burrow code on its side):
it takes the queue and exchange names, the AMQP properties and headers, and a payload made
from the payload schema out of the document, and a burrow worker runs the task, the
subscriber gets the event and the RPC server answers."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema
import pika
import pytest
from pydantic import BaseModel, Field

from burrow import Burrow, Exchange, TaskStatus
from tests._pika import AMQP_PARAMS
from tests.api.conftest import serve
from tests.conftest import running_worker

pytestmark = pytest.mark.integration

#: Generous: a busy 2-core machine runs the worker, the API and this client at once.
WAIT = 60.0


class Line(BaseModel):
    sku: str = Field(min_length=3)
    qty: int = Field(ge=2, le=10)


class Invoice(BaseModel):
    customer: str
    lines: list[Line] = Field(min_length=1)
    rush: bool = False


class Shipped(BaseModel):
    order: str
    parcels: int = Field(ge=1)


class Quote(BaseModel):
    item: str
    qty: int


class Price(BaseModel):
    item: str
    total: float


# -- the client: only the document and pika ------------------------------------------------


def resolve(document: dict[str, Any], value: Any) -> Any:
    """``value``, or what its local ``$ref`` points to."""
    while isinstance(value, dict) and "$ref" in value:
        target: Any = document
        for part in value["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        value = target
    return value


def sample(document: dict[str, Any], schema: Any) -> Any:
    """A value that satisfies ``schema`` (the subset of JSON Schema pydantic writes)."""
    schema = resolve(document, schema)
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return sample(document, schema[key][0])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: sample(document, props.get(name, {})) for name in schema.get("required", [])}
    if kind == "array":
        return [sample(document, schema.get("items", {}))] * max(schema.get("minItems", 0), 1)
    return scalar(schema)


def scalar(schema: dict[str, Any]) -> Any:
    """A string, number or boolean that satisfies ``schema`` (``{}`` for no type)."""
    kind = schema.get("type")
    if kind == "string":
        return "x" * max(schema.get("minLength", 0), 1)
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    return True if kind == "boolean" else {}


def payload_for(document: dict[str, Any], message: dict[str, Any]) -> Any:
    """A payload made from ``message``'s schema, checked against it (refs resolved within
    the document)."""
    schema = message["payload"]
    value = sample(document, schema)
    jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(
        value
    )
    return value


def operation(document: dict[str, Any], key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operation ``key``'s channel and its (single) message."""
    op = document["operations"][key]
    (ref,) = op["messages"]
    return resolve(document, op["channel"]), resolve(document, ref)


def properties_for(document: dict[str, Any], message: dict[str, Any], **values: Any) -> Any:
    """pika properties from the message's ``x-burrow-properties`` (constants and defaults)
    and contentType, plus ``values``; headers with a fresh valid traceparent."""
    props: dict[str, Any] = {}
    for name, schema in message.get("x-burrow-properties", {}).get("properties", {}).items():
        if "const" in schema:
            props[name] = schema["const"]
        elif "default" in schema:
            props[name] = schema["default"]
    props["content_type"] = message.get("contentType", document["defaultContentType"])
    headers_schema = resolve(document, message["headers"])
    headers: dict[str, Any] = {}
    if "traceparent" in headers_schema.get("properties", {}):
        headers["traceparent"] = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
        jsonschema.validate(headers, headers_schema)
    props.update(values)
    return pika.BasicProperties(
        message_id=props.get("message_id"),
        type=props.get("type"),
        content_type=props.get("content_type"),
        delivery_mode=props.get("delivery_mode"),
        timestamp=int(time.time()),
        reply_to=props.get("reply_to"),
        correlation_id=props.get("correlation_id"),
        headers=headers,
    )


def concrete_key(binding_key: str) -> str:
    """A routing key that the topic binding ``binding_key`` matches."""
    return ".".join("word" if w in ("*", "#") else w for w in binding_key.split("."))


def pika_publish(exchange: str, routing_key: str, body: bytes, props: Any, mandatory: bool) -> None:
    """Publish one message with publisher confirms (raises when returned or nacked)."""
    connection = pika.BlockingConnection(AMQP_PARAMS)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange, routing_key, body, props, mandatory=mandatory)
        channel.close()
    finally:
        connection.close()


def pika_call(routing_key: str, body: bytes, props: Any, timeout: float) -> tuple[Any, Any]:
    """One RPC over Direct Reply-To: the reply's properties and body."""
    connection = pika.BlockingConnection(AMQP_PARAMS)
    replies: list[tuple[Any, bytes]] = []
    try:
        channel = connection.channel()
        channel.basic_consume(
            props.reply_to,
            lambda _c, _m, p, b: replies.append((p, b)),
            auto_ack=True,
        )
        channel.basic_publish("", routing_key, body, props, mandatory=True)
        deadline = time.monotonic() + timeout
        while not replies and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
    finally:
        connection.close()
    assert replies, f"no reply within {timeout} s"
    reply_props, reply_body = replies[0]
    return reply_props, json.loads(reply_body)


# -- the test ----------------------------------------------------------------------------


def register(app: Burrow, seen: list[Any]) -> None:
    @app.task(queue="billing")
    async def invoice(p: Invoice) -> int:
        """Bill a customer."""
        seen.append(p)
        return sum(line.qty for line in p.lines)

    @app.subscriber(Exchange("shipping", "topic"), "order.*", queue="notify")
    async def on_shipped(e: Shipped) -> None:
        seen.append(e)

    @app.rpc("quote")
    async def quote(q: Quote) -> Price:
        return Price(item=q.item, total=1.5 * q.qty)


async def test_a_pika_client_built_from_the_document_runs_a_task_an_event_and_a_call(
    make_app: Callable[..., Burrow],
) -> None:
    """With nothing but /asyncapi.json, a pika client publishes a task (default exchange,
    routing key, type and properties from the document) that a worker runs to succeeded,
    an event (exchange and routing key from the subscriber's binding) whose subscriber
    record ends succeeded, and an RPC request answered with a reply that fits the
    document's reply schema."""
    app = make_app()
    seen: list[Any] = []
    register(app, seen)

    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    document = response.json()

    async with running_worker(app):
        # A task: its receive operation names the queue, publish target and message.
        channel, message = operation(document, "run.invoice")
        task_id = str(uuid.uuid4())
        payload = payload_for(document, message)
        target = channel["x-burrow-publish"]
        await asyncio.to_thread(
            pika_publish,
            target["exchange"],
            target["routingKey"],
            json.dumps(payload).encode(),
            properties_for(document, message, message_id=task_id),
            target["mandatory"],
        )
        record_id = document["operations"]["run.invoice"]["x-burrow-record-id"]
        # A foreign producer's task has no record until a worker starts it.
        record = await app.wait(record_id.format(message_id=task_id), timeout=WAIT, missing_ok=True)
        assert record.status is TaskStatus.SUCCEEDED, record
        assert Invoice.model_validate(payload) in seen

        # An event: the subscriber's queue channel names the exchange and binding key.
        sub_op = document["operations"]["subscribe.on_shipped"]
        channel, message = operation(document, "subscribe.on_shipped")
        (binding,) = channel["x-burrow-bindings"]
        exchange = next(
            c for c in document["channels"].values() if c["address"] == binding["exchange"]
        )
        assert exchange["bindings"]["amqp"]["exchange"]["type"] == "topic"
        event_id = str(uuid.uuid4())
        event = payload_for(document, message)
        await asyncio.to_thread(
            pika_publish,
            binding["exchange"],
            concrete_key(binding["routingKey"]),
            json.dumps(event).encode(),
            properties_for(document, message, message_id=event_id),
            False,
        )
        record = await app.wait(
            sub_op["x-burrow-record-id"].format(message_id=event_id), timeout=WAIT, missing_ok=True
        )
        assert record.status is TaskStatus.SUCCEEDED, record
        assert Shipped.model_validate(event) in seen

        # An RPC call: request queue, reply_to and correlation id from the document.
        rpc_op = document["operations"]["rpc.quote"]
        channel, message = operation(document, "rpc.quote")
        reply_to = "amq.rabbitmq.reply-to"
        jsonschema.validate(reply_to, message["x-burrow-properties"]["properties"]["reply_to"])
        correlation = str(uuid.uuid4())
        request = payload_for(document, message)
        reply_props, reply = await asyncio.to_thread(
            pika_call,
            channel["x-burrow-publish"]["routingKey"],
            json.dumps(request).encode(),
            properties_for(document, message, reply_to=reply_to, correlation_id=correlation),
            WAIT,
        )
        ok_reply = resolve(document, rpc_op["reply"]["messages"][0])
        assert reply_props.correlation_id == correlation
        jsonschema.validate(reply_props.headers, resolve(document, ok_reply["headers"]))
        jsonschema.Draft202012Validator(
            {**ok_reply["payload"], "components": document["components"]}
        ).validate(reply)
        assert reply == {"item": request["item"], "total": 1.5 * request["qty"]}
