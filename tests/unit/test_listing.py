"""Paging pieces of ``list_tasks`` as pure logic: the opaque cursor, the limit, the filter."""

from __future__ import annotations

import base64

import pytest

from burrow import ConfigurationError, TaskStatus
from burrow.tasks.listing import (
    MAX_LIMIT,
    Position,
    TaskFilter,
    check_limit,
    decode_cursor,
    encode_cursor,
)


@pytest.mark.parametrize(
    "position",
    [
        Position(1_715_000_000.123456, "4a7631c5-86dd-404b-b2d0-6e83674b67a8"),
        Position(1_715_000_000.1234567, "id|with|bars"),
        Position(0.0, "x"),
        Position(1e-7, "ünïcode:id"),
    ],
)
def test_cursor_round_trips_exactly(position: Position) -> None:
    """Decoding an encoded cursor gives the same score (bit for bit) and id."""
    cursor = encode_cursor(position)
    assert decode_cursor(cursor) == position
    assert cursor.isascii()
    assert not set(cursor) & set("=/+")  # URL-safe as it is


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not-a-cursor",
        "%%%",
        _b64("v2|1.5|id"),
        _b64("v1|abc|id"),
        _b64("v1|nan|id"),
        _b64("v1|inf|id"),
        _b64("v1|1.5|"),
        _b64("v1|1.5"),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * 2000,
    ],
)
def test_malformed_cursor_is_a_configuration_error(cursor: str) -> None:
    """Anything but a cursor burrow produced is refused with a clear ConfigurationError."""
    with pytest.raises(ConfigurationError, match="malformed cursor"):
        decode_cursor(cursor)


def test_position_order_is_newest_first_with_ties_by_id() -> None:
    """An entry comes after a position when it is older, or equally old with a smaller id."""
    here = Position(10.0, "m")
    assert here.after(9.0, "z")
    assert here.after(10.0, "a")
    assert not here.after(10.0, "m")
    assert not here.after(10.0, "z")
    assert not here.after(11.0, "a")


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1, True, 2.5])
def test_limit_out_of_range_is_refused(limit: object) -> None:
    """A limit outside 1-500 (or not an int) is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="limit"):
        check_limit(limit)  # type: ignore[arg-type]


def test_limit_in_range_is_kept() -> None:
    """1 and 500 are both valid page sizes."""
    assert check_limit(1) == 1
    assert check_limit(MAX_LIMIT) == MAX_LIMIT


def test_filter_matches_every_given_field() -> None:
    """A filter keeps an entry only when each field it names matches."""
    assert TaskFilter().empty
    where = TaskFilter(status=TaskStatus.FAILED, queue="math")
    assert where.matches("failed", "add", "math")
    assert not where.matches("succeeded", "add", "math")
    assert not where.matches("failed", "add", "default")
    assert not where.matches(None, None, None)
