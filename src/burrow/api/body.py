"""Request bodies: ``parse_json``, the one JSON parser of the API, and ``JsonRoute``, which
hands it to FastAPI's routes after the caller's key is checked.

``parse_json`` takes JSON as RFC 8259 defines it, in UTF-8 (a leading byte order mark is
skipped), and refuses with 422 ``validation_error``, saying where (line and column):

* malformed JSON, with what the parser expected there;
* bytes that are not UTF-8;
* ``NaN``, ``Infinity`` and ``-Infinity`` (Python's ``json`` takes them; JSON has no such
  numbers, and they would be stored as ``null`` or fail later), and numbers too large for
  a double (``1e400``);
* strings with a lone surrogate escape (``"\\ud800"``): not Unicode text, they cannot be
  stored as UTF-8;
* an object with the same key twice (parsers disagree on which value wins);
* nesting deeper than the parser allows, or an integer of more than 4300 digits.

Every route that takes a JSON body uses it: the submit routes call it directly
(``routes.tasks``), the others through ``JsonRoute``. FastAPI parses a body before it solves
an endpoint's dependencies, so a malformed body would be answered before a missing key;
``JsonRoute`` checks the key (the route's ``Read``/``Write``/``Admin`` dependency, once per
request) before it reads the body.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from burrow.api.deps import api_state, bearer_token, check_access, scope_of
from burrow.api.envelope import ApiError

#: A string escape that may be half of a surrogate pair (checked further when present).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
#: Characters of a refused number quoted in an error.
_QUOTE_LIMIT = 40


class _Refused(ValueError):
    """A value ``parse_json`` refuses although Python's ``json`` would take it; ``pos`` is
    where it starts (filled in by ``_locate``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pos: int | None = None


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number (numbers must be finite)")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        quoted = text if len(text) <= _QUOTE_LIMIT else text[:_QUOTE_LIMIT] + "..."
        raise _Refused(f"the number {quoted} is too large (numbers must be finite)")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {key!r} in this object")
            seen.add(key)
    return result


#: The ``json`` package, for the pieces of its pure-Python parser ``_locate`` reuses.
_JSON: Any = json
_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant, parse_float=_float)


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body (see the module docstring for what is refused).

    Raises:
        ApiError: 422 ``validation_error``; the message says where and what, e.g.
            ``malformed JSON at line 1, column 14: expecting ',' delimiter``.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = raw[: exc.start].decode("utf-8")
        reason = f"invalid UTF-8 (byte 0x{raw[exc.start]:02x})"
        raise malformed_json(prefix, len(prefix), reason) from None
    text = text.removeprefix("\ufeff")
    try:
        data = _DECODER.decode(text)
    except json.JSONDecodeError as exc:  # "Expecting ',' delimiter", "Extra data", ...
        reason = exc.msg.removesuffix(" at")
        raise malformed_json(text, exc.pos, reason[:1].lower() + reason[1:]) from None
    except _Refused as exc:
        where = _locate(text) or exc  # the decoder's hooks cannot see where they are
        raise malformed_json(text, where.pos, where.reason) from None
    except RecursionError:
        raise malformed_json(text, None, "nested too deeply") from None
    except ValueError:  # the only other one: int() refusing a very long integer
        reason = f"an integer of more than {sys.get_int_max_str_digits()} digits"
        raise malformed_json(text, None, reason) from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None:
        found = _locate(text)  # a lone surrogate among the escapes?
        if found is not None:
            raise malformed_json(text, found.pos, found.reason)
    return data


def malformed_json(text: str, pos: int | None, reason: str) -> ApiError:
    """The 422 for a body that is not JSON: ``reason`` at index ``pos`` of ``text`` (its
    line and column; None: nowhere in particular)."""
    detail: dict[str, Any] = {"loc": ["body"], "msg": reason, "type": "json_invalid"}
    if pos is None:
        return ApiError(422, "validation_error", f"malformed JSON: {reason}", [detail])
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    detail.update(line=line, column=column)
    return ApiError(
        422,
        "validation_error",
        f"malformed JSON at line {line}, column {column}: {reason}",
        [detail],
    )


# -- where a refused value is (the error path only) ------------------------------------------


def _string(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused("a string with a lone surrogate escape is not Unicode text") from None
    return value


def _checked_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    for key, _ in pairs:
        _string(key)
    return _object(pairs)


def _tracked(scan_once: Callable[[str, int], Any]) -> Callable[[str, int], Any]:
    """``scan_once`` recording where the value it failed on starts."""

    def scan(string: str, idx: int) -> Any:
        try:
            return scan_once(string, idx)
        except _Refused as exc:
            if exc.pos is None:
                exc.pos = idx
            raise

    return scan


def _locate(text: str) -> _Refused | None:
    """The first value of ``text`` that ``parse_json`` refuses, with where it starts (an
    object, for a duplicate key): the parse again with the pure-Python scanner, whose
    pieces can be wrapped to see each value's position; None when there is none.

    The pieces (``JSONObject``, ``JSONArray``, ``scanstring``, ``py_make_scanner``) are the
    ``json`` package's own, not in its documented API (nor in typeshed), but unchanged
    since Python 2.7; only errors take this path."""
    decoder: Any = json.JSONDecoder(
        object_pairs_hook=_checked_object, parse_constant=_constant, parse_float=_float
    )

    def parse_object(s_and_end: tuple[str, int], strict: bool, scan_once: Any, *rest: Any) -> Any:
        return _JSON.decoder.JSONObject(s_and_end, strict, _tracked(scan_once), *rest)

    def parse_array(s_and_end: tuple[str, int], scan_once: Any) -> Any:
        return _JSON.decoder.JSONArray(s_and_end, _tracked(scan_once))

    def parse_string(string: str, end: int, strict: bool) -> tuple[str, int]:
        value, end = _JSON.decoder.scanstring(string, end, strict)
        return _string(value), end

    decoder.parse_object = parse_object
    decoder.parse_array = parse_array
    decoder.parse_string = parse_string
    decoder.scan_once = _tracked(_JSON.scanner.py_make_scanner(decoder))
    try:
        decoder.decode(text)
    except _Refused as exc:
        return exc
    except (ValueError, RecursionError):  # nothing to point at: the caller says what it knows
        return None
    return None


# -- FastAPI's routes ------------------------------------------------------------------------


class _ParsedRequest(Request):
    """The request with its body read and parsed already: FastAPI takes both from here."""

    def __init__(self, request: Request, raw: bytes, data: Any) -> None:
        super().__init__(request.scope, request.receive)
        self._raw = raw
        self._data = data

    async def stream(self) -> AsyncGenerator[bytes, None]:
        yield self._raw
        yield b""

    async def body(self) -> bytes:
        return self._raw

    async def json(self) -> Any:
        return self._data


class JsonRoute(APIRoute):
    """An ``APIRoute`` whose JSON body is parsed by ``parse_json``, after the caller's key
    and scope are checked (see the module docstring). Routes without a body are served as
    FastAPI serves them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler
        scope = scope_of(self.dependant)

        async def handle(request: Request) -> Response:
            if scope is not None:
                await check_access(request, api_state(request), scope, bearer_token(request))
            raw = await request.body()
            return await handler(_ParsedRequest(request, raw, parse_json(raw) if raw else None))

        return handle
