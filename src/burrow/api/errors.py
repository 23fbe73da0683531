"""Every error becomes the envelope: burrow's errors, FastAPI's own 404/405/422, and our
``ApiError``. Unexpected exceptions are turned into a 500 by ``front.ApiFront``.

=====================================  ======  =========================
error                                  status  ``error.type``
=====================================  ======  =========================
UnknownTask                            404     ``unknown_task``
UnknownExchange                        404     ``unknown_exchange``
RpcTimeout                             504     ``rpc_timeout``
RpcError                               502     ``rpc_error``
TaskNotFound                           404     ``task_not_found``
PayloadInvalid                         422     ``payload_invalid``
request validation (FastAPI)           422     ``validation_error``
a body that is not strict JSON         422     ``validation_error`` (``body.parse_json``)
TaskConflict                           409     ``task_conflict``
ConfigurationError                     422     ``invalid_request``
BrokerUnavailable, BrokerError         503     ``broker_unavailable``
PublishTimeout                         503     ``publish_timeout``
PublishRejected / Unroutable           503     ``publish_rejected``
StateUnavailable, StateError           503     ``state_unavailable``
OperationTimeout (other)               504     ``timeout``
=====================================  ======  =========================

Every 503 carries ``Retry-After``.
"""

from __future__ import annotations

import sys
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from burrow.api.body import malformed_json
from burrow.api.envelope import ApiError, error
from burrow.errors import (
    BrokerError,
    BurrowError,
    ConfigurationError,
    OperationTimeout,
    PayloadInvalid,
    PublishRejected,
    PublishTimeout,
    RpcError,
    RpcTimeout,
    StateError,
    TaskConflict,
    TaskNotFound,
    UnknownExchange,
    UnknownTask,
)

log = structlog.get_logger("burrow.api")

#: Seconds a client should wait before retrying after a 503.
RETRY_AFTER_UNAVAILABLE = 2

_HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def status_of(exc: BurrowError) -> tuple[int, str]:
    """The HTTP status and ``error.type`` of a burrow error."""
    table: list[tuple[type[BurrowError], int, str]] = [
        (UnknownTask, 404, "unknown_task"),
        (UnknownExchange, 404, "unknown_exchange"),
        (RpcTimeout, 504, "rpc_timeout"),
        (RpcError, 502, "rpc_error"),
        (TaskNotFound, 404, "task_not_found"),
        (PayloadInvalid, 422, "payload_invalid"),
        (TaskConflict, 409, "task_conflict"),
        (ConfigurationError, 422, "invalid_request"),
        (PublishTimeout, 503, "publish_timeout"),
        (OperationTimeout, 504, "timeout"),
        (PublishRejected, 503, "publish_rejected"),
        (BrokerError, 503, "broker_unavailable"),
        (StateError, 503, "state_unavailable"),
    ]
    for kind, status, type_ in table:
        if isinstance(exc, kind):
            return status, type_
    return 500, "internal_error"


def _details(exc: BurrowError) -> Any:
    if isinstance(exc, PayloadInvalid):
        return [{**e, "loc": ["body", "payload", *e.get("loc", [])]} for e in exc.errors]  # type: ignore[misc]
    if isinstance(exc, TaskConflict):
        return {"task_id": exc.task_id, "status": exc.status, "operation": exc.operation}
    if isinstance(exc, TaskNotFound):
        return {"task_id": exc.task_id}
    if isinstance(exc, UnknownTask):
        return {"task": exc.name}
    return None


def burrow_error_response(exc: BurrowError) -> Response:
    status, type_ = status_of(exc)
    headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)} if status == 503 else None
    if status >= 500:
        log.warning("request failed", error_type=type_, error=str(exc))
    message = "internal server error" if status == 500 else str(exc)
    return error(status, message, type_, _details(exc), headers=headers)


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """FastAPI/pydantic errors reduced to ``loc``, ``msg`` and ``type`` (inputs are left out:
    they may be large or not JSON-serialisable)."""
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": e.get("type")}
        for e in errors
    ]


#: FastAPI's 400 for a body its JSON parser failed on other than by syntax.
_FASTAPI_PARSE_ERROR = "There was an error parsing the body"


def _unparsed_body(exc: Exception) -> ApiError | None:
    """The 422 ``body.parse_json`` gives, for a body FastAPI itself could not parse (on
    routes that do not use ``body.JsonRoute``, such as the application's own): its
    ``json_invalid`` validation error, or its 400 for bytes that are not UTF-8, deep nesting
    or an over-long integer. None for any other error."""
    if isinstance(exc, RequestValidationError):
        errors = exc.errors()
        if len(errors) != 1 or errors[0].get("type") != "json_invalid":
            return None
        loc, ctx = errors[0].get("loc", ()), errors[0].get("ctx") or {}
        if len(loc) != 2 or not isinstance(loc[1], int) or not isinstance(exc.body, str):
            return None
        reason = str(ctx.get("error", "not JSON"))
        return malformed_json(exc.body, loc[1], reason[:1].lower() + reason[1:])
    if not isinstance(exc, HTTPException) or exc.detail != _FASTAPI_PARSE_ERROR:
        return None
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError) and isinstance(cause.object, bytes):
        prefix = cause.object[: cause.start].decode("utf-8", errors="replace")
        return malformed_json(
            prefix, len(prefix), f"invalid UTF-8 (byte 0x{cause.object[cause.start]:02x})"
        )
    if isinstance(cause, RecursionError):
        return malformed_json("", None, "nested too deeply")
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return malformed_json(
            "", None, f"an integer of more than {sys.get_int_max_str_digits()} digits"
        )
    return malformed_json("", None, "the body could not be read as JSON")


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    async def on_api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
        return error(exc.status, exc.message, exc.type, exc.details, headers=exc.headers)

    async def on_burrow_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BurrowError)  # noqa: S101
        return burrow_error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # noqa: S101
        unparsed = _unparsed_body(exc)
        if unparsed is not None:
            return await on_api_error(request, unparsed)
        type_ = _HTTP_TYPES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else type_.replace("_", " ")
        return error(
            exc.status_code, message, type_, headers=dict(exc.headers) if exc.headers else None
        )

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        unparsed = _unparsed_body(exc)
        if unparsed is not None:
            return await on_api_error(request, unparsed)
        details = validation_details(exc.errors())
        # Where and what, for the first few: "body.payload.qty: Input should be ...".
        what = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details[:5])
        more = f" (and {len(details) - 5} more)" if len(details) > 5 else ""
        return error(422, f"invalid request: {what}{more}", "validation_error", details)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(BurrowError, on_burrow_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
