"""The AsyncAPI 3.0 document of an app's messaging side, built from its registrations.

``build_document(app)`` describes what a client in any language needs to talk to the app's
workers over RabbitMQ: every task queue (and its priority lanes), every event exchange the
subscribers use with the subscribers' queues and bindings, every RPC request queue with its
reply, and every dead-letter queue. Payload schemas come from the handlers' pydantic models,
as the typed submit operations of the OpenAPI schema take them; the AMQP properties and
headers are the wire format of ``burrow.tasks.envelope`` (docs/wire-format.md).

AsyncAPI 3.0.0 with the AMQP bindings 0.3.0: the official JSON Schema of that version
bundles the AMQP binding schemas, so the whole document, bindings included, can be checked
against it. Operations take the app's side (its workers ``receive`` tasks, events and RPC
requests and ``send`` replies, events and dead letters); a client does the opposite.

What the AMQP bindings cannot say is in ``x-burrow-*`` extensions: the properties of a
message (``x-burrow-properties``, a JSON Schema of ``type``, ``message_id``, ...), where to
publish (``x-burrow-publish``), a subscriber queue's bindings (``x-burrow-bindings``), the
record a run leaves (``x-burrow-record-id``). The broker's address is not published (the
document is served without a key, like ``/openapi.json``): the server's ``host`` is a
variable.

Pure: no I/O, nothing global; the document is a plain JSON-able ``dict``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, get_type_hints
from urllib.parse import unquote, urlsplit

from pydantic import TypeAdapter
from pydantic.errors import PydanticInvalidForJsonSchema, PydanticSchemaGenerationError

from burrow.api._asyncapi_schemas import (
    AMQP_BINDING_VERSION,
    ASYNCAPI_VERSION,
    BURROW_SCHEMAS,
    DEAD_LETTER_REASONS,
    DOCUMENT_VERSION,
    INFO_DESCRIPTION,
    KEY_CHARS,
    SCHEMA_REF,
    SERVER,
    amqp_binding,
    dead_letter_message,
    rpc_correlation,
    rpc_request_properties,
    schema_ref,
)
from burrow.broker.topology import NORMAL_LANE, broadcast_base, dead_letter_queue
from burrow.tasks.envelope import JSON, MAX_TASK_ID_BYTES
from burrow.tasks.handlers import Subscriber

if TYPE_CHECKING:
    from burrow.app import Burrow
    from burrow.tasks.definition import TaskDefinition


def _summary(fn: Any) -> str | None:
    doc = inspect.getdoc(fn)
    return doc.strip().splitlines()[0] if doc and doc.strip() else None


def _return_adapter(definition: TaskDefinition) -> TypeAdapter[Any]:
    """The adapter of an RPC handler's return annotation (``Any`` when it has none or
    pydantic cannot take it)."""
    try:
        annotation = get_type_hints(definition.fn).get("return", Any)
        return TypeAdapter(annotation)
    except (NameError, TypeError, PydanticSchemaGenerationError):
        return TypeAdapter(Any)


def _vhost(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def queue_binding(name: str, vhost: str, *, shared: bool = True) -> dict[str, Any]:
    """The AMQP channel binding of queue ``name`` (a shared durable queue, or an exclusive
    auto-delete one of a single worker)."""
    return amqp_binding(
        **{
            "is": "queue",
            "queue": {
                "name": name,
                "durable": shared,
                "exclusive": not shared,
                "autoDelete": not shared,
                "vhost": vhost,
            },
        }
    )


def exchange_binding(name: str, kind: str, vhost: str) -> dict[str, Any]:
    """The AMQP channel binding of publishing to exchange ``name`` of type ``kind``
    (``default`` for the default exchange ``""``)."""
    return amqp_binding(
        **{
            "is": "routingKey",
            "exchange": {
                "name": name,
                "type": kind,
                "durable": True,
                "autoDelete": False,
                "vhost": vhost,
            },
        }
    )


class _Keys:
    """Keys of one map of the document: names made safe for component keys and JSON
    pointers (``[A-Za-z0-9_.-]``), each unique."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def key(self, name: str) -> str:
        base = KEY_CHARS.sub("_", name)
        key, n = base, 1
        while key in self._taken:
            n += 1
            key = f"{base}_{n}"
        self._taken.add(key)
        return key


class _Schemas:
    """The JSON Schemas of the handlers' payloads and replies, hoisted into
    ``components.schemas`` in one pass (pydantic gives models of the same name from
    different modules different keys)."""

    def __init__(self, inputs: list[tuple[str, str, TypeAdapter[Any]]]) -> None:
        self.by_key: dict[str, dict[str, Any]] = {}
        self.components: dict[str, Any] = {}
        usable = [(key, mode, _renderable(adapter, mode)) for key, mode, adapter in inputs]
        if not usable:
            return
        schemas, top = TypeAdapter.json_schemas(
            [(key, mode, adapter) for key, mode, adapter in usable],  # type: ignore[misc]
            ref_template=SCHEMA_REF,
        )
        self.by_key = {key: schema for (key, _mode), schema in schemas.items()}
        self.components = dict(top.get("$defs", {}))

    def get(self, key: str) -> dict[str, Any]:
        return self.by_key.get(key, {})


def _renderable(adapter: TypeAdapter[Any], mode: Any) -> TypeAdapter[Any]:
    """``adapter``, or ``Any``'s when its type has no JSON Schema (a custom class)."""
    try:
        adapter.json_schema(mode=mode)
    except PydanticInvalidForJsonSchema:
        return TypeAdapter(Any)
    return adapter


class _Builder:
    """Builds one document; see the module docstring for the layout."""

    def __init__(self, app: Burrow) -> None:
        self.app = app
        self.names = app.names
        self.vhost = _vhost(app.settings.amqp_url)
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        self._channel_keys = _Keys()
        self._operation_keys = _Keys()
        self._message_keys = _Keys()
        self.tasks = sorted(app.registry, key=lambda d: d.name)
        self.subscribers = sorted(app.handlers.subscribers(), key=lambda s: s.name)
        self.rpcs = sorted(app.handlers.rpc_handlers(), key=lambda d: d.name)
        inputs: list[tuple[str, str, TypeAdapter[Any]]] = [
            *((f"task:{d.name}", "validation", d.adapter) for d in self.tasks),
            *((f"event:{s.name}", "validation", s.definition.adapter) for s in self.subscribers),
            *((f"rpc:{d.name}", "validation", d.adapter) for d in self.rpcs),
            *((f"reply:{d.name}", "serialization", _return_adapter(d)) for d in self.rpcs),
        ]
        self.schemas = _Schemas(inputs)

    # -- the pieces ---------------------------------------------------------------------

    def _channel(self, name: str, body: dict[str, Any]) -> str:
        key = self._channel_keys.key(name)
        self.channels[key] = body
        return key

    def _message(self, name: str, body: dict[str, Any]) -> str:
        key = self._message_keys.key(name)
        self.messages[key] = body
        return key

    def _operation(
        self, name: str, action: str, channel: str, messages: Iterable[str], **rest: Any
    ) -> None:
        self.operations[self._operation_keys.key(name)] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
            **rest,
        }

    @staticmethod
    def _refs(messages: Iterable[str]) -> dict[str, Any]:
        return {m: {"$ref": f"#/components/messages/{m}"} for m in messages}

    # -- tasks --------------------------------------------------------------------------

    def _task_message(self, d: TaskDefinition) -> str:
        properties: dict[str, Any] = {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"const": d.name, "description": "The task name (required)."},
                "message_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_TASK_ID_BYTES,
                    "description": "The task id (burrow uses UUID4 text): printable text of "
                    f"at most {MAX_TASK_ID_BYTES} bytes in UTF-8. Strongly "
                    "recommended: without it every delivery runs under a fresh id, so a "
                    "redelivery is not recognised and a failing task is retried forever.",
                },
                "content_type": {"enum": [JSON, "text/plain"], "default": JSON},
                "content_encoding": {"enum": ["utf-8", "identity"]},
                "delivery_mode": {"const": 2, "description": "Persistent."},
                "timestamp": {"type": "integer", "description": "Publish time, seconds."},
                "priority": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 9,
                    "description": "0-9, 9 highest; chooses the lane on a queue with "
                    "priority lanes (publish to the lane's queue).",
                },
            },
        }
        body: dict[str, Any] = {
            "name": d.name,
            "title": f"Task {d.name}",
            "contentType": JSON,
            "payload": self.schemas.get(f"task:{d.name}"),
            "headers": schema_ref("burrow.TaskHeaders"),
            "bindings": amqp_binding(messageType=d.name),
            "x-burrow-properties": properties,
        }
        summary = _summary(d.fn)
        if summary:
            body["summary"] = summary
        return self._message(f"task.{d.name}", body)

    def _task_queue(self, queue: str, messages: dict[str, TaskDefinition]) -> None:
        app, names = self.app, self.names
        for lane in app.lanes(queue):
            spec = app.work_queue_spec(queue, lane)
            suffix = "" if lane == NORMAL_LANE else f".{lane}"
            channel = self._channel(
                f"task.{queue}{suffix}",
                {
                    "address": spec.name,
                    "title": f"Work queue {queue}" + (f" ({lane} lane)" if suffix else ""),
                    "description": 'Publish tasks to the default exchange ("") with this '
                    "address as the routing key, mandatory, with publisher confirms. Do not "
                    "declare the queue unless with exactly x-burrow-queue-arguments "
                    "(a passive declare is safe).",
                    "messages": self._refs(messages),
                    "bindings": queue_binding(spec.name, self.vhost),
                    "x-burrow-publish": {
                        "exchange": "",
                        "routingKey": spec.name,
                        "mandatory": True,
                    },
                    "x-burrow-queue-arguments": dict(spec.arguments),
                    "x-burrow-dead-letter-queue": names.dlq(queue),
                },
            )
            for key, d in messages.items():
                self._operation(
                    f"run.{d.name}{suffix}",
                    "receive",
                    channel,
                    [key],
                    title=f"Run task {d.name}" + (f" ({lane} lane)" if suffix else ""),
                    summary=_summary(d.fn) or f"Run task {d.name} from queue {queue}.",
                    description=self._task_policy(d),
                    bindings=amqp_binding(deliveryMode=2, mandatory=True, timestamp=True, ack=True),
                    **{"x-burrow-record-id": "{message_id}"},
                )

    def _record_key(self, task_id: str) -> str:
        namespace = self.names.namespace
        return f"{namespace}:task:{task_id}" if namespace else f"task:{task_id}"

    def _task_policy(self, d: TaskDefinition) -> str:
        timeout = d.timeout or self.app.settings.task_timeout
        text = (
            f"At most {d.max_retries + 1} runs (max_retries={d.max_retries}) of at most "
            f"{timeout:g} s each; then the message goes to {self.names.dlq(d.queue)}. "
            f"The record is the Redis hash {self._record_key('{message_id}')}."
        )
        if d.rate_limit is not None:
            text += f" Rate limit: {d.rate_limit.text} starts across all workers."
        return text

    def add_tasks(self) -> None:
        by_queue: dict[str, dict[str, TaskDefinition]] = {}
        for d in self.tasks:
            key = self._task_message(d)
            by_queue.setdefault(d.queue, {})[key] = d
        for queue in sorted(by_queue):
            self._task_queue(queue, by_queue[queue])
            self._dead_letters(queue, f"work queue {queue}")

    # -- events -------------------------------------------------------------------------

    def _event_message(self, s: Subscriber) -> str:
        return self._message(
            f"event.{s.name}",
            {
                "name": s.name,
                "title": f"Event for subscriber {s.name}",
                "summary": _summary(s.definition.fn)
                or f"An event on {s.exchange.name} as subscriber {s.name} validates it.",
                "contentType": JSON,
                "payload": self.schemas.get(f"event:{s.name}"),
                "headers": schema_ref("burrow.EventHeaders"),
                "x-burrow-properties": {
                    "type": "object",
                    "properties": {
                        "message_id": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_TASK_ID_BYTES,
                            "description": "The event id, printable text of at most "
                            f"{MAX_TASK_ID_BYTES} bytes in UTF-8; subscribers dedupe by it "
                            "(without one a redelivery cannot be recognised).",
                        },
                        "type": {
                            "type": "string",
                            "description": "Informational (burrow sets the routing key).",
                        },
                        "content_type": {"enum": [JSON, "text/plain"], "default": JSON},
                        "delivery_mode": {"const": 2},
                        "timestamp": {"type": "integer"},
                    },
                },
            },
        )

    def _exchange_channel(self, subs: list[Subscriber], messages: list[str]) -> str:
        exchange = subs[0].exchange
        full = self.names.exchange(exchange.name)
        return self._channel(
            f"exchange.{exchange.name}",
            {
                "address": full,
                "title": f"Event exchange {exchange.name} ({exchange.type})",
                "description": "Publish events here (JSON body, a message_id, persistent). "
                "Not mandatory: an event no queue is bound for is dropped, which is not "
                "an error. Each subscriber validates the body against its own schema.",
                "messages": self._refs(messages),
                "bindings": exchange_binding(full, exchange.type, self.vhost),
            },
        )

    def _subscriber_channel(self, s: Subscriber, message: str) -> str:
        names = self.names
        exchange = names.exchange(s.exchange.name)
        bindings = [
            {"exchange": exchange, "routingKey": key, "arguments": dict(s.headers)}
            for key in s.routing_keys
        ]
        body: dict[str, Any] = {
            "messages": self._refs([message]),
            "x-burrow-bindings": bindings,
            "x-burrow-dead-letter-queue": names.dlq(s.queue),
        }
        if s.shared:
            address = names.queue(s.queue)
            body["title"] = f"Queue {s.queue} of subscriber {s.name} (shared)"
            body["description"] = (
                "One durable queue shared by every instance: they split the events."
            )
            body["x-burrow-queue-arguments"] = dict(self.app.work_queue_spec(s.queue).arguments)
        else:
            address = names.queue(f"{broadcast_base(s.name)}.{{workerId}}")
            body["title"] = f"Queues of subscriber {s.name} (broadcast)"
            body["description"] = (
                "One exclusive, auto-delete queue per worker process: each gets every event."
            )
            body["parameters"] = {"workerId": {"description": "The id of the worker process."}}
        body["address"] = address
        body["bindings"] = queue_binding(address, self.vhost, shared=s.shared)
        return self._channel(f"subscriber.{s.name}", body)

    def add_events(self) -> None:
        by_exchange: dict[str, list[Subscriber]] = {}
        for s in self.subscribers:
            by_exchange.setdefault(s.exchange.name, []).append(s)
        for name in sorted(by_exchange):
            subs = by_exchange[name]
            messages = [self._event_message(s) for s in subs]
            exchange_channel = self._exchange_channel(subs, messages)
            self._operation(
                f"publish.{name}",
                "send",
                exchange_channel,
                messages,
                title=f"Publish an event to {name}",
                summary="app.publish, POST /api/v1/events/{exchange} or any AMQP client.",
                bindings=amqp_binding(deliveryMode=2, mandatory=False, timestamp=True),
            )
            for s, message in zip(subs, messages, strict=True):
                self._subscribe(s, message)

    def _subscribe(self, s: Subscriber, message: str) -> None:
        channel = self._subscriber_channel(s, message)
        record = f"{{message_id}}:{s.name}" + ("" if s.shared else "@{workerId}")
        self._operation(
            f"subscribe.{s.name}",
            "receive",
            channel,
            [message],
            title=f"Subscriber {s.name}",
            summary=_summary(s.definition.fn)
            or f"Subscriber {s.name} of exchange {s.exchange.name}.",
            description=self._task_policy(s.definition).replace("{message_id}", record),
            bindings=amqp_binding(ack=True),
            **{"x-burrow-record-id": record},
        )
        self._dead_letters(s.queue, f"subscriber {s.name}")

    # -- rpc ----------------------------------------------------------------------------

    def add_rpc(self) -> None:
        error = self._message(
            "burrow.rpcError",
            {
                "name": "rpcError",
                "title": "RPC error reply",
                "summary": "The handler raised, ran past its timeout, or refused the payload.",
                "contentType": JSON,
                "payload": schema_ref("burrow.RpcError"),
                "headers": schema_ref("burrow.RpcErrorHeaders"),
                "correlationId": rpc_correlation(),
            },
        )
        for d in self.rpcs:
            self._rpc(d, error)

    def _rpc(self, d: TaskDefinition, error: str) -> None:
        address = self.names.rpc_queue(d.name)
        request = self._message(
            f"rpc.{d.name}.request",
            {
                "name": f"{d.name}.request",
                "title": f"RPC {d.name}: request",
                "contentType": JSON,
                "payload": self.schemas.get(f"rpc:{d.name}"),
                "headers": schema_ref("burrow.RpcRequestHeaders"),
                "correlationId": rpc_correlation(),
                "bindings": amqp_binding(messageType=d.name),
                "x-burrow-properties": rpc_request_properties(),
            },
        )
        reply = self._message(
            f"rpc.{d.name}.reply",
            {
                "name": f"{d.name}.reply",
                "title": f"RPC {d.name}: reply",
                "contentType": JSON,
                "payload": self.schemas.get(f"reply:{d.name}"),
                "headers": schema_ref("burrow.RpcReplyHeaders"),
                "correlationId": rpc_correlation(),
            },
        )
        channel = self._channel(
            f"rpc.{d.name}",
            {
                "address": address,
                "title": f"RPC {d.name}: requests",
                "description": 'Publish requests to the default exchange ("") with this '
                "address as the routing key. A request without a valid reply_to is dropped "
                "unrun.",
                "messages": self._refs([request]),
                "bindings": queue_binding(address, self.vhost),
                "x-burrow-publish": {"exchange": "", "routingKey": address, "mandatory": True},
            },
        )
        replies = self._channel(
            f"rpc.{d.name}.reply",
            {
                "address": None,
                "title": f"RPC {d.name}: replies",
                "description": "Published to the default exchange with the request's "
                "reply_to as the routing key, not mandatory: a reply nobody waits for is "
                "dropped.",
                "messages": self._refs([reply, error]),
                "bindings": exchange_binding("", "default", self.vhost),
            },
        )
        timeout = d.timeout or self.app.settings.task_timeout
        self._operation(
            f"rpc.{d.name}",
            "receive",
            channel,
            [request],
            title=f"RPC {d.name}",
            summary=_summary(d.fn) or f"Answer RPC {d.name}.",
            description=f"At most once: the request is acked when a server takes it, and "
            f"runs for at most {timeout:g} s. No Redis record is kept.",
            bindings=amqp_binding(ack=True),
            reply={
                "address": {
                    "location": "$message.header#/reply_to",
                    "description": "The request's AMQP reply_to property.",
                },
                "channel": {"$ref": f"#/channels/{replies}"},
                "messages": [
                    {"$ref": f"#/channels/{replies}/messages/{m}"} for m in (reply, error)
                ],
            },
        )

    # -- dead letters -------------------------------------------------------------------

    def _dead_letters(self, queue: str, source: str) -> None:
        kind = self.app.queue_type(queue)
        spec = dead_letter_queue(self.names, queue, queue_type=kind)
        if "burrow.deadLetter" not in self.messages:
            self._message("burrow.deadLetter", dead_letter_message())
        if self._channel_keys_has(f"dlq.{queue}"):
            return
        channel = self._channel(
            f"dlq.{queue}",
            {
                "address": spec.name,
                "title": f"Dead letters of {source}",
                "description": "Read with `burrow dlq APP list`, GET /api/v1/dead-letters, "
                "or any AMQP consumer; replay or purge with the CLI or the API.",
                "messages": self._refs(["burrow.deadLetter"]),
                "bindings": queue_binding(spec.name, self.vhost),
                "x-burrow-queue-arguments": dict(spec.arguments),
            },
        )
        self._operation(
            f"deadLetter.{queue}",
            "send",
            channel,
            ["burrow.deadLetter"],
            title=f"Dead-letter from {source}",
            summary="A message that can never run (again), with the reason in its headers.",
        )

    def _channel_keys_has(self, name: str) -> bool:
        return KEY_CHARS.sub("_", name) in self.channels

    # -- the whole ----------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        self.add_tasks()
        self.add_events()
        self.add_rpc()
        namespace = self.names.namespace
        return {
            "asyncapi": ASYNCAPI_VERSION,
            "info": {
                "title": f"burrow messaging ({namespace or 'no namespace'})",
                "version": DOCUMENT_VERSION,
                "description": INFO_DESCRIPTION,
            },
            "defaultContentType": JSON,
            "servers": {
                SERVER: {
                    "host": "{host}",
                    "protocol": "amqp",
                    "protocolVersion": "0.9.1",
                    "description": "The deployment's RabbitMQ (BURROW_AMQP_URL), vhost "
                    f"{self.vhost!r}.",
                    "variables": {
                        "host": {
                            "description": "host:port of the broker (not published here).",
                            "examples": ["rabbitmq:5672"],
                        }
                    },
                }
            },
            "channels": self.channels,
            "operations": self.operations,
            "components": {
                "schemas": {**self.schemas.components, **BURROW_SCHEMAS},
                "messages": self.messages,
            },
            "x-burrow-namespace": namespace,
        }


def build_document(app: Burrow) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``app``'s tasks, events, RPC and dead letters, from
    its registrations now (see the module docstring)."""
    return _Builder(app).document()


__all__ = [
    "AMQP_BINDING_VERSION",
    "ASYNCAPI_VERSION",
    "DEAD_LETTER_REASONS",
    "build_document",
    "exchange_binding",
    "queue_binding",
]
