"""``burrow.api.body.parse_json``: strict JSON for request bodies, with errors that say
where; and ``TaskConflict``'s message."""

from __future__ import annotations

import pytest

from burrow.api.body import parse_json
from burrow.api.envelope import ApiError
from burrow.errors import TaskConflict


def refused(raw: bytes) -> ApiError:
    """The ApiError ``parse_json`` raises for ``raw`` (the test fails if it parses)."""
    with pytest.raises(ApiError) as caught:
        parse_json(raw)
    error = caught.value
    assert error.status == 422
    assert error.type == "validation_error"
    return error


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"x": NaN}', "malformed JSON at line 1, column 7: NaN is not a JSON number"),
        (b'{"x": Infinity}', "malformed JSON at line 1, column 7: Infinity is not a JSON number"),
        (b"[1,\n -Infinity]", "malformed JSON at line 2, column 2: -Infinity is not a JSON number"),
        (b'{"x": 1e400}', "malformed JSON at line 1, column 7: the number 1e400 is too large"),
        (b'{"x": -1e400}', "malformed JSON at line 1, column 7: the number -1e400 is too large"),
        (b'{"x": 1' + b"0" * 400 + b".5}", "malformed JSON at line 1, column 7: the number 1000"),
    ],
)
def test_non_finite_numbers_are_refused_where_they_are(raw: bytes, message: str) -> None:
    """NaN, Infinity, -Infinity and numbers past a double's range are 422 at their place."""
    assert refused(raw).message.startswith(message)


def test_duplicate_keys_are_refused_naming_the_key() -> None:
    """An object with a key twice is refused, naming the key and where the object starts."""
    error = refused(b'{"payload": {"a": 1,\n  "b": {"x": 1, "x": 2}}}')
    assert error.message == "malformed JSON at line 2, column 8: duplicate key 'x' in this object"
    assert error.details == [
        {
            "loc": ["body"],
            "msg": "duplicate key 'x' in this object",
            "type": "json_invalid",
            "line": 2,
            "column": 8,
        }
    ]


def test_malformed_json_says_where_and_what_was_expected() -> None:
    """Broken JSON names the line, the column and what the parser expected there."""
    assert refused(b'{"payload": {"a": 1}').message == (
        "malformed JSON at line 1, column 21: expecting ',' delimiter"
    )
    assert refused(b'{"a": 1}\n{"b": 2}').message == (
        "malformed JSON at line 2, column 1: extra data"
    )
    assert refused(b"").message == "malformed JSON at line 1, column 1: expecting value"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"x": "\xc3\x28"}', "malformed JSON at line 1, column 8: invalid UTF-8 (byte 0xc3)"),
        (b'{"x": "\\ud800"}', "malformed JSON at line 1, column 7: a string with a lone"),
        (b'{"\\udc00": 1}', "malformed JSON at line 1, column 1: a string with a lone"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed JSON: nested too deeply"),
        (b'{"x": ' + b"9" * 5000 + b"}", "malformed JSON: an integer of more than 4300 digits"),
    ],
)
def test_what_pythons_parser_refuses_otherwise_is_422_too(raw: bytes, message: str) -> None:
    """Bytes that are not UTF-8, lone surrogates, deep nesting and huge integers are 422."""
    assert refused(raw).message.startswith(message)


def test_valid_json_is_taken_as_it_is() -> None:
    """Big integers stay exact, surrogate pairs decode, a BOM is skipped, and the words
    NaN and Infinity inside strings are only text."""
    assert parse_json(b'{"n": 1180591620717411303425}') == {"n": 2**70 + 1}
    assert parse_json(b'{"s": "\\ud83d\\ude00"}') == {"s": "\U0001f600"}
    assert parse_json(b'\xef\xbb\xbf{"a": [1, 2.5, null, true]}') == {"a": [1, 2.5, None, True]}
    assert parse_json(b'{"x": "NaN and Infinity", "y": 1e-400}') == {
        "x": "NaN and Infinity",
        "y": 0.0,
    }
    assert parse_json(b'{"a": {"x": 1}, "b": {"x": 2}}') == {"a": {"x": 1}, "b": {"x": 2}}


@pytest.mark.parametrize(
    ("status", "operation", "message"),
    [
        ("succeeded", "cancel", "cannot cancel task 't': it has already succeeded"),
        ("failed", "cancel", "cannot cancel task 't': it already failed"),
        ("cancelled", "cancel", "cannot cancel task 't': it was cancelled"),
        ("queued", "retry", "cannot retry task 't': it is still queued"),
        ("running", "retry", "cannot retry task 't': it is still running"),
        ("retrying", "retry", "cannot retry task 't': it is waiting for its next attempt"),
    ],
)
def test_task_conflicts_read_as_sentences(status: str, operation: str, message: str) -> None:
    """A refused cancel or retry says why in a grammatical sentence."""
    assert str(TaskConflict("t", status, operation)) == message
