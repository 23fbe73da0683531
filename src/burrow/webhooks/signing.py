"""Standard Webhooks signatures (https://www.standardwebhooks.com/), pure.

A delivery carries ``webhook-id`` (stable per event: the same on every retry, so receivers
dedupe by it), ``webhook-timestamp`` (Unix seconds, fresh per attempt) and
``webhook-signature``: ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")),
where the secret is ``whsec_`` + base64(key). During a key rotation
``BURROW_WEBHOOK_SECRET`` lists several secrets and every one signs: the header then holds
the signatures separated by spaces, and a receiver accepts any that matches.

Written here rather than taken from the ``standardwebhooks`` package: the scheme is a few
lines of stdlib, and the tests check it against the specification's test vector.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

from burrow.errors import ConfigurationError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret
#: Keys shorter than this are refused (the specification asks for 24 to 64 bytes).
MIN_KEY_BYTES = 24
#: How far a receiver lets ``webhook-timestamp`` differ from its clock (replay window).
DEFAULT_TOLERANCE = 300

HDR_ID = "webhook-id"
HDR_TIMESTAMP = "webhook-timestamp"
HDR_SIGNATURE = "webhook-signature"


def generate_secret(nbytes: int = 32) -> str:
    """A fresh random secret in the ``whsec_`` form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def parse_secret(secret: str) -> bytes:
    """The key of one ``whsec_…`` secret.

    Raises:
        ConfigurationError: no ``whsec_`` prefix, not base64, or a key under 24 bytes. The
            message never contains the secret.
    """
    text = secret.strip()
    if not text.startswith(SECRET_PREFIX):
        raise ConfigurationError(
            "BURROW_WEBHOOK_SECRET must be whsec_ followed by base64 (generate one with "
            "python -c 'from burrow.webhooks.signing import generate_secret as g; print(g())')"
        )
    encoded = text[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            "BURROW_WEBHOOK_SECRET: the part after whsec_ is not base64"
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigurationError(
            f"BURROW_WEBHOOK_SECRET: the key is {len(key)} bytes; use at least {MIN_KEY_BYTES}"
        )
    return key


def parse_secrets(value: str) -> list[bytes]:
    """The keys of ``BURROW_WEBHOOK_SECRET``: one secret, or several separated by spaces or
    commas while rotating (all of them sign). Empty: ``[]`` (webhooks off).

    Raises:
        ConfigurationError: a malformed secret (see ``parse_secret``).
    """
    return [parse_secret(part) for part in value.replace(",", " ").split()]


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``body`` for event ``msg_id`` at ``timestamp``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per key, space-separated."""
    return " ".join(sign(key, msg_id, timestamp, body) for key in keys)


def webhook_headers(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        HDR_ID: msg_id,
        HDR_TIMESTAMP: str(timestamp),
        HDR_SIGNATURE: signature_header(keys, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Receiver side: True when ``headers`` carry a valid signature of the raw ``body``.

    Checks the timestamp is within ``tolerance`` seconds of ``now`` (replays of old
    deliveries fail) and compares in constant time. Verify the raw bytes before parsing
    them, and dedupe by ``webhook-id``: delivery is at-least-once.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get(HDR_ID)
    stamp = lowered.get(HDR_TIMESTAMP)
    offered = lowered.get(HDR_SIGNATURE)
    if not (msg_id and stamp and offered):
        return False
    try:
        timestamp = int(stamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(parse_secret(secret), msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in offered.split(" "))


__all__ = [
    "DEFAULT_TOLERANCE",
    "HDR_ID",
    "HDR_SIGNATURE",
    "HDR_TIMESTAMP",
    "generate_secret",
    "parse_secret",
    "parse_secrets",
    "sign",
    "signature_header",
    "verify",
    "webhook_headers",
]
