"""Message headers: which ones burrow copies when it republishes, and which a client may send.

RabbitMQ acts on some headers. ``CC`` and ``BCC`` (sender-selected distribution,
https://www.rabbitmq.com/docs/sender-selected) send a copy of the message to every queue they
name, at *each* publish, and one that is not an array makes the broker close the channel
(``PRECONDITION_FAILED``). Others are written by the broker (``x-death``,
``x-first-death-*``) or read by it and its plugins (``x-delay``, ``x-match``, ``x-max-*``
...). So burrow never passes a header on just because a message carried it.

**Republishing** (``republishable``): the retry, delay and dead-letter copies of a delivery,
forwarding of not-yet-due messages and webhook retries keep a header only when

* its value is a plain scalar: text, a 64-bit integer, a float, a boolean or a timestamp
  (lists and tables such as ``x-death`` and ``CC``, byte strings and voids are dropped), and
* its name is not reserved (``reserved_reason``): not ``CC``/``BCC`` in any case, not a
  name RabbitMQ or its plugins interpret (``BROKER_NAMES``, ``BROKER_PREFIXES``), not a name
  of an addressing AMQP property (``reply_to``...), not burrow's internal
  ``burrow-delay-tier`` (set afresh where a copy needs it), and
* a ``traceparent`` is valid (``envelope.trace_id_of``).

That keeps burrow's own ``x-burrow-*`` headers (their readers check their values), the trace
context (``traceparent``, ``tracestate``) and the application's headers: what a handler reads
from ``TaskContext.headers`` and what a headers-exchange binding matches (a headers exchange
ignores ``x-`` binding arguments anyway, so those bindings use plain names). A replayed dead
letter keeps the same minus ``x-burrow-*`` (``replayable``).

**Clients** (``check_client_headers``: ``app.publish``, ``app.call``, the events route of the
HTTP API) get the same rule, strictly: a header that would not be kept is refused
(``HeaderRefused``, HTTP 422 naming it) instead of dropped, and so is any ``x-burrow-*`` or
``burrow-*`` name (burrow's own: only burrow sets them), a name outside
``CLIENT_NAME_RE``, a value that is not text, an integer, a float or a boolean, text over
``MAX_CLIENT_VALUE_BYTES`` and more than ``MAX_CLIENT_HEADERS`` headers.

Pure: no I/O (``tests/unit/test_layers.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from burrow.errors import ConfigurationError
from burrow.tasks.envelope import HDR_TIER, HDR_TRACEPARENT, trace_id_of

#: burrow's own headers (``x-burrow-attempt``, ``x-burrow-callback-url``...).
BURROW_PREFIX = "x-burrow-"
#: Sender-selected distribution: routing headers, compared in lower case here (RabbitMQ reads
#: exactly ``CC`` and ``BCC``; refusing every spelling leaves no doubt).
ROUTING_HEADERS = frozenset({"cc", "bcc"})
#: Header names (lower case) that RabbitMQ or a common plugin writes or reads: dead-lettering
#: (``x-death``), headers-exchange matching (``x-match``), the delayed-message plugin
#: (``x-delay``), shovels and federation (``x-received-from``, ``x-shovelled*``), the
#: AMQP 1.0 annotations of RabbitMQ 4 (``x-cc``, ``x-exchange``, ``x-routing-key``), the
#: message-deduplication plugin, and queue arguments that must never ride on a message.
BROKER_NAMES = frozenset(
    {
        "x-bcc",
        "x-cache-ttl",
        "x-cc",
        "x-death",
        "x-deduplication-header",
        "x-delay",
        "x-exchange",
        "x-expires",
        "x-match",
        "x-overflow",
        "x-priority",
        "x-received-from",
        "x-routing-key",
        "x-shovelled",
        "x-shovelled-timestamp",
        "x-single-active-consumer",
    }
)
#: Prefixes (lower case) of broker-interpreted names: ``x-first-death-queue``,
#: ``x-dead-letter-exchange``, ``x-max-length``, ``x-message-ttl``, ``x-delivery-count``,
#: ``x-queue-type``, ``x-stream-filter-value``, ``x-opt-*`` (AMQP 1.0 annotations)...
BROKER_PREFIXES = (
    "x-amqp-",
    "x-dead-letter-",
    "x-delivery-",
    "x-first-death-",
    "x-ha-",
    "x-last-death-",
    "x-max-",
    "x-message-",
    "x-opt-",
    "x-queue-",
    "x-quorum-",
    "x-stream-",
)
#: Names of AMQP properties that address or identify a message (lower case, ``-`` read as
#: ``_``). burrow sets and reads the properties; a header of the same name would only pass
#: for one in a consumer that reads headers.
PROPERTY_NAMES = frozenset({"correlation_id", "expiration", "message_id", "reply_to", "user_id"})

#: Header names a client may use: 1-128 characters of letters, digits and ``_ . : -``,
#: starting with a letter or digit.
CLIENT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
MAX_CLIENT_HEADERS = 32
MAX_CLIENT_VALUE_BYTES = 1024

_INT64 = (-(2**63), 2**63 - 1)


class HeaderRefused(ConfigurationError, ValueError):
    """A header a client may not send; ``header`` names it (None: the whole set, e.g. too
    many) and ``reason`` says why."""

    def __init__(self, header: str | None, reason: str) -> None:
        where = f"header {header!r}" if header is not None else "headers"
        super().__init__(f"{where} refused: {reason}")
        self.header = header
        self.reason = reason


def reserved_reason(name: str) -> str | None:
    """Why header ``name`` must never be copied or sent by a client, or None.

    Reserved: ``CC``/``BCC`` in any case, names RabbitMQ or its plugins interpret,
    addressing property names, and burrow's internal ``burrow-delay-tier``.
    """
    lower = name.lower()
    if lower in ROUTING_HEADERS:
        return "RabbitMQ sends a copy of the message to every queue it names"
    if lower in BROKER_NAMES or lower.startswith(BROKER_PREFIXES):
        return "RabbitMQ or one of its plugins interprets it"
    if lower == HDR_TIER:
        return "it routes messages inside burrow's delay exchange"
    if lower.replace("-", "_") in PROPERTY_NAMES:
        return "it names an AMQP message property, which burrow sets itself"
    return None


def _scalar(value: Any) -> bool:
    """A plain header value: text, a boolean, a 64-bit integer, a float or a timestamp."""
    if isinstance(value, str | bool | float | datetime):
        return True
    return isinstance(value, int) and _INT64[0] <= value <= _INT64[1]


def republishable(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The headers of a delivery that a copy of it may carry (see the module docstring).

    Returns a new dict: the caller adds its own headers (attempt, ETA, dead-letter
    fields) to it.
    """
    kept: dict[str, Any] = {}
    if not headers:
        return kept
    for name, value in headers.items():
        if _scalar(value) and _keep(name, value):
            kept[name] = value
    return kept


def _keep(name: str, value: Any) -> bool:
    if name.startswith(BURROW_PREFIX):
        return True  # burrow's own (their readers check the values)
    if reserved_reason(name) is not None:
        return False
    return name != HDR_TRACEPARENT or trace_id_of(value) is not None


def replayable(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The headers a dead letter keeps when it is replayed as a fresh run: the
    ``republishable`` ones minus burrow's own ``x-burrow-*`` (its attempt, ETA, dead-letter
    reason and history belong to the run that died; the caller sets the new attempt)."""
    return {
        name: value
        for name, value in republishable(headers).items()
        if not name.startswith(BURROW_PREFIX)
    }


def client_header_problem(name: Any, value: Any) -> str | None:
    """Why a client may not send header ``name`` with ``value``, or None when it may."""
    if not isinstance(name, str) or CLIENT_NAME_RE.fullmatch(name) is None:
        return (
            "header names are 1-128 characters of letters, digits and _ . : -, "
            "starting with a letter or digit"
        )
    lower = name.lower()
    if lower.startswith((BURROW_PREFIX, "burrow-")):
        return "x-burrow-* and burrow-* headers are burrow's own: only burrow sets them"
    reason = reserved_reason(name)
    if reason is not None:
        return reason
    if lower == HDR_TRACEPARENT and trace_id_of(value) is None:
        return (
            "not a valid W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, lower case, "
            "ids not all zero)"
        )
    return _client_value_problem(value)


def _client_value_problem(value: Any) -> str | None:
    if isinstance(value, str):
        size = len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_CLIENT_VALUE_BYTES:
            return f"the value is {size} bytes in UTF-8; at most {MAX_CLIENT_VALUE_BYTES}"
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return None
        return "integers must fit in 64 bits (signed)"
    if isinstance(value, float):
        return None if math.isfinite(value) else "floats must be finite"
    return f"values are text, integers, floats or booleans, not {type(value).__name__}"


def check_client_headers(headers: Mapping[str, Any] | None) -> None:
    """Refuse the first header a client may not send (``client_header_problem``).

    Raises:
        HeaderRefused: a header is refused (named), or there are more than
            ``MAX_CLIENT_HEADERS``.
    """
    if not headers:
        return
    if len(headers) > MAX_CLIENT_HEADERS:
        raise HeaderRefused(
            None, f"{len(headers)} headers; at most {MAX_CLIENT_HEADERS} are allowed"
        )
    for name, value in headers.items():
        problem = client_header_problem(name, value)
        if problem is not None:
            raise HeaderRefused(str(name), problem)


__all__ = [
    "BROKER_NAMES",
    "BROKER_PREFIXES",
    "BURROW_PREFIX",
    "CLIENT_NAME_RE",
    "MAX_CLIENT_HEADERS",
    "MAX_CLIENT_VALUE_BYTES",
    "PROPERTY_NAMES",
    "ROUTING_HEADERS",
    "HeaderRefused",
    "check_client_headers",
    "client_header_problem",
    "replayable",
    "republishable",
    "reserved_reason",
]
