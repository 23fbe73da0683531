"""The one response envelope of the HTTP API.

Every JSON answer is ``{"code": <HTTP status>, "message": <str>, "data": <any>}``; errors add
``"error": {"type": <machine-readable str>, "details": <any>}``. The models here document
the envelope in the OpenAPI schema; the helpers build responses with orjson directly (the
submit path is hot, so answers skip a second pydantic validation).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel
from starlette.responses import Response

T = TypeVar("T")

JSON_TYPE = "application/json"


class Envelope(BaseModel, Generic[T]):
    """A successful answer."""

    code: int
    message: str
    data: T


class ErrorInfo(BaseModel):
    """What went wrong: ``type`` is stable (clients branch on it), ``details`` varies."""

    type: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    """An error answer; ``data`` is always null."""

    code: int
    message: str
    data: None = None
    error: ErrorInfo


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(body: dict[str, Any]) -> bytes:
    """Serialise an envelope (models and bytes inside ``data`` included)."""
    return orjson.dumps(body, default=_default, option=orjson.OPT_NON_STR_KEYS)


def ok(
    data: Any,
    *,
    status: int = 200,
    message: str = "ok",
    headers: dict[str, str] | None = None,
) -> Response:
    """A success envelope."""
    body = dumps({"code": status, "message": message, "data": data})
    return Response(body, status_code=status, media_type=JSON_TYPE, headers=headers)


def accepted(data: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """The 202 envelope of a submit, ``data`` already in its JSON shape (plain values and
    ``orjson.Fragment``s): one orjson call, no model on the way."""
    body = orjson.dumps({"code": 202, "message": "accepted", "data": data})
    return Response(body, status_code=202, media_type=JSON_TYPE, headers=headers)


def error_body(status: int, message: str, type_: str, details: Any = None) -> bytes:
    return dumps(
        {
            "code": status,
            "message": message,
            "data": None,
            "error": {"type": type_, "details": details},
        }
    )


def error(
    status: int,
    message: str,
    type_: str,
    details: Any = None,
    *,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error envelope."""
    return Response(
        error_body(status, message, type_, details),
        status_code=status,
        media_type=JSON_TYPE,
        headers=headers,
    )


#: Error answers every route may give, for ``responses=`` in route declarations (so the
#: OpenAPI schema documents the envelope instead of FastAPI's default 422 body).
def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Bad request",
        401: "Missing or unknown API key",
        403: "The API key lacks the scope",
        404: "Not found",
        409: "Conflict with the task's state",
        413: "Request body too large",
        422: "Validation error (details list the failing fields)",
        429: "Rate or queue depth limit exceeded (see Retry-After)",
        503: "Broker or Redis unavailable (see Retry-After)",
    }
    return {c: {"model": ErrorEnvelope, "description": descriptions.get(c, "Error")} for c in codes}


class ApiError(Exception):
    """Raised by API code to answer with an error envelope (caught by the handlers)."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        details: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.details = details
        self.headers = headers
