"""Callback URLs: the resolving half of the SSRF guard.

``check_callback_url`` is the submit-time check (the API and ``Burrow.submit``);
``vet`` is the delivery-time check, which resolves the host once and returns the address
the delivery then connects to (pinned), so a DNS answer that changes between the check and
the connect (rebinding) cannot steer the request to a private address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass

from burrow.config import Settings
from burrow.tasks.callbacks import (
    Address,
    AllowEntry,
    CallbackRefused,
    CallbackTarget,
    check_target,
    parse_allowlist,
    parse_callback_url,
)


class ResolutionFailed(Exception):
    """The host did not resolve at delivery time (worth retrying: DNS may come back)."""


@dataclass(frozen=True, slots=True)
class Vetted:
    """A callback target checked at delivery, and the address to connect to."""

    target: CallbackTarget
    address: Address


def literal_address(host: str) -> Address | None:
    """``host`` as an IP address when it is one, in any form ``inet_aton`` reads
    (``2130706433``, ``0x7f000001``, ``017700000001``, ``127.1``); None for a name."""
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.strip("[]"))
    with contextlib.suppress(OSError, UnicodeError, ValueError):
        return ipaddress.IPv4Address(socket.inet_aton(host))
    return None


def _from_infos(infos: list[tuple[object, ...]]) -> list[Address]:
    found: list[Address] = []
    for info in infos:
        sockaddr = info[4]
        if not isinstance(sockaddr, tuple):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


def resolve(host: str) -> list[Address]:
    """Every address ``host`` resolves to (blocking; ``[]`` when it does not resolve)."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return _from_infos(list(infos))


async def resolve_async(host: str) -> list[Address]:
    """``resolve`` on the event loop's resolver (a thread), without blocking the loop."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return _from_infos(list(infos))


def check_callback_url(url: str, allowlist_text: str) -> str:
    """Vet a callback URL against SSRF at submit time; returns it unchanged.

    Blocking (DNS): run it in a thread from async code.

    Raises:
        CallbackRefused: with the reason.
    """
    target = parse_callback_url(url)
    check_target(target, resolve(target.host), parse_allowlist(allowlist_text))
    return url


def check_submitted_callback(settings: Settings, url: str) -> str:
    """The submit-time check of ``Burrow.submit`` and the HTTP API: webhooks must be on
    (a signing secret is configured) and the URL must pass ``check_callback_url``.

    Raises:
        CallbackRefused: webhooks are off, or the URL is refused.
    """
    checked = check_callback_url(url, settings.callback_allowlist)
    if not settings.webhook_secret.strip():
        raise CallbackRefused(
            "webhooks are off: set BURROW_WEBHOOK_SECRET (whsec_ + base64 of at least 24 "
            "random bytes) in every burrow process, since webhooks are always signed"
        )
    return checked


async def vet(url: str, allowlist: list[AllowEntry]) -> Vetted:
    """The delivery-time check: resolve once, check every address, pick the one to use.

    Raises:
        CallbackRefused: the URL or an address it resolves to is refused (``ssrf_blocked``).
        ResolutionFailed: the host does not resolve now.
    """
    target = parse_callback_url(url)
    addresses = await resolve_async(target.host)
    if not addresses:
        raise ResolutionFailed(f"callback host {target.host!r} does not resolve")
    check_target(target, addresses, allowlist)
    return Vetted(target, addresses[0])


__all__ = [
    "CallbackRefused",
    "ResolutionFailed",
    "Vetted",
    "check_callback_url",
    "check_submitted_callback",
    "literal_address",
    "resolve",
    "resolve_async",
    "vet",
]
