"""``POST /api/v1/rpc/{name}``: call an RPC handler and answer with its reply.

200 with the reply as ``data``; 504 (``rpc_timeout``) when no reply came within the
timeout; 502 (``rpc_error``, details ``{"type", "message"}``) when the handler raised or
refused the payload; 404 (``unknown_rpc``) when no server ever declared the queue; 503
when the broker is down; 422 when this app knows the handler and the payload does not validate.
Counted in ``burrow_rpc_calls_total{name,outcome}`` (replied, error, timeout; not unknown
names); traced (when tracing) as a server span, parent of the call's client span.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from burrow import tracing
from burrow.api.body import JsonRoute
from burrow.api.deps import ApiState, State, Write, ensure_available, http_span, name_path
from burrow.api.envelope import ApiError, Envelope, error_responses, ok
from burrow.api.longpoll import while_connected
from burrow.errors import RpcError, RpcTimeout, Unroutable
from burrow.messaging import CALL_TIMEOUT

PREFIX = "/api/v1"
#: The route template (the name of its server span).
ROUTE = f"{PREFIX}/rpc/{{name}}"
#: Longest timeout a caller may ask for.
MAX_TIMEOUT = 300.0

router = APIRouter(prefix=PREFIX, tags=["rpc"], route_class=JsonRoute)

RpcName = Annotated[str, name_path("The RPC handler's name.")]


class CallRequest(BaseModel):
    """One RPC call."""

    model_config = ConfigDict(extra="forbid")

    payload: Any = Field(None, description="The request, validated by the handler.")
    timeout: float = Field(
        CALL_TIMEOUT, gt=0, le=MAX_TIMEOUT, description="Seconds to wait for the reply."
    )


@router.post(
    "/rpc/{name}",
    response_model=Envelope[Any],
    responses={
        **error_responses(401, 403, 404, 413, 422, 429, 503),
        502: {"description": "The handler raised (details: type and message)"},
        504: {"description": "No reply within the timeout"},
    },
    summary="Call an RPC handler and wait for its reply",
)
async def call_rpc(
    name: RpcName,
    body: CallRequest,
    request: Request,
    state: ApiState = State,
    _who: str = Write,
) -> Response:
    # The request's span (if tracing) is the parent of the call's client span.
    with http_span(request, ROUTE) as span:
        await ensure_available(state)
        try:
            # Bounded by the timeout, and ended early when the client goes away.
            calling = state.burrow.call(name, body.payload, timeout=body.timeout)
            reply = await while_connected(request, calling)
        except RpcTimeout as exc:
            state.metrics.count_rpc(name, "timeout")
            raise ApiError(504, "rpc_timeout", str(exc), {"timeout": body.timeout}) from None
        except RpcError as exc:
            state.metrics.count_rpc(name, "error")
            details = {"type": exc.type, "message": exc.message}
            raise ApiError(502, "rpc_error", str(exc), details) from None
        except Unroutable as exc:  # no queue: no handler of that name was ever deployed
            raise ApiError(404, "unknown_rpc", str(exc), {"rpc": name}) from None
        state.metrics.count_rpc(name, "replied")
        tracing.set_http_status(span, 200)
        return ok(reply)
