"""``ApiFront``: the API's one ASGI middleware, outermost of ours.

For every HTTP request it

* refuses what ``guard.EdgeGuard`` refuses (a foreign ``Host``, a cross-site write without
  API keys, an application route without its key), before anything reads the body;
* counts and times it (``burrow_http_requests_total``, ``burrow_http_request_duration_seconds``)
  and turns an unexpected exception into a logged 500 envelope (no traceback leaves the
  process);
* caps the body (``BURROW_MAX_BODY_BYTES``): 413 before reading when ``Content-Length`` says
  so, and as soon as the running count passes the cap for chunked bodies (the 413 closes
  the connection); and refuses bodies that are not JSON in UTF-8 (415);
* sends ``POST`` requests for the submit routes (``routes.tasks.LeanRoute``) straight to
  their handlers. Everything else goes down FastAPI's stack. The submit path is the hot one:
  this skips route matching over every route, the exception and exit-stack layers and the
  send wrappers each adds, with the same answers (handler errors are answered by the app's
  own exception handlers, as ``ExceptionMiddleware`` would).

One middleware instead of two (metrics, then limits) saves a layer on every request too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from burrow.api.envelope import error_body
from burrow.api.guard import EdgeGuard
from burrow.api.limits import BodyTooLarge, content_length, json_or_empty
from burrow.api.metrics import ApiMetrics, route_of
from burrow.api.routes.tasks import Handler, LeanRoute

log = structlog.get_logger("burrow.api")

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True, slots=True)
class _Lean:
    route: LeanRoute
    handler: Handler


class LeanRoutes:
    """Which paths ``ApiFront`` sends to a submit handler directly: the per-task routes by
    exact path, and the generic ``{prefix}/{name}`` and ``{prefix}/{name}/batch`` (the
    router matches the per-task routes first, so do we)."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._exact: dict[str, _Lean] = {}
        self._one: _Lean | None = None
        self._batch: _Lean | None = None

    def add_typed(self, route: LeanRoute) -> None:
        self._exact.setdefault(route.path, _Lean(route, route.get_route_handler()))

    def set_generic(self, one: LeanRoute, batch: LeanRoute) -> None:
        self._one = _Lean(one, one.get_route_handler())
        self._batch = _Lean(batch, batch.get_route_handler())

    def match(self, path: str) -> tuple[_Lean, dict[str, Any]] | None:
        """The handler for ``path`` and its path parameters, or None (not a submit path)."""
        lean = self._exact.get(path)
        if lean is not None:
            return lean, {}
        if not path.startswith(self._prefix):
            return None
        rest = path[len(self._prefix) :]
        if rest.endswith("/batch"):
            name, target = rest[:-6], self._batch
        else:
            name, target = rest, self._one
        if not name or "/" in name or target is None:
            return None
        return target, {"name": name}


class ApiFront:
    """See the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api: FastAPI,
        metrics: ApiMetrics,
        limit: int,
        lean: LeanRoutes,
        guard: EdgeGuard,
    ) -> None:
        self.app = app
        self.guard = guard
        self.api = api
        self.metrics = metrics
        self.limit = limit
        self.lean = lean
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket" and await self.guard.check(scope) is not None:
                # Closing before accepting answers the handshake with 403.
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started = True
            await send(message)

        try:
            await self._limited(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in the HTTP API", path=scope.get("path"))
            if started:
                raise
            status = 500
            await _send_error(send, 500, "internal server error", "internal_error")
        finally:
            self._observe(scope, status, time.perf_counter() - start)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = await self.guard.check(scope)  # Host, Origin, keys of application routes
        if refused is not None:
            await refused(scope, receive, send)
            return
        method = scope["method"]
        length = content_length(scope)
        if length is not None and length > self.limit:
            await self._too_large(send)
            return
        if method in _BODY_METHODS and not json_or_empty(scope, length):
            await _send_error(
                send,
                415,
                "request bodies must be application/json (UTF-8)",
                "unsupported_media_type",
            )
            return
        counting = self._counting(receive)
        try:
            found = None
            if method == "POST" and not scope.get("root_path"):
                found = self.lean.match(scope["path"])
            if found is None:
                if scope["path"] == "/metrics":  # fresh queue depths for the scrape
                    await self.metrics.refresh_depths(self.api.state.burrow_api.burrow)
                await self.app(scope, counting, send)
            else:
                await self._dispatch(scope, counting, send, *found)
        except BodyTooLarge:
            # FastAPI normally answers it (it is an HTTPException); this covers endpoints
            # that read the body themselves. Nothing has been sent at that point.
            await self._too_large(send)

    async def _dispatch(
        self, scope: Scope, receive: Receive, send: Send, lean: _Lean, params: dict[str, Any]
    ) -> None:
        """What the router, ``request_response`` and ``ExceptionMiddleware`` do for a
        ``LeanRoute``, minus what a lean handler does not use."""
        scope["route"] = lean.route
        scope["endpoint"] = lean.route.endpoint
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            response = await lean.handler(request)
        except Exception as exc:
            handler = _exception_handler(self.api, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.limit

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return counting_receive

    async def _too_large(self, send: Send) -> None:
        await _send_error(
            send,
            413,
            f"request body larger than {self.limit} bytes",
            "body_too_large",
            {"limit": self.limit},
            close=True,
        )

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        """Count and time the request (labelled children are looked up once per label set)."""
        route = route_of(scope)
        method = str(scope.get("method", ""))
        counter = self._requests.get((method, route, status))
        if counter is None:
            counter = self.metrics.requests.labels(method, route, str(status))
            self._requests[method, route, status] = counter
        counter.inc()
        histogram = self._latency.get((method, route))
        if histogram is None:
            histogram = self._latency[method, route] = self.metrics.latency.labels(method, route)
        histogram.observe(seconds)


def _exception_handler(api: FastAPI, exc: Exception) -> Any:
    """The app's handler for ``exc`` (by class, most specific first), as Starlette finds it."""
    handlers = api.exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers and cls is not Exception:
            return handlers[cls]
    return None


async def _send_error(
    send: Send, status: int, message: str, type_: str, details: Any = None, *, close: bool = False
) -> None:
    body = error_body(status, message, type_, details)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
