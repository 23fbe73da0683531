"""Dependencies: the API's components (kept on ``app.state``), authorisation with scopes and
the per-key rate limit, and the availability check that keeps submits fast while the broker
or Redis is down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Path, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from burrow import tracing
from burrow.api.envelope import ApiError
from burrow.api.limits import DepthGuard, RateLimiter
from burrow.api.metrics import ApiMetrics
from burrow.api.security import ApiKey, Scope, find_key
from burrow.app import Burrow
from burrow.errors import BrokerUnavailable, StateUnavailable
from burrow.tasks.definition import NAME_RE


@dataclass(slots=True)
class ApiState:
    """Everything the routes need, built once by ``create_app``."""

    burrow: Burrow
    keys: list[ApiKey]
    metrics: ApiMetrics
    limiter: RateLimiter
    depth: DepthGuard
    timeout: float  # BURROW_API_TIMEOUT: bound of connects, reads and checks
    wait_cap: float  # BURROW_API_WAIT_CAP: longest ?wait=


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.burrow_api
    return state


bearer = HTTPBearer(
    auto_error=False,
    description="An API key from BURROW_API_KEYS (only checked when keys are configured).",
)

_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def bearer_token(request: Request) -> str | None:
    """The credentials of an ``Authorization: Bearer <key>`` header, as ``HTTPBearer`` reads
    them (None without the header, for another scheme or an empty key)."""
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


#: Where ``check_access`` keeps, in the ASGI scope, the scopes a request was admitted for.
_ADMITTED = "burrow.admitted"


async def check_access(request: Request, state: ApiState, scope: Scope, token: str | None) -> str:
    """Admit a request whose key (``token``) has ``scope`` and count it against the rate
    limit. Returns the caller's identity (a key id, or ``ip:<address>`` without keys).

    A request admitted for ``scope`` once is not checked (nor counted) again: a route may
    check the key before its body is read (``body.JsonRoute``) and its dependency again.

    401 without a key or for an unknown one, 403 for a key lacking ``scope``, 400 for a key
    in the query string, 429 over the rate limit.
    """
    admitted: dict[Scope, str] = request.scope.setdefault(_ADMITTED, {})
    if scope in admitted:
        return admitted[scope]
    admitted[scope] = identity = await _admit(request, state, scope, token)
    return identity


async def _admit(request: Request, state: ApiState, scope: Scope, token: str | None) -> str:
    query = request.scope.get("query_string")
    if query and ("api_key" in request.query_params or "apikey" in request.query_params):
        raise ApiError(
            400,
            "key_in_url",
            "send the API key as 'Authorization: Bearer <key>', not in the URL",
        )
    if state.keys:
        key = find_key(state.keys, token) if token is not None else None
        if key is None:
            raise ApiError(401, "unauthorized", "missing or unknown API key", headers=_UNAUTHORIZED)
        if scope not in key.scopes:
            raise ApiError(
                403,
                "forbidden",
                f"this API key lacks the {scope.value!r} scope",
                {"required": scope.value},
            )
        identity = key.id
    else:
        client = request.scope.get("client")
        identity = f"ip:{client[0] if client else 'unknown'}"
    if state.limiter.enabled:
        try:
            async with asyncio.timeout(state.timeout):
                await state.limiter.check(identity)
        except TimeoutError:
            raise StateUnavailable("rate limit: Redis did not answer in time") from None
        except ApiError:
            state.metrics.rejected.labels("rate").inc()
            raise
    return identity


class Authorize:
    """The dependency ``authorize(scope)`` returns: it runs ``check_access`` for ``scope``
    (the ``HTTPBearer`` parameter documents the security scheme in the OpenAPI schema)."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(
        self,
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> str:
        token = credentials.credentials if credentials else None
        return await check_access(request, api_state(request), self.scope, token)


def authorize(scope: Scope) -> Callable[..., Awaitable[str]]:
    """A dependency running ``check_access`` for ``scope`` (see ``Authorize``)."""
    return Authorize(scope)


def scope_of(dependant: Dependant) -> Scope | None:
    """The scope an endpoint's ``Read``/``Write``/``Admin`` dependency requires (None:
    the endpoint has none)."""
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Authorize):
            return dependency.call.scope
    return None


async def ensure_available(state: ApiState) -> None:
    """Open Redis and the broker if needed, each within ``state.timeout``.

    Raises:
        BrokerUnavailable: the broker is down or reconnecting (answered at once, no wait).
        StateUnavailable: Redis did not answer.
    """
    app = state.burrow
    # Fast path: both already open (the store stays open once opened; a broker connection
    # that drops reports itself not connected while it reconnects).
    if app.broker.connected and app.state._client is not None:
        return
    try:
        async with asyncio.timeout(state.timeout):
            await app.state.open()
    except TimeoutError:
        raise StateUnavailable(f"Redis did not answer within {state.timeout} s") from None
    if not app.broker.connected:
        # No connection yet: try once, bounded. A robust connection that is reconnecting
        # returns at once from connect() and stays "not connected": answer 503 right away.
        await app.broker.connect(timeout=state.timeout)
        if not app.broker.connected:
            raise BrokerUnavailable("the broker connection is down (reconnecting)")


async def _state(request: Request) -> ApiState:
    """``api_state`` as a dependency; async, so FastAPI does not send it to a thread pool
    on every request."""
    return api_state(request)


State = Depends(_state)
Read = Depends(authorize(Scope.READ))
Write = Depends(authorize(Scope.WRITE))
Admin = Depends(authorize(Scope.ADMIN))


def name_path(description: str) -> Any:
    """A path parameter that is a name (of an exchange, an RPC handler): the grammar
    ``check_name`` enforces when the name is registered (``NAME_RE``)."""
    return Path(min_length=1, max_length=200, pattern=NAME_RE.pattern, description=description)


@contextlib.contextmanager
def http_span(request: Request, route: str, traceparent: str | None = None) -> Iterator[Any]:
    """The SERVER span of a request to ``route`` (a template), when tracing: it continues
    ``traceparent`` (default: the request's header). An ``ApiError`` leaving the block
    records its status; the route records the status of the response it returns
    (``tracing.set_http_status``). Yields the span (None when tracing is off)."""
    incoming = request.headers.get("traceparent") if traceparent is None else traceparent
    with tracing.server_span(request.method, route, incoming) as span:
        try:
            yield span
        except ApiError as exc:
            tracing.set_http_status(span, exc.status)
            raise
