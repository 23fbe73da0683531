"""API keys and scopes, the loopback rule, and the SSRF check of callback URLs.

``BURROW_API_KEYS`` is a comma-separated list; each entry is ``key`` (every scope) or
``key:scope+scope`` with scopes ``read`` (GETs), ``write`` (submit, cancel, retry, events) and
``admin`` (dead-letter replay and purge, anything destructive). A request names its key as
``Authorization: Bearer <key>``. Keys are compared in constant time against every configured
key (``hmac.compare_digest``, never an early exit), and are never logged: the rest of the
API only sees a key's ``id``, a short hash.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from burrow.config import Settings
from burrow.errors import ConfigurationError
from burrow.tasks.callbacks import CallbackRefused, parse_allowlist
from burrow.webhooks.urls import check_callback_url, check_submitted_callback


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
    """Refuse to serve the API beyond loopback without API keys.

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
# The checks live in burrow.tasks.callbacks (pure) and burrow.webhooks.urls (DNS), shared
# with Burrow.submit and the workers, which check again at every delivery.

__all__ = [
    "ALL_SCOPES",
    "ApiKey",
    "CallbackRefused",
    "Scope",
    "check_bind",
    "check_callback_url",
    "check_submitted_callback",
    "find_key",
    "is_loopback",
    "parse_allowlist",
    "parse_api_keys",
]
