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
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, get_type_hints
from urllib.parse import unquote, urlsplit

from pydantic import TypeAdapter
from pydantic.errors import PydanticInvalidForJsonSchema, PydanticSchemaGenerationError

from burrow.broker.topology import NORMAL_LANE, broadcast_base, dead_letter_queue
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
    JSON,
    MAX_ATTEMPT,
    MAX_TASK_ID_BYTES,
)
from burrow.tasks.handlers import (
    HDR_DEADLINE,
    HDR_RPC_STATUS,
    REPLY_TO_PREFIXES,
    RPC_ERROR,
    RPC_OK,
    Subscriber,
)
from burrow.tasks.headers import MAX_CLIENT_HEADERS, MAX_CLIENT_VALUE_BYTES

if TYPE_CHECKING:
    from burrow.app import Burrow
    from burrow.tasks.definition import TaskDefinition

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
#: The document's own version: the contract's shape, not the app's.
DOCUMENT_VERSION = "1"
SERVER = "rabbitmq"
#: Where component schemas live; pydantic's ``$defs`` are hoisted here.
SCHEMA_REF = "#/components/schemas/{model}"

#: Why a dead letter died (its ``x-burrow-reason`` header), as the worker writes it.
DEAD_LETTER_REASONS: dict[str, str] = {
    "too_large": "the body exceeds BURROW_MAX_MESSAGE_BYTES",
    "bad_properties": "an AMQP property (e.g. message_id) is not valid UTF-8",
    "bad_message_id": "message_id has control or other non-printable characters, or is "
    f"over {MAX_TASK_ID_BYTES} bytes in UTF-8",
    "bad_content_type": "content_type is not JSON or text/plain, or content_encoding is "
    "not UTF-8 or identity",
    "missing_type": "no AMQP type property",
    "schema_error": f"a malformed {HDR_ATTEMPT} or {HDR_ETA} header",
    "unknown_task": "type names no task of the worker's app",
    "validation_error": "the body is not JSON or does not match the payload schema (never retried)",
    "rejected": "the handler raised Reject",
    "result_not_serializable": "the handler's return value cannot be encoded as JSON",
    "max_retries": "the last allowed run failed (raised, timed out or asked for Retry)",
    "delivery_limit": "all allowed runs started and none finished (lost to crashes), or "
    "RabbitMQ's x-delivery-limit fired",
}

INFO_DESCRIPTION = """\
The messaging side of this burrow app, from its own registrations: the RabbitMQ queues and
exchanges its workers consume, what to publish there, and what comes back.

* **Tasks**: publish to the default exchange (`""`) with routing key = the work queue's name
  (the channel address), AMQP `type` = the task name, `message_id` = the task id, the JSON
  payload as the body; `mandatory` and publisher confirms are recommended. The run's record
  is the Redis hash `{ns}:task:{message_id}` (or `GET /api/v1/tasks/{id}` over HTTP).
* **Events**: publish to the exchange `{ns}.{name}` with a routing key (or headers) that a
  subscriber binds; each subscriber validates the body against its own schema and runs it
  under the record id `{message_id}:{subscriber}`.
* **RPC**: publish the request to the default exchange with routing key `{ns}.rpc.{name}`,
  `reply_to` = `amq.rabbitmq.reply-to` (Direct Reply-To) or a server-named `amq.gen-...`
  queue, and a `correlation_id`; the reply carries `x-burrow-rpc-status` `ok` or `error`.
* **Dead letters**: what can never run lands in `{queue}.dlq` with `x-burrow-*` headers
  saying why.

Operations take the app's side (its workers receive tasks, events and requests; they send
replies and dead letters). AMQP properties that the bindings cannot express are in
`x-burrow-properties` (a JSON Schema of the properties by their AMQP names). The broker's
address is not published here: ask the operators of this deployment. The HTTP API is
described at `/docs` (`/openapi.json`); this document is `/asyncapi.json`, readable at
`/asyncapi`."""

_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_TRACEPARENT_PATTERN = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
_REPLY_TO_PATTERN = "^(" + "|".join(re.escape(p) for p in REPLY_TO_PREFIXES) + ")"

_TASK_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "The AMQP headers table of a task message. Other headers are kept on "
    "retry, delay and dead-letter copies and otherwise ignored; burrow-delay-tier and "
    "x-burrow-rate-slot are internal (producers leave them out).",
    "properties": {
        HDR_ATTEMPT: {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_ATTEMPT,
            "default": 1,
            "description": "The attempt this message carries (absent: 1). Anything but an "
            "integer in range is dead-lettered (schema_error).",
        },
        HDR_ETA: {
            "type": "integer",
            "minimum": 0,
            "description": "Unix milliseconds before which the task must not start (an "
            "integer: a float is dead-lettered with schema_error). Past or under 100 ms "
            "ahead: runs at once.",
        },
        HDR_TRACEPARENT: {
            "type": "string",
            "pattern": _TRACEPARENT_PATTERN,
            "description": "W3C trace context; absent or malformed: the worker starts a new trace.",
        },
        HDR_CALLBACK: {
            "type": "string",
            "format": "uri",
            "maxLength": 2048,
            "description": "http(s) URL called when the task finishes (checked again at "
            "every delivery).",
        },
    },
    "additionalProperties": True,
}

_EVENT_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "The publisher's headers (what a headers exchange matches on) plus an "
    f"optional traceparent: at most {MAX_CLIENT_HEADERS}, each a string of at most "
    f"{MAX_CLIENT_VALUE_BYTES} bytes, a number or a boolean. burrow's own x-burrow-* "
    "headers and the ones the broker acts on (CC, BCC, x-match, x-death, x-delay, "
    "x-dead-letter-*, ...) are refused over HTTP and dropped from every copy burrow makes.",
    "maxProperties": MAX_CLIENT_HEADERS,
    "properties": {
        HDR_TRACEPARENT: {"type": "string", "pattern": _TRACEPARENT_PATTERN},
    },
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}

_RPC_REQUEST_HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        HDR_DEADLINE: {
            "type": "integer",
            "minimum": 0,
            "description": "Unix milliseconds after which the caller no longer waits: a "
            "server that takes the request later drops it unrun.",
        },
        HDR_TRACEPARENT: {"type": "string", "pattern": _TRACEPARENT_PATTERN},
    },
    "additionalProperties": True,
}


def _reply_headers(status: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [HDR_RPC_STATUS],
        "properties": {HDR_RPC_STATUS: {"const": status}},
    }


_RPC_ERROR_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["type", "message"],
    "properties": {
        "type": {
            "type": "string",
            "description": "The exception's class name; PayloadInvalid when the request does "
            "not validate, PayloadTooLarge when it is over the size limit, HandlerTimeout "
            "when the handler ran past its timeout.",
            "examples": ["PayloadInvalid", "HandlerTimeout", "ValueError"],
        },
        "message": {"type": "string", "maxLength": 4000},
    },
}

_DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "The original message's headers (minus x-burrow-eta) plus these. A "
    "message RabbitMQ dead-lettered itself (quorum x-delivery-limit) has only the broker's "
    "x-death instead.",
    "properties": {
        HDR_REASON: {
            "type": "string",
            "enum": list(DEAD_LETTER_REASONS),
            "description": "; ".join(f"{k}: {v}" for k, v in DEAD_LETTER_REASONS.items()),
        },
        HDR_ERROR: {
            "type": "string",
            "contentMediaType": JSON,
            "description": 'JSON {"type", "message", "reason"} of the last error.',
        },
        HDR_RUNS: {
            "type": "integer",
            "minimum": 0,
            "description": "Runs started when it died (0: refused before it ran).",
        },
        HDR_HISTORY: {
            "type": "string",
            "contentMediaType": JSON,
            "description": 'JSON list of {"attempt", "at", "type", "message", "reason"}: the '
            "failed runs, oldest first (only for tasks that ran).",
        },
        HDR_ORIGIN: {"type": "string", "description": "The queue, without the namespace."},
        HDR_DEAD_AT: {"type": "integer", "description": "Unix milliseconds."},
        "x-death": {"type": "array", "description": "Set by RabbitMQ when it dead-letters."},
    },
    "additionalProperties": True,
}

_DEAD_LETTER_PROPERTIES: dict[str, Any] = {
    "type": "object",
    "description": "The original message's properties, kept.",
    "properties": {
        "message_id": {"type": "string"},
        "type": {"type": "string"},
        "content_type": {"type": "string"},
        "timestamp": {"type": "integer"},
    },
}

#: Schemas of burrow's own, next to the handlers' models in ``components.schemas``.
BURROW_SCHEMAS: dict[str, dict[str, Any]] = {
    "burrow.TaskHeaders": _TASK_HEADERS,
    "burrow.EventHeaders": _EVENT_HEADERS,
    "burrow.RpcRequestHeaders": _RPC_REQUEST_HEADERS,
    "burrow.RpcReplyHeaders": _reply_headers(RPC_OK),
    "burrow.RpcErrorHeaders": _reply_headers(RPC_ERROR),
    "burrow.RpcError": _RPC_ERROR_BODY,
    "burrow.DeadLetterHeaders": _DEAD_LETTER_HEADERS,
}


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMA_REF.format(model=name)}


def _amqp(**fields: Any) -> dict[str, Any]:
    return {"amqp": {**fields, "bindingVersion": AMQP_BINDING_VERSION}}


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
    return _amqp(
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
    return _amqp(
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
        base = _KEY_CHARS.sub("_", name)
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
            "headers": _schema_ref("burrow.TaskHeaders"),
            "bindings": _amqp(messageType=d.name),
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
                    bindings=_amqp(deliveryMode=2, mandatory=True, timestamp=True, ack=True),
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
                "headers": _schema_ref("burrow.EventHeaders"),
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
                bindings=_amqp(deliveryMode=2, mandatory=False, timestamp=True),
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
            bindings=_amqp(ack=True),
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
                "payload": _schema_ref("burrow.RpcError"),
                "headers": _schema_ref("burrow.RpcErrorHeaders"),
                "correlationId": _correlation(),
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
                "headers": _schema_ref("burrow.RpcRequestHeaders"),
                "correlationId": _correlation(),
                "bindings": _amqp(messageType=d.name),
                "x-burrow-properties": _rpc_request_properties(),
            },
        )
        reply = self._message(
            f"rpc.{d.name}.reply",
            {
                "name": f"{d.name}.reply",
                "title": f"RPC {d.name}: reply",
                "contentType": JSON,
                "payload": self.schemas.get(f"reply:{d.name}"),
                "headers": _schema_ref("burrow.RpcReplyHeaders"),
                "correlationId": _correlation(),
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
            bindings=_amqp(ack=True),
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
            self._message("burrow.deadLetter", _dead_letter_message())
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
        return _KEY_CHARS.sub("_", name) in self.channels

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


def _correlation() -> dict[str, str]:
    return {
        "location": "$message.header#/correlation_id",
        "description": "The AMQP correlation_id property: any string, copied onto the reply.",
    }


def _rpc_request_properties() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["reply_to"],
        "properties": {
            "reply_to": {
                "type": "string",
                "pattern": _REPLY_TO_PATTERN,
                "description": "amq.rabbitmq.reply-to (Direct Reply-To: consume it on the "
                "same channel before publishing) or a server-named amq.gen-... queue; "
                "anything else is dropped unrun.",
            },
            "correlation_id": {"type": "string", "description": "Copied onto the reply."},
            "expiration": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "Milliseconds: a request nobody waits for expires in the queue.",
            },
            "content_type": {"enum": [JSON, "text/plain"], "default": JSON},
            "type": {"type": "string", "description": "Informational: the RPC name."},
        },
    }


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": "deadLetter",
        "title": "Dead letter",
        "summary": "The original message, kept byte for byte, with why it died.",
        "payload": {
            "description": "The original body, unchanged: not necessarily valid JSON, nor "
            "valid against the payload schema (that may be why it died)."
        },
        "headers": _schema_ref("burrow.DeadLetterHeaders"),
        "x-burrow-properties": _DEAD_LETTER_PROPERTIES,
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
