"""``EdgeGuard``: what ``front.ApiFront`` checks on every request before anything reads it.

* **Host** (DNS rebinding). A page on ``evil.example`` can make the victim's browser send
  requests to a loopback API by pointing its own name at ``127.0.0.1``; the browser then sends
  ``Host: evil.example``. The API answers only Host names it knows: ``localhost``, any IP
  address (a rebinding page reaches us only through a name it controls, never through an IP
  literal), the address the connection arrived on, and the names in
  ``BURROW_ALLOWED_HOSTS``. Anything else gets 421 ``misdirected_request`` (two ``Host``
  headers: 400, since proxies may read either one). The check applies without API keys, on
  loopback connections and whenever ``BURROW_ALLOWED_HOSTS`` is set; it is skipped for a
  keyed API reached on a network address (an ingress or service name we cannot know: every
  route that matters needs a key there). ``BURROW_ALLOWED_HOSTS=*`` turns it off.
* Websocket handshakes get the same Host check, and the Origin check whatever the keys
  (browsers open websockets to any origin and send no bearer key on them).
* **Origin** (cross-site request forgery). Without API keys, a request's network position is
  its only credential, and any web page can make a browser ``POST`` to ``127.0.0.1``. So a
  ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` whose ``Origin`` is not the API's own (its
  authority equals the ``Host`` header, or its host is in ``BURROW_ALLOWED_HOSTS``), or whose
  ``Sec-Fetch-Site`` is ``cross-site`` or ``same-site``, gets 403 ``cross_origin``.
  Requests without either header (curl, SDKs, the CLI) pass. With keys the check is off: a
  browser never attaches an ``Authorization: Bearer`` header on its own, so a forged request
  carries no credential.
* **The application's own routes** (``Burrow.include_router``) need a key like ``/api/v1``
  (``read`` for ``GET``/``HEAD``, ``write`` for any other method), with the same rate limit
  and the same 400 for a key in the query string, unless the router was included with
  ``public=True``. The route a request goes to is found the way Starlette's router finds it
  (first full match in order), and the key is checked before the body is read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope as AsgiScope

from burrow.api.deps import ApiState, bearer_token, check_access
from burrow.api.envelope import ApiError, error
from burrow.api.errors import burrow_error_response
from burrow.api.security import Scope, is_loopback
from burrow.errors import BurrowError, ConfigurationError

#: Names that always mean this machine.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: Methods a forged cross-site request could change state with.
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_READ_METHODS = frozenset({"GET", "HEAD"})
_FOREIGN_FETCH_SITES = frozenset({b"cross-site", b"same-site"})
#: Host values remembered per guard (their verdicts never change for a given connection
#: address); bounded so a client sending a new Host each time cannot grow it.
_CACHE_SIZE = 256


def parse_allowed_hosts(value: str) -> frozenset[str]:
    """Parse ``BURROW_ALLOWED_HOSTS``: comma-separated host names or addresses, or ``*``.

    Raises:
        ConfigurationError: an entry with a scheme, a path or a port (list bare names).
    """
    names: set[str] = set()
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if "/" in entry or " " in entry or (entry.count(":") == 1 and not entry.startswith("[")):
            raise ConfigurationError(
                f"BURROW_ALLOWED_HOSTS: {raw.strip()!r} is not a host name; list bare names "
                "or addresses without scheme or port, e.g. api.example.com,10.0.0.5"
            )
        names.add(_normal(entry))
    return frozenset(names)


def host_name(authority: str) -> str:
    """The host of a ``Host`` header value or an origin's authority: lower case, without
    port, IPv6 brackets or a trailing dot (``[::1]:8000`` -> ``::1``)."""
    value = authority.strip().lower()
    if value.startswith("["):
        return _normal(value[1 : value.find("]")] if "]" in value else value[1:])
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return _normal(value)


def _normal(name: str) -> str:
    return name.strip("[]").rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Heads:
    host: bytes | None
    origin: bytes | None
    fetch_site: bytes | None
    hosts: int


def _heads(scope: AsgiScope) -> _Heads:
    host = origin = fetch_site = None
    hosts = 0
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
            hosts += 1
        elif name == b"origin":
            origin = value
        elif name == b"sec-fetch-site":
            fetch_site = value
    return _Heads(host, origin, fetch_site, hosts)


class AppRoutes:
    """Which requests go to an application route that needs a key.

    Starlette's router takes the first route that matches fully, else the first that
    matches but for the method (a 405); this finds the same one. burrow's own routes live
    under its reserved paths only (``create_app`` refuses application routes there), so for
    any other path only the application's routes are tried, and for a reserved path every
    route is, in order, but only when an application route could match it at all (through
    a path parameter or a mount).
    """

    def __init__(
        self,
        routes: Sequence[BaseRoute],
        included: Sequence[tuple[BaseRoute, bool]],
        *,
        reserved_prefixes: tuple[str, ...],
        reserved_paths: frozenset[str],
        paths: Iterable[str | None],
    ) -> None:
        """
        Args:
            routes: every route of the app, in dispatch order.
            included: the entries ``include_router`` added for the application's routers,
                each with True when its routes need a key.
            reserved_prefixes: path prefixes burrow serves (``/api/v1``).
            reserved_paths: single paths burrow serves (``/healthz``).
            paths: the path of every application route (None for one whose path is not
                known, such as a nested router): what could match a reserved path.
        """
        self._flags = {id(route): protected for route, protected in included}
        self._all = tuple(routes)
        self._app = tuple(route for route, _ in included)
        self._prefixes = tuple(p + "/" for p in reserved_prefixes)
        self._exact = reserved_paths | frozenset(reserved_prefixes)
        self.protects = any(protected for _, protected in included)
        self._may_shadow = _may_match(paths, [*self._exact, *self._prefixes])

    def needs_key(self, scope: AsgiScope) -> bool:
        """True when the router would send the request to a route that needs a key."""
        path = scope["path"]
        if path in self._exact or path.startswith(self._prefixes):
            if not self._may_shadow:
                return False
            candidates = self._all
        else:
            candidates = self._app
        partial: BaseRoute | None = None
        for route in candidates:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return self._flags.get(id(route), False)
            if match is Match.PARTIAL and partial is None:
                partial = route
        return partial is not None and self._flags.get(id(partial), False)


def _may_match(paths: Iterable[str | None], reserved: Sequence[str]) -> bool:
    """Whether a route with one of ``paths`` could match a path starting with one of
    ``reserved``: only through a parameter whose literal start is a start of one."""
    for path in paths:
        if path is None:
            return True
        head, brace, _ = path.partition("{")
        if brace and any(start.startswith(head) for start in reserved):
            return True
    return False


class EdgeGuard:
    """See the module docstring. Built once by ``create_app``."""

    def __init__(
        self, state: ApiState, *, allowed_hosts: str, app_routes: AppRoutes | None = None
    ) -> None:
        """
        Args:
            state: the API's components (keys, rate limiter).
            allowed_hosts: ``BURROW_ALLOWED_HOSTS``.
            app_routes: the application's routes (none: every route is burrow's own).

        Raises:
            ConfigurationError: ``allowed_hosts`` is malformed.
        """
        self.state = state
        self.allowed = parse_allowed_hosts(allowed_hosts)
        self.any_host = "*" in self.allowed
        self.explicit = bool(self.allowed)
        self.keyed = bool(state.keys)
        self.app_routes = app_routes if app_routes is not None and app_routes.protects else None
        self._verdicts: dict[tuple[bytes, str], bool] = {}

    async def check(self, scope: AsgiScope) -> Response | None:
        """The error answer refusing an HTTP or websocket request, or None to let it
        through (a refused websocket handshake is closed instead)."""
        heads = _heads(scope)
        refusal = self._check_host(scope, heads) or self._check_origin(scope, heads)
        if refusal is None and self.app_routes is not None and self.app_routes.needs_key(scope):
            refusal = await self._check_key(scope)
        return refusal

    # -- Host ------------------------------------------------------------------------------

    def _check_host(self, scope: AsgiScope, heads: _Heads) -> Response | None:
        if heads.hosts > 1:
            return error(400, "a request carries one Host header, not several", "bad_request")
        if heads.host is None or self.any_host:
            return None  # HTTP/1.0 without Host: not a browser
        server = scope.get("server")
        local = str(server[0]).lower() if server else ""
        if not (self.explicit or not self.keyed or is_loopback(local)):
            return None
        key = (heads.host, local)
        allowed = self._verdicts.get(key)
        if allowed is None:
            allowed = self._host_allowed(heads.host.decode("latin-1"), local)
            if len(self._verdicts) >= _CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[key] = allowed
        if allowed:
            return None
        shown = heads.host.decode("latin-1")[:100]
        return error(
            421,
            f"this API does not answer to Host {shown!r}; if that is a name it is served "
            "as, add it to BURROW_ALLOWED_HOSTS",
            "misdirected_request",
        )

    def _host_allowed(self, authority: str, local: str) -> bool:
        name = host_name(authority)
        return bool(name) and (
            name in LOOPBACK_NAMES or name in self.allowed or name == local or _is_ip(name)
        )

    # -- Origin ----------------------------------------------------------------------------

    def _check_origin(self, scope: AsgiScope, heads: _Heads) -> Response | None:
        if self.keyed and scope["type"] == "http":
            return None
        if scope["type"] == "http" and scope["method"] not in STATE_CHANGING:
            return None
        # Websockets are checked for every handshake: browsers open them to any origin.
        foreign = heads.fetch_site in _FOREIGN_FETCH_SITES
        if not foreign and heads.origin is not None:
            foreign = not self._own_origin(heads.origin, heads.host)
        if not foreign:
            return None
        return error(
            403,
            "cross-site requests may not change anything here: send the request from the "
            "API's own pages or without an Origin header (or set BURROW_API_KEYS)",
            "cross_origin",
        )

    def _own_origin(self, origin: bytes, host: bytes | None) -> bool:
        text = origin.decode("latin-1").strip().lower()
        scheme, sep, authority = text.partition("://")
        if not sep or scheme not in ("http", "https") or not authority or "/" in authority:
            return False  # "null" (sandboxed frames, file:) and anything malformed
        if host is not None and authority == host.decode("latin-1").strip().lower():
            return True
        return host_name(authority) in self.allowed

    # -- the application's routes ----------------------------------------------------------

    async def _check_key(self, scope: AsgiScope) -> Response | None:
        if scope["type"] == "http":
            request = Request(scope)
            needed = Scope.READ if scope["method"] in _READ_METHODS else Scope.WRITE
        else:  # a websocket handshake is a GET; what it then sends may change things
            request = Request({**scope, "type": "http", "method": "GET"})
            needed = Scope.WRITE
        try:
            await check_access(request, self.state, needed, bearer_token(request))
        except ApiError as exc:
            return error(exc.status, exc.message, exc.type, exc.details, headers=exc.headers)
        except BurrowError as exc:  # the rate limiter could not reach Redis: 503
            return burrow_error_response(exc)
        return None
