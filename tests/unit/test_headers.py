"""Header hygiene as pure rules: what a republished copy keeps, what a client may send, strict
traceparents, task ids, AMQP name limits, the publisher's per-message encoding check, and
properties that cannot be decoded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pamqp import frame
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from burrow.broker.amqp._decoding import _tolerant_header_frame
from burrow.broker.amqp.publisher import encode_message
from burrow.broker.topology import (
    Exchange,
    Names,
    check_exchange_name,
    check_routing_key,
    event_exchange,
)
from burrow.errors import ConfigurationError
from burrow.tasks.envelope import (
    BAD_MESSAGE_ID,
    HDR_BAD_PROPERTIES,
    BadMessage,
    parse_envelope,
    task_id_problem,
    trace_id_of,
    valid_traceparent,
)
from burrow.tasks.headers import (
    HeaderRefused,
    check_client_headers,
    client_header_problem,
    replayable,
    republishable,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{SPAN}-01"

#: Headers a hostile or careless producer may put on a message, none of which a copy keeps.
BROKER_HEADERS: dict[str, Any] = {
    "CC": ["t.default"],
    "BCC": ["t.other"],
    "cc": "t.default",
    "Bcc": ["t.other"],
    "x-death": [{"queue": "t.delay.100", "count": 3}],
    "x-first-death-queue": "t.delay.100",
    "x-first-death-reason": "expired",
    "x-last-death-exchange": "",
    "x-match": "any",
    "x-delay": 60_000,
    "x-dead-letter-exchange": "elsewhere",
    "x-dead-letter-routing-key": "t.other",
    "x-message-ttl": 1,
    "x-expires": 1,
    "x-max-length": 1,
    "x-delivery-count": 7,
    "x-received-from": "shovel",
    "X-Match": "all",
    "reply_to": "amq.rabbitmq.reply-to",
    "Reply-To": "t.other",
    "burrow-delay-tier": "100",
}
#: Headers that are not plain scalars (or that AMQP cannot carry on a copy).
NOT_SCALAR: dict[str, Any] = {
    "list": [1, 2],
    "table": {"a": 1},
    "bytes": b"\xff\xfe",
    "void": None,
    "huge": 2**70,
}


def test_a_copy_keeps_burrow_trace_and_application_headers() -> None:
    """burrow's own x-burrow-* headers, a valid traceparent, tracestate and plain application
    headers (x-tenant included) survive a republish unchanged."""
    stamp = datetime(2025, 1, 1, tzinfo=UTC)
    kept = {
        "x-burrow-attempt": 2,
        "x-burrow-eta": 1_700_000_000_000,
        "x-burrow-callback-url": "https://example.com/hook",
        "traceparent": TRACEPARENT,
        "tracestate": "vendor=value",
        "x-tenant": "acme",
        "format": "pdf",
        "ratio": 0.5,
        "urgent": True,
        "when": stamp,
    }
    assert republishable(kept) == kept


def test_a_copy_drops_routing_and_broker_headers() -> None:
    """CC/BCC in any case, the broker's x- names, addressing property names and the delay
    tier header never reach a copy."""
    assert republishable({**BROKER_HEADERS, "x-tenant": "acme"}) == {"x-tenant": "acme"}


def test_a_copy_drops_values_that_are_not_plain_scalars() -> None:
    """Lists, tables, byte strings (undecodable text), voids and integers beyond 64 bits are
    dropped: a copy must be encodable and carry nothing the broker might read."""
    assert republishable({**NOT_SCALAR, "ok": 1}) == {"ok": 1}


def test_a_replayed_dead_letter_keeps_application_headers_only() -> None:
    """A replay keeps the trace context and application headers, and drops burrow's own
    headers of the run that died as well as every broker header."""
    dead = {
        **BROKER_HEADERS,
        "x-burrow-reason": "max_retries",
        "x-burrow-attempt": 4,
        "traceparent": TRACEPARENT,
        "x-tenant": "acme",
    }
    assert replayable(dead) == {"traceparent": TRACEPARENT, "x-tenant": "acme"}


def test_a_copy_drops_an_invalid_traceparent() -> None:
    """A traceparent that fails the strict check is not passed on."""
    bad = f"ff-{TRACE}-{SPAN}-01"
    assert republishable({"traceparent": bad, "a": "b"}) == {"a": "b"}
    assert republishable(None) == {}


@pytest.mark.parametrize("name", sorted(BROKER_HEADERS))
def test_a_client_may_not_send_broker_headers(name: str) -> None:
    """Every reserved header is refused for a client, and the error names it."""
    value = BROKER_HEADERS[name]
    with pytest.raises(HeaderRefused) as info:
        check_client_headers({"fine": "yes", name: value if not isinstance(value, list) else "x"})
    assert info.value.header == name
    assert name in str(info.value)
    assert isinstance(info.value, ConfigurationError)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-burrow-callback-url", "http://169.254.169.254/"),
        ("x-burrow-attempt", -5),
        ("x-burrow-eta", 1),
        ("burrow-anything", "x"),
        ("traceparent", f"00-{'0' * 32}-{SPAN}-01"),
        ("traceparent", "not a traceparent"),
        ("bad name", "x"),
        ("-dash-first", "x"),
        ("n" * 129, "x"),
        ("big", 2**63),
        ("nan", float("nan")),
        ("long", "v" * 1025),
        ("list", ["a"]),
        ("raw", b"x"),
    ],
)
def test_a_client_may_not_send_burrow_headers_or_odd_values(name: str, value: Any) -> None:
    """burrow's own headers, invalid traceparents, odd names and values a header cannot
    carry plainly are refused, naming the header."""
    assert client_header_problem(name, value) is not None
    with pytest.raises(HeaderRefused) as info:
        check_client_headers({name: value})
    assert info.value.header == name


def test_a_client_may_send_plain_application_headers() -> None:
    """Application headers (headers-exchange keys, x-tenant), a valid traceparent and
    tracestate are accepted."""
    check_client_headers(
        {
            "format": "pdf",
            "kind": "report",
            "x-tenant": "acme",
            "Priority-Band": 3,
            "urgent": False,
            "ratio": 1.5,
            "traceparent": TRACEPARENT,
            "tracestate": "vendor=value",
            "long": "v" * 1024,
        }
    )
    check_client_headers(None)


def test_a_client_may_not_send_too_many_headers() -> None:
    """More than 32 headers are refused as a whole."""
    with pytest.raises(HeaderRefused) as info:
        check_client_headers({f"h{i}": i for i in range(33)})
    assert info.value.header is None


@pytest.mark.parametrize(
    "traceparent",
    [
        f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper case
        f"00-{TRACE}-{SPAN}-01\n",  # trailing newline
        f"00-{TRACE}-{SPAN}-01-extra",  # extra fields
        f"0-{TRACE}-{SPAN}-01",
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00_{TRACE}_{SPAN}_01",
        "",
        None,
        42,
        TRACEPARENT.encode(),
    ],
)
def test_invalid_traceparents_are_refused(traceparent: Any) -> None:
    """The strict check refuses every malformed traceparent, so none is ever adopted."""
    assert trace_id_of(traceparent) is None
    assert valid_traceparent(traceparent) is None


def test_a_valid_traceparent_gives_its_trace_id() -> None:
    """The version-00 form (and any version but ff, in that form) is valid."""
    assert trace_id_of(TRACEPARENT) == TRACE
    assert trace_id_of(f"01-{TRACE}-{SPAN}-00") == TRACE
    assert valid_traceparent(TRACEPARENT) == TRACEPARENT


@pytest.mark.parametrize(
    "task_id", ["a\r\nLocation: evil", "a\nb", "nul\x00", "del\x7f", "c1\x85", "sep\u2028"]
)
def test_a_message_id_with_control_characters_is_dead_lettered(task_id: str) -> None:
    """A message_id with control characters is no task id: parse_envelope refuses it with
    the bad_message_id reason."""
    assert task_id_problem(task_id) is not None
    with pytest.raises(BadMessage) as info:
        parse_envelope(
            message_id=task_id,
            type_="add",
            content_type="application/json",
            content_encoding=None,
            headers={},
            body=b"{}",
            max_bytes=1000,
        )
    assert info.value.reason == BAD_MESSAGE_ID


def test_task_ids_are_printable_and_fit_a_short_string() -> None:
    """UUIDs, event ids and printable Unicode are ids; over 255 UTF-8 bytes is not."""
    for good in ("6f1c2d1e-0b7a-4a0e-9c3e-2f6a1b2c3d4e", "e1:audit@host-1-ab12", "naïve id"):
        assert task_id_problem(good) is None
    assert task_id_problem("é" * 127) is None  # 254 bytes
    assert task_id_problem("é" * 128) is not None  # 256 bytes, 128 characters


def test_routing_keys_are_limited_in_bytes_not_characters() -> None:
    """255 ASCII characters pass; 128 two-byte characters (256 bytes) are refused."""
    assert check_routing_key("k" * 255) == "k" * 255
    with pytest.raises(ConfigurationError, match="256 bytes"):
        check_routing_key("é" * 128)


def test_exchange_names_are_limited_with_their_namespace() -> None:
    """An exchange name over 127 characters with its namespace prefix is refused; burrow's
    own delay and control exchanges are reserved."""
    names = Names("ns")
    assert event_exchange(names, Exchange("e" * 124)).name == "ns." + "e" * 124
    with pytest.raises(ConfigurationError, match="127"):
        event_exchange(names, Exchange("e" * 125))
    with pytest.raises(ConfigurationError, match="128 characters"):
        check_exchange_name("x" * 128)
    for reserved in ("delay", "control"):
        with pytest.raises(ConfigurationError, match="reserved"):
            Exchange(reserved)


def _encode(**overrides: Any) -> bytes:
    fields: dict[str, Any] = {
        "channel_number": 1,
        "exchange": "",
        "routing_key": "q",
        "properties": Basic.Properties(headers={"a": 1}),
        "mandatory": True,
        "body_size": 2,
        "frame_max": 131_072,
    }
    fields.update(overrides)
    return encode_message(**fields)


def test_the_publisher_refuses_what_would_break_the_channel_or_connection() -> None:
    """A CC/BCC header, a routing key over 255 bytes, an exchange name over 127 characters,
    an unencodable header and a header frame over frame_max are refused per message."""
    assert _encode()
    for name in ("CC", "BCC"):
        with pytest.raises(HeaderRefused):
            _encode(properties=Basic.Properties(headers={name: "t.default"}))
    with pytest.raises(ConfigurationError, match="cannot encode"):
        _encode(routing_key="é" * 128)
    with pytest.raises(ConfigurationError, match="cannot encode"):
        _encode(exchange="x" * 128)
    with pytest.raises(ConfigurationError, match="cannot encode"):
        _encode(properties=Basic.Properties(headers={"big": 2**64}))
    with pytest.raises(ConfigurationError, match="frame size"):
        _encode(properties=Basic.Properties(headers={f"h{i}": "v" * 1000 for i in range(200)}))


def test_undecodable_properties_decode_as_a_marked_message() -> None:
    """A content header whose message_id is not UTF-8 decodes (with its body size) as a
    message whose only property is the bad-properties header, which the envelope refuses
    as bad_properties; a decodable one is unchanged."""
    good = ContentHeader(body_size=42, properties=Basic.Properties(message_id="\u00ff-id"))
    raw = frame.marshal(good, 1)[7:-1]  # the frame's payload
    assert _tolerant_header_frame(raw).properties.message_id == "\u00ff-id"
    bad = raw.replace("\u00ff".encode(), b"\xff\xfe")
    decoded = _tolerant_header_frame(bad)
    assert decoded.body_size == 42
    assert decoded.properties.message_id is None
    headers = decoded.properties.headers or {}
    assert "cannot be decoded" in str(headers[HDR_BAD_PROPERTIES])
    with pytest.raises(BadMessage) as info:
        parse_envelope(
            message_id=None,
            type_=None,
            content_type=None,
            content_encoding=None,
            headers=headers,
            body=b"{}",
            max_bytes=1000,
        )
    assert info.value.reason == "bad_properties"
