"""parse_envelope: how a delivery's AMQP properties become an Envelope, or a BadMessage."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from burrow.tasks.envelope import (
    HDR_ATTEMPT,
    HDR_ETA,
    HDR_TRACEPARENT,
    MAX_ATTEMPT,
    BadMessage,
    Envelope,
    eta_header,
    new_traceparent,
    parse_envelope,
    trace_id_of,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def parse(**overrides: Any) -> Envelope:
    """parse_envelope with the properties of a well-formed message, overridden by ``overrides``."""
    fields: dict[str, Any] = {
        "message_id": "task-1",
        "type_": "add",
        "content_type": "application/json",
        "content_encoding": None,
        "headers": {},
        "body": b'{"a": 1}',
        "max_bytes": 1_000,
    }
    fields.update(overrides)
    return parse_envelope(**fields)


def reason_of(**overrides: Any) -> str:
    """The BadMessage reason parse_envelope gives for these properties."""
    with pytest.raises(BadMessage) as info:
        parse(**overrides)
    return info.value.reason


def test_a_well_formed_message_parses() -> None:
    """message_id, type, attempt and body come through unchanged."""
    env = parse(headers={HDR_ATTEMPT: 3, HDR_TRACEPARENT: TRACEPARENT})
    assert env.task_id == "task-1"
    assert env.name == "add"
    assert env.attempt == 3
    assert env.eta is None
    assert env.body == b'{"a": 1}'


def test_a_body_over_the_limit_is_too_large() -> None:
    """A body longer than max_bytes is refused as too_large."""
    assert reason_of(body=b"x" * 1_001) == "too_large"


def test_a_body_at_the_limit_is_accepted() -> None:
    """A body of exactly max_bytes is fine."""
    assert parse(body=b"1" * 1_000).body == b"1" * 1_000


def test_size_is_checked_before_anything_else() -> None:
    """An oversized body is too_large even when its other properties are also wrong."""
    assert reason_of(body=b"x" * 5_000, content_type="image/png", type_=None) == "too_large"


@pytest.mark.parametrize(
    ("content_type", "content_encoding"),
    [
        ("application/xml", None),
        ("application/octet-stream", None),
        ("application/json; charset=latin-1", None),
        ("application/json", "gzip"),
        (None, "base64"),
    ],
)
def test_non_json_content_is_bad_content_type(
    content_type: str | None, content_encoding: str | None
) -> None:
    """A content type other than JSON (or an encoding other than UTF-8) is bad_content_type."""
    assert (
        reason_of(content_type=content_type, content_encoding=content_encoding)
        == "bad_content_type"
    )


@pytest.mark.parametrize(
    ("content_type", "content_encoding"),
    [
        (None, None),
        ("", None),
        ("application/json", None),
        ("Application/JSON; charset=UTF-8", None),
        ("text/plain", None),
        ("application/json", "utf-8"),
        ("application/json", "identity"),
    ],
)
def test_json_or_unset_content_type_is_accepted(
    content_type: str | None, content_encoding: str | None
) -> None:
    """JSON, text/plain, or no content type at all are accepted."""
    assert parse(content_type=content_type, content_encoding=content_encoding).name == "add"


@pytest.mark.parametrize("type_", [None, ""])
def test_a_message_without_type_is_missing_type(type_: str | None) -> None:
    """The AMQP type property names the task; without it the message is missing_type."""
    assert reason_of(type_=type_) == "missing_type"


@pytest.mark.parametrize("attempt", ["abc", "1", -1, 0, 10**12, MAX_ATTEMPT + 1, True, 1.0])
def test_a_malformed_attempt_header_is_schema_error(attempt: object) -> None:
    """x-burrow-attempt must be an int in [1, MAX_ATTEMPT] (not a bool, float or text)."""
    assert reason_of(headers={HDR_ATTEMPT: attempt}) == "schema_error"


def test_a_missing_attempt_header_means_the_first_attempt() -> None:
    """Without x-burrow-attempt the message is attempt 1."""
    assert parse(headers={}).attempt == 1
    assert parse(headers=None).attempt == 1


def test_eta_is_integer_unix_milliseconds() -> None:
    """x-burrow-eta is read as integer Unix milliseconds and returned in seconds."""
    env = parse(headers={HDR_ETA: 1_700_000_000_123})
    assert env.eta == pytest.approx(1_700_000_000.123)


@pytest.mark.parametrize("eta", [1.7e12, "1700000000000", -1, True])
def test_a_malformed_eta_is_schema_error(eta: object) -> None:
    """A float, text, negative or boolean x-burrow-eta is refused as schema_error."""
    assert reason_of(headers={HDR_ETA: eta}) == "schema_error"


def test_eta_header_round_trips_through_parse() -> None:
    """eta_header writes whole milliseconds that parse back to the same time."""
    header = eta_header(1_700_000_000.5)
    assert header == 1_700_000_000_500
    assert isinstance(header, int)
    assert parse(headers={HDR_ETA: header}).eta == pytest.approx(1_700_000_000.5)


def test_trace_id_comes_from_a_valid_traceparent() -> None:
    """A valid W3C traceparent gives the trace id and is kept."""
    env = parse(headers={HDR_TRACEPARENT: TRACEPARENT})
    assert env.trace_id == TRACE_ID
    assert env.traceparent == TRACEPARENT


@pytest.mark.parametrize(
    "traceparent",
    [None, "", "garbage", TRACEPARENT.upper(), TRACEPARENT.encode(), f"00-{TRACE_ID}-01"],
)
def test_a_fresh_trace_id_is_made_without_a_valid_traceparent(traceparent: object) -> None:
    """A missing or malformed traceparent gives a fresh random trace id and no traceparent."""
    headers = {} if traceparent is None else {HDR_TRACEPARENT: traceparent}
    first, second = parse(headers=headers), parse(headers=headers)
    assert HEX32.match(first.trace_id)
    assert first.trace_id != second.trace_id
    assert first.traceparent is None


@pytest.mark.parametrize("message_id", [None, ""])
def test_a_missing_message_id_gets_a_fresh_uuid(message_id: str | None) -> None:
    """Without message_id the task runs under a new UUID4, different for every delivery."""
    first, second = parse(message_id=message_id), parse(message_id=message_id)
    assert uuid.UUID(first.task_id).version == 4
    assert first.task_id != second.task_id


def test_new_traceparent_is_valid_w3c() -> None:
    """new_traceparent produces a header trace_id_of accepts."""
    header = new_traceparent()
    trace_id = trace_id_of(header)
    assert trace_id is not None
    assert HEX32.match(trace_id)


def test_bad_message_carries_reason_and_detail() -> None:
    """BadMessage exposes a machine-readable reason and a human detail."""
    with pytest.raises(BadMessage, match="missing_type") as info:
        parse(type_=None)
    assert info.value.reason == "missing_type"
    assert "type" in info.value.detail
