"""``POST /api/v1/events/{exchange}``: publish an event.

Answers 202 with the event id once the broker confirmed the publish; 404 when no exchange of
that name is declared (by this app's subscribers or on the broker); 422 for a bad body, a
header a client may not send (``invalid_header``, naming it: ``CC``/``BCC``, the broker's
``x-`` names, burrow's own ``x-burrow-*``, an invalid ``traceparent``; see
``burrow.tasks.headers``), a routing key over 255 bytes in UTF-8 (``invalid_routing_key``),
an exchange name too long with the namespace or reserved (``delay``, ``control``), or an
event id with control characters; 503 when the broker is down. Everything is checked before
the publish, so a request can never make the broker close the publish channel that other
requests share. An event nobody is bound for is still 202 (not ``mandatory``).
Counted in ``burrow_events_published_total{exchange}``; traced (when tracing) as a server
span, parent of the event's publish span.
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
from burrow.broker.topology import check_routing_key
from burrow.errors import ConfigurationError, UnknownExchange
from burrow.tasks.envelope import trace_id_of
from burrow.tasks.headers import HeaderRefused, check_client_headers

PREFIX = "/api/v1"
#: The route template (the name of its server span).
ROUTE = f"{PREFIX}/events/{{exchange}}"

router = APIRouter(prefix=PREFIX, tags=["events"], route_class=JsonRoute)

ExchangeName = Annotated[str, name_path("The exchange name without the namespace prefix.")]


class PublishRequest(BaseModel):
    """One event to publish."""

    model_config = ConfigDict(extra="forbid")

    routing_key: str = Field(
        "",
        max_length=255,
        description="Ignored by fanout and headers. At most 255 bytes in UTF-8.",
    )
    headers: dict[str, str | int | bool] = Field(
        default_factory=dict,
        description=(
            "Message headers (what a headers exchange matches): at most 32, names of 1-128 "
            "letters, digits and _ . : -; text values of at most 1024 bytes. Refused (422): "
            "CC, BCC, names RabbitMQ interprets (x-death, x-match, x-delay, x-dead-letter-*, "
            "x-max-* ...), burrow's own x-burrow-* and burrow-*, reply_to and the like, and a "
            "traceparent that is not valid W3C trace context."
        ),
    )
    payload: Any = Field(None, description="Any JSON value; each subscriber validates it.")
    message_id: str | None = Field(
        None, min_length=1, max_length=200, description="Event id; subscribers dedupe by it."
    )


class Published(BaseModel):
    id: str
    exchange: str
    routing_key: str


@router.post(
    "/events/{exchange}",
    status_code=202,
    response_model=Envelope[Published],
    responses=error_responses(401, 403, 404, 413, 422, 429, 503),
    summary="Publish an event to a declared exchange",
)
async def publish_event(
    exchange: ExchangeName,
    body: PublishRequest,
    request: Request,
    state: ApiState = State,
    _who: str = Write,
) -> Response:
    # The request's span (if tracing) continues the HTTP traceparent when it is valid, else
    # the one in the body's headers, and is the parent of the publish span.
    headers = dict(body.headers)
    incoming: Any = request.headers.get("traceparent")
    if trace_id_of(incoming) is None:
        incoming = headers.get("traceparent")
    with http_span(request, ROUTE, str(incoming) if incoming else None) as span:
        _check(body, headers)
        await ensure_available(state)
        if span is not None:
            headers.pop("traceparent", None)
        try:
            event_id = await state.burrow.publish(
                exchange,
                body.routing_key,
                body.payload,
                headers=headers,
                message_id=body.message_id,
            )
        except UnknownExchange as exc:
            raise ApiError(404, "unknown_exchange", str(exc), {"exchange": exchange}) from None
        state.metrics.count_event(exchange)
        data = Published(id=event_id, exchange=exchange, routing_key=body.routing_key)
        tracing.set_http_status(span, 202)
        return ok(data.model_dump(), status=202, message="published")


def _check(body: PublishRequest, headers: dict[str, str | int | bool]) -> None:
    """Refuse what must not be published (422), before the broker is involved."""
    try:
        check_client_headers(headers)
    except HeaderRefused as exc:
        raise ApiError(422, "invalid_header", str(exc), {"header": exc.header}) from None
    try:
        check_routing_key(body.routing_key)
    except ConfigurationError as exc:
        raise ApiError(422, "invalid_routing_key", str(exc)) from None
