"""The fixed parts of burrow's AsyncAPI document (``burrow.api.asyncapi``): versions, the
dead-letter reasons, and the JSON Schemas of the headers and properties of burrow's wire
format that every task queue, exchange and RPC queue shares. Pure data."""

from __future__ import annotations

import re
from typing import Any

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
)
from burrow.tasks.headers import MAX_CLIENT_HEADERS, MAX_CLIENT_VALUE_BYTES

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

KEY_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
TRACEPARENT_PATTERN = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
REPLY_TO_PATTERN = "^(" + "|".join(re.escape(p) for p in REPLY_TO_PREFIXES) + ")"

TASK_HEADERS: dict[str, Any] = {
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
            "pattern": TRACEPARENT_PATTERN,
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

EVENT_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "The publisher's headers (what a headers exchange matches on) plus an "
    f"optional traceparent: at most {MAX_CLIENT_HEADERS}, each a string of at most "
    f"{MAX_CLIENT_VALUE_BYTES} bytes, a number or a boolean. burrow's own x-burrow-* "
    "headers and the ones the broker acts on (CC, BCC, x-match, x-death, x-delay, "
    "x-dead-letter-*, ...) are refused over HTTP and dropped from every copy burrow makes.",
    "maxProperties": MAX_CLIENT_HEADERS,
    "properties": {
        HDR_TRACEPARENT: {"type": "string", "pattern": TRACEPARENT_PATTERN},
    },
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}

RPC_REQUEST_HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        HDR_DEADLINE: {
            "type": "integer",
            "minimum": 0,
            "description": "Unix milliseconds after which the caller no longer waits: a "
            "server that takes the request later drops it unrun.",
        },
        HDR_TRACEPARENT: {"type": "string", "pattern": TRACEPARENT_PATTERN},
    },
    "additionalProperties": True,
}


def reply_headers(status: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [HDR_RPC_STATUS],
        "properties": {HDR_RPC_STATUS: {"const": status}},
    }


RPC_ERROR_BODY: dict[str, Any] = {
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

DEAD_LETTER_HEADERS: dict[str, Any] = {
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

DEAD_LETTER_PROPERTIES: dict[str, Any] = {
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
    "burrow.TaskHeaders": TASK_HEADERS,
    "burrow.EventHeaders": EVENT_HEADERS,
    "burrow.RpcRequestHeaders": RPC_REQUEST_HEADERS,
    "burrow.RpcReplyHeaders": reply_headers(RPC_OK),
    "burrow.RpcErrorHeaders": reply_headers(RPC_ERROR),
    "burrow.RpcError": RPC_ERROR_BODY,
    "burrow.DeadLetterHeaders": DEAD_LETTER_HEADERS,
}


def schema_ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMA_REF.format(model=name)}


def amqp_binding(**fields: Any) -> dict[str, Any]:
    return {"amqp": {**fields, "bindingVersion": AMQP_BINDING_VERSION}}


def rpc_correlation() -> dict[str, str]:
    return {
        "location": "$message.header#/correlation_id",
        "description": "The AMQP correlation_id property: any string, copied onto the reply.",
    }


def rpc_request_properties() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["reply_to"],
        "properties": {
            "reply_to": {
                "type": "string",
                "pattern": REPLY_TO_PATTERN,
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


def dead_letter_message() -> dict[str, Any]:
    return {
        "name": "deadLetter",
        "title": "Dead letter",
        "summary": "The original message, kept byte for byte, with why it died.",
        "payload": {
            "description": "The original body, unchanged: not necessarily valid JSON, nor "
            "valid against the payload schema (that may be why it died)."
        },
        "headers": schema_ref("burrow.DeadLetterHeaders"),
        "x-burrow-properties": DEAD_LETTER_PROPERTIES,
    }
