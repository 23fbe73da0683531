"""Callback URLs: the pure half of the SSRF guard (no DNS, no sockets).

A callback URL is called when its task ends (``burrow.webhooks``). It is checked when a
task is submitted and again at every delivery, after DNS resolution, because a name can
resolve to a different address by then (DNS rebinding). This module parses the URL
and decides about addresses it is given; ``burrow.webhooks.urls`` resolves names and calls
it.

Policy: ``http``/``https`` only, no userinfo, no spaces, control characters or
backslashes, at most 2048 characters, ports 80 and 443 only, and every address the host
resolves to must be public: loopback, private, link-local, CGNAT, multicast, reserved,
unspecified and documentation ranges are refused, also when hidden in an IPv4-mapped,
NAT64, 6to4 or Teredo IPv6 address. ``BURROW_CALLBACK_ALLOWLIST`` lifts the address and
port rules for the hosts, ``host:port`` pairs and CIDRs it lists.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from burrow.errors import ConfigurationError

#: Message header carrying a task's callback URL to the worker (task options travel in
#: headers, the body is the payload alone). The URL is also kept in the task record, for
#: cancellations.
HDR_CALLBACK = "x-burrow-callback-url"
MAX_URL_LENGTH = 2048
ALLOWED_PORTS = frozenset({80, 443})
#: The well-known NAT64 prefix (RFC 6052): ``64:ff9b::a.b.c.d`` reaches IPv4 ``a.b.c.d``.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CallbackRefused(ConfigurationError, ValueError):
    """A callback URL burrow will not call; the message says why."""


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    """A parsed callback URL: ``host`` is normalised (lowercase, IDNA, no trailing dot),
    ``port`` is the effective port (80/443 when the URL has none)."""

    url: str
    scheme: str
    host: str
    port: int
    explicit_port: bool


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One ``BURROW_CALLBACK_ALLOWLIST`` entry: a host name or a network, optionally with
    a port (``127.0.0.1:18080``, ``[::1]:8080``, ``hooks.internal:8443``)."""

    host: str | None = None
    network: Network | None = None
    port: int | None = None


def parse_callback_url(url: str) -> CallbackTarget:
    """Parse and normalise ``url`` without resolving it.

    Raises:
        CallbackRefused: too long, spaces or control characters, not http(s), userinfo,
            no host, or a malformed port.
    """
    if not isinstance(url, str) or not url:
        raise CallbackRefused("callback_url must be a non-empty string")
    if len(url) > MAX_URL_LENGTH or any(ord(c) < 0x21 or c in "\\\x7f" for c in url):
        raise CallbackRefused(
            f"callback_url is longer than {MAX_URL_LENGTH} characters or has spaces, "
            "control characters or backslashes"
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise CallbackRefused("callback_url must be an http or https URL")
    if "@" in parts.netloc:
        raise CallbackRefused("callback_url must not contain userinfo (user:password@)")
    host = _normalise_host(parts.hostname or "")
    try:
        port = parts.port
    except ValueError:
        raise CallbackRefused("callback_url has an invalid port") from None
    default = 443 if scheme == "https" else 80
    return CallbackTarget(url, scheme, host, port or default, port is not None)


def _normalise_host(raw: str) -> str:
    host = raw.rstrip(".").lower()
    if not host:
        raise CallbackRefused("callback_url has no host")
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise CallbackRefused(f"callback_url host {raw!r} is not a valid name") from None


def parse_allowlist(value: str) -> list[AllowEntry]:
    """Parse ``BURROW_CALLBACK_ALLOWLIST``: comma-separated host names, addresses or CIDRs,
    each optionally with ``:port`` (IPv6 addresses in brackets when a port is given).

    Raises:
        ConfigurationError: an entry with a malformed port.
    """
    entries: list[AllowEntry] = []
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        host, port = _split_port(entry)
        try:
            entries.append(AllowEntry(network=ipaddress.ip_network(host, strict=False), port=port))
        except ValueError:
            entries.append(AllowEntry(host=host.rstrip("."), port=port))
    return entries


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
    else:
        return entry, None
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigurationError(
            f"BURROW_CALLBACK_ALLOWLIST: entry {entry!r} has an invalid port; use host, "
            "host:port, a CIDR, or [v6 address]:port"
        )
    return host, int(port_text)


def is_allowed(
    target: CallbackTarget, addresses: list[Address], allowlist: list[AllowEntry]
) -> bool:
    """True when an allowlist entry covers ``target``: its host name (any address), or a
    network holding every one of ``addresses``; an entry with a port only that port."""
    for entry in allowlist:
        if entry.port is not None and entry.port != target.port:
            continue
        if entry.host is not None and entry.host == target.host:
            return True
        if entry.network is not None and addresses and all(a in entry.network for a in addresses):
            return True
    return False


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches (IPv4-mapped, NAT64, 6to4, Teredo)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public(address: Address) -> bool:
    """True for a globally reachable unicast address, also behind any IPv4 embedding."""
    inner = embedded_ipv4(address)
    if inner is not None and not is_public(inner):
        return False
    return address.is_global and not address.is_multicast


def check_target(
    target: CallbackTarget, addresses: list[Address], allowlist: list[AllowEntry]
) -> None:
    """Refuse ``target`` unless allow-listed, or on port 80/443 with only public addresses.

    Raises:
        CallbackRefused: with the reason.
    """
    if is_allowed(target, addresses, allowlist):
        return
    if target.port not in ALLOWED_PORTS:
        raise CallbackRefused(
            "callback_url may only use ports 80 and 443 (other ports need an entry in "
            "BURROW_CALLBACK_ALLOWLIST)"
        )
    if not addresses:
        raise CallbackRefused(f"callback_url host {target.host!r} does not resolve")
    for address in addresses:
        if not is_public(address):
            raise CallbackRefused(
                f"callback_url host {target.host!r} resolves to {address}, which is not a "
                "public address (allow it with BURROW_CALLBACK_ALLOWLIST if it is yours)"
            )


def callback_header(headers: Mapping[str, Any] | None) -> str | None:
    """The callback URL a task message's headers carry (``HDR_CALLBACK``), or None."""
    value = (headers or {}).get(HDR_CALLBACK)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) and value else None


__all__ = [
    "HDR_CALLBACK",
    "AllowEntry",
    "CallbackRefused",
    "CallbackTarget",
    "callback_header",
    "check_target",
    "embedded_ipv4",
    "is_allowed",
    "is_public",
    "parse_allowlist",
    "parse_callback_url",
]
