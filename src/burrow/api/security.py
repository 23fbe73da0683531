"""API keys and scopes, the loopback rule, and the SSRF check of callback URLs.

``BURROW_API_KEYS`` is a comma-separated list; each entry is ``key`` (every scope) or
``key:scope+scope`` with scopes ``read`` (GETs), ``write`` (submit, cancel, retry, events) and
``admin`` (dead-letter replay and purge, anything destructive). A request names its key as
``Authorization: Bearer <key>``. Keys are compared in constant time against every configured
key (``hmac.compare_digest``, never an early exit), and are never logged: the rest of the
API only sees a key's ``id``, a short hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from burrow.config import Settings
from burrow.errors import ConfigurationError


class Scope(StrEnum):
    """What a key may do."""

    READ = "read"  # GET anything under /api/v1
    WRITE = "write"  # submit, batch, cancel, retry, publish events
    ADMIN = "admin"  # replay and purge dead letters


ALL_SCOPES = frozenset(Scope)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A configured key. ``id`` (a hash prefix) stands for it in Redis keys and metrics."""

    secret: bytes
    scopes: frozenset[Scope]

    @property
    def id(self) -> str:
        return hashlib.sha256(self.secret).hexdigest()[:16]

    def __repr__(self) -> str:  # never print the secret
        return f"ApiKey(id={self.id!r}, scopes={sorted(self.scopes)!r})"


def parse_api_keys(value: str) -> list[ApiKey]:
    """Parse ``BURROW_API_KEYS``.

    Raises:
        ConfigurationError: an empty key, an unknown scope, or a key listed twice. The message
            never contains the key itself.
    """
    keys: list[ApiKey] = []
    seen: set[bytes] = set()
    for n, raw in enumerate(value.split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        secret, sep, scope_text = entry.rpartition(":") if ":" in entry else (entry, "", "")
        secret = secret.strip()
        if not secret:
            raise ConfigurationError(f"BURROW_API_KEYS: entry {n} has an empty key")
        scopes = ALL_SCOPES
        if sep:
            names = {s.strip() for s in scope_text.split("+") if s.strip()}
            unknown = names - {s.value for s in Scope}
            if unknown or not names:
                raise ConfigurationError(
                    f"BURROW_API_KEYS: entry {n} has unknown scopes {sorted(unknown)}; "
                    "use key or key:read+write+admin"
                )
            scopes = frozenset(Scope(s) for s in names)
        encoded = secret.encode()
        if encoded in seen:
            raise ConfigurationError(f"BURROW_API_KEYS: entry {n} repeats an earlier key")
        seen.add(encoded)
        keys.append(ApiKey(encoded, scopes))
    return keys


def find_key(keys: list[ApiKey], presented: str) -> ApiKey | None:
    """The configured key equal to ``presented``, compared in constant time against all."""
    candidate = presented.encode()
    found: ApiKey | None = None
    for key in keys:
        # No early exit: the time taken does not depend on which key (if any) matched.
        if hmac.compare_digest(key.secret, candidate):
            found = key
    return found


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str, insecure: bool) -> None:
    """Refuse to serve the API beyond loopback without API keys (SPEC §6).

    Raises:
        ConfigurationError: ``host`` is not loopback, no ``BURROW_API_KEYS`` are set, and
            ``insecure`` is False.
    """
    if insecure or is_loopback(host):
        return
    if not parse_api_keys(settings.api_keys):
        raise ConfigurationError(
            f"refusing to serve the HTTP API on {host} without API keys: anyone who can reach "
            "it could submit and purge tasks. Set BURROW_API_KEYS (e.g. "
            "BURROW_API_KEYS='<secret>' or '<secret>:read'), bind to 127.0.0.1, or pass "
            "--insecure if something in front of it authenticates requests."
        )


# -- callback URLs (SSRF) ------------------------------------------------------------------


class CallbackRefused(ValueError):
    """A callback URL burrow will not call (the message says why)."""


def parse_allowlist(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network | str]:
    """``BURROW_CALLBACK_ALLOWLIST``: comma-separated host names and CIDRs."""
    allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network | str] = []
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        try:
            allowed.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            allowed.append(entry.rstrip("."))
    return allowed


def _allowed(
    host: str,
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    allowlist: list[ipaddress.IPv4Network | ipaddress.IPv6Network | str],
) -> bool:
    for entry in allowlist:
        if isinstance(entry, str):
            if entry == host:
                return True
        elif addresses and all(a in entry for a in addresses):
            return True
    return False


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    with contextlib.suppress(ValueError):
        return [ipaddress.ip_address(host)]
    with contextlib.suppress(OSError):  # inet_aton reads 2130706433, 0x7f000001, 127.1
        return [ipaddress.IPv4Address(socket.inet_aton(host))]
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _host_and_port(url: str) -> tuple[str, int | None]:
    if len(url) > 2048 or any(ord(c) < 0x21 or c == "\\" for c in url):
        raise CallbackRefused("callback_url is too long or has spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise CallbackRefused("callback_url must be http or https")
    if "@" in parts.netloc:
        raise CallbackRefused("callback_url must not contain userinfo")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise CallbackRefused("callback_url has no host")
    try:
        return host, parts.port
    except ValueError:
        raise CallbackRefused("callback_url has an invalid port") from None


def check_callback_url(url: str, allowlist_text: str) -> str:
    """Vet a callback URL against SSRF; returns it normalised.

    Only ``http``/``https`` without userinfo or control characters, on ports 80/443 (any port
    for allow-listed hosts), to hosts that resolve only to public addresses (loopback,
    private, link-local, reserved and multicast ranges are refused) unless allow-listed.
    This is the registration-time check; delivery must check again (RELIABILITY §4.1).

    Raises:
        CallbackRefused: with the reason.
    """
    host, port = _host_and_port(url)
    addresses = _addresses(host)
    allowlist = parse_allowlist(allowlist_text)
    if _allowed(host, addresses, allowlist):
        return url
    if port not in (None, 80, 443):
        raise CallbackRefused("callback_url may only use ports 80 and 443")
    if not addresses:
        raise CallbackRefused(f"callback_url host {host!r} does not resolve")
    for address in addresses:
        mapped = getattr(address, "ipv4_mapped", None) or address
        if not mapped.is_global or mapped.is_multicast:
            raise CallbackRefused(f"callback_url host {host!r} is not a public address")
    return url
