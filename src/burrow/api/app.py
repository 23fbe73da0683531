"""``create_app(burrow)``: the FastAPI app of a ``Burrow`` app, and ``serve`` to run it.

The lifespan opens Redis and the broker (best effort, bounded: an API started while either
is down still serves, answers 503 where it needs them, and ``/readyz`` says which is down)
and closes them at shutdown. Settings are read from ``burrow.settings``; nothing here reads
the environment or keeps global state (the metrics registry belongs to the app).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, Depends, FastAPI
from starlette.routing import BaseRoute, Mount

from burrow import tracing
from burrow.api import errors, ui
from burrow.api.deps import ApiState, bearer
from burrow.api.envelope import error_responses
from burrow.api.front import ApiFront, LeanRoutes
from burrow.api.guard import AppRoutes, EdgeGuard
from burrow.api.limits import DepthGuard, RateLimiter, parse_rate
from burrow.api.metrics import ApiMetrics
from burrow.api.routes import (
    asyncapi,
    events,
    health,
    lifecycle,
    ops,
    rpc,
    schedules,
    stream,
    tasks,
)
from burrow.api.security import check_bind, parse_api_keys
from burrow.app import Burrow
from burrow.config import Settings
from burrow.errors import BurrowError, ConfigurationError

log = structlog.get_logger("burrow.api")

DESCRIPTION = """\
Submit, track, cancel and retry burrow tasks. Every JSON answer is the envelope
`{"code", "message", "data"}` (plus `"error": {"type", "details"}` on errors), with `code`
equal to the HTTP status. With `BURROW_API_KEYS` set, `/api/v1`, `/metrics` and the
application's own routes (unless included as public) need `Authorization: Bearer <key>`.
Each registered task has its own typed submit operation.
The messaging side (task queues, event exchanges, RPC, dead letters) is described by the
AsyncAPI document [/asyncapi.json](/asyncapi.json), readable at [/asyncapi](/asyncapi).
"""


async def _open(app: Burrow, timeout: float) -> None:
    """Open Redis and the broker and declare the app's queues; log what is down."""
    try:
        async with asyncio.timeout(timeout):
            await app.state.open()
    except (BurrowError, TimeoutError) as exc:
        log.warning("Redis is unavailable at start; /readyz answers 503", error=str(exc))
    try:
        await app.broker.connect(timeout=timeout)
        for queue in app.registry.queues():
            await app.declare_queue(queue)
    except ConfigurationError:
        raise
    except (BurrowError, TimeoutError) as exc:
        log.warning("the broker is unavailable at start; /readyz answers 503", error=str(exc))


#: Paths burrow serves itself: an application router may not take them (or any below the
#: prefixes).
RESERVED_PREFIXES = ("/api/v1", "/ui")
RESERVED_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/asyncapi.json",
        "/asyncapi",
    }
)


def _check_own_paths(router: APIRouter) -> None:
    """Refuse an application route that would shadow or be shadowed by one of burrow's."""
    for route in router.routes:
        path = getattr(route, "path", "")
        if path in RESERVED_PATHS or any(
            path == p or path.startswith(p + "/") for p in RESERVED_PREFIXES
        ):
            raise ConfigurationError(
                f"the application route {path!r} uses a path burrow serves itself; "
                f"give the router another prefix (burrow owns {', '.join(RESERVED_PREFIXES)} "
                f"and {', '.join(sorted(RESERVED_PATHS))})"
            )


def create_app(burrow: Burrow) -> FastAPI:
    """Build the HTTP API for ``burrow``.

    Each task registered so far gets typed ``POST /api/v1/tasks/{name}`` and ``.../batch``
    operations; tasks registered later are still served by the generic routes. Routers the
    application added with ``Burrow.include_router`` are served too, after burrow's own,
    behind the same API keys unless included as public (``guard.EdgeGuard`` checks them,
    with the Host and Origin rules, in ``ApiFront``).

    Raises:
        ConfigurationError: ``BURROW_API_KEYS``, ``BURROW_API_RATE_LIMIT`` or
            ``BURROW_ALLOWED_HOSTS`` is malformed, or an application router uses a path
            burrow serves itself.
    """
    settings = burrow.settings
    tracing.tracer()  # decided now: a bad OTEL_* setting fails at start, not per request
    try:
        rate = parse_rate(settings.api_rate_limit)
    except ValueError as exc:
        raise ConfigurationError(f"BURROW_API_RATE_LIMIT: {exc}") from None
    metrics = ApiMetrics()
    burrow.broker.on_confirmed = metrics.publish.confirmed  # publish-confirm latency
    burrow.broker.on_reconnected = metrics.publish.reconnected
    state = ApiState(
        burrow=burrow,
        keys=parse_api_keys(settings.api_keys),
        metrics=metrics,
        limiter=RateLimiter(burrow, rate),
        depth=DepthGuard(burrow, settings.max_queue_depth, settings.api_timeout),
        timeout=settings.api_timeout,
        wait_cap=settings.api_wait_cap,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await _open(burrow, settings.api_timeout)
        restore_signals = stream.end_streams_on_exit_signals(_app)
        try:
            yield
        finally:
            restore_signals()
            await stream.close_hub(_app)
            await burrow.close()

    api = FastAPI(
        title="burrow",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's pages load Swagger UI and ReDoc from a CDN: ours serve them from the
        # package, so they work without internet (burrow.api.docs, installed by ui.mount).
        docs_url=None,
        redoc_url=None,
    )
    api.state.burrow_api = state
    errors.install(api)
    # Typed per-task routes first: Starlette matches in order, and the generic
    # /tasks/{name} would otherwise take them.
    typed = tasks.task_routes(burrow)
    api.include_router(typed)
    api.include_router(tasks.router)
    api.include_router(lifecycle.router)
    api.include_router(ops.router)
    api.include_router(schedules.router)
    api.include_router(events.router)
    api.include_router(rpc.router)
    api.include_router(health.router)
    api.include_router(stream.router)
    api.include_router(asyncapi.router)
    included = _include_app_routers(api, burrow)
    ui.mount(api)
    lean = LeanRoutes(f"{tasks.PREFIX}/tasks/")
    for route in typed.routes:
        if isinstance(route, tasks.LeanRoute):
            lean.add_typed(route)
    lean.set_generic(*tasks.generic_routes())
    # Metrics, body limits and the direct path to the submit handlers, in one middleware
    # (the only one of ours: metrics see every answer, including the body limit's 413).
    guard = EdgeGuard(
        state,
        allowed_hosts=settings.allowed_hosts,
        app_routes=AppRoutes(
            api.router.routes,
            included,
            reserved_prefixes=RESERVED_PREFIXES,
            reserved_paths=RESERVED_PATHS,
            paths=[p for router in burrow.routers for p in _route_paths(router)],
        ),
    )
    api.add_middleware(
        ApiFront, api=api, metrics=metrics, limit=settings.max_body_bytes, lean=lean, guard=guard
    )
    return api


#: Errors the application's routes answer in the envelope (``errors.install``), documented
#: so instead of FastAPI's own 422 body; routes that need a key add 401, 403 and 429.
APP_ERRORS = error_responses(422)
KEYED_APP_ERRORS = error_responses(401, 403, 422, 429)


def _include_app_routers(api: FastAPI, burrow: Burrow) -> list[tuple[BaseRoute, bool]]:
    """Serve the application's routers (``Burrow.include_router``), after burrow's own.
    Returns what each include added to ``api.router.routes``, with True where a key is
    needed (``guard.AppRoutes``)."""
    included: list[tuple[BaseRoute, bool]] = []
    for router in burrow.routers:
        _check_own_paths(router)
        public = any(router is r for r in burrow.public_routers)
        before = len(api.router.routes)
        if public:
            api.include_router(router, responses=APP_ERRORS)
        else:
            # The bearer dependency only documents the key (ApiFront checks it, before
            # the body is read).
            api.include_router(router, responses=KEYED_APP_ERRORS, dependencies=[Depends(bearer)])
        included += [(route, not public) for route in api.router.routes[before:]]
    return included


def _route_paths(router: APIRouter) -> list[str | None]:
    """The path each route of ``router`` matches (a mount: anything below it; None when
    not known)."""
    paths: list[str | None] = []
    for route in router.routes:
        path = getattr(route, "path", None)
        if isinstance(route, Mount):
            paths.append(f"{route.path}/{{path}}")
        else:
            paths.append(path if isinstance(path, str) else None)
    return paths


#: uvicorn settings shared by every way of serving the API (``serve``, ``burrow api``,
#: ``burrow up``).
UVICORN_OPTIONS: dict[str, Any] = {
    "proxy_headers": False,  # a client is its socket's address, not a header's claim
    "server_header": False,
    "timeout_keep_alive": 5,
    # Event streams end on the exit signal (routes/stream.py); this bounds the other
    # requests in flight when the server stops.
    "timeout_graceful_shutdown": 5,
}


def serve(
    app: Burrow,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    insecure: bool = False,
    log_level: str = "info",
) -> None:
    """Run the API with uvicorn until interrupted (blocking).

    Raises:
        ConfigurationError: ``host`` is not loopback, no API keys are set and ``insecure``
            is False (see ``security.check_bind``).
    """
    import uvicorn

    check_bind(app.settings, host, insecure)
    options = uvicorn_options(app.settings)
    uvicorn.run(create_app(app), host=host, port=port, log_level=log_level, **options)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What every way of serving the API (``serve``, ``burrow api``, ``burrow up``) passes
    to uvicorn: ``UVICORN_OPTIONS`` and ``protocol.EdgeProtocol`` with the request deadlines
    and head limits of ``settings``.

    The protocol is a ``functools.partial`` of a module-level class over a frozen dataclass,
    so uvicorn can pickle its config for ``--workers N``.
    """
    from burrow.api.protocol import EdgeLimits, EdgeProtocol

    limits = EdgeLimits.from_settings(settings)
    return {**UVICORN_OPTIONS, "http": functools.partial(EdgeProtocol, limits=limits)}
