"""Backpressure and limits: queue depth, per-key request rate, request body size.

* Queue depth (``BURROW_MAX_QUEUE_DEPTH``): a submit to a queue holding that many ready
  messages or more answers 429. The depth comes from a passive declare on the broker and is
  cached for ``DEPTH_TTL`` per queue (one fetch in flight per queue), so a burst of submits
  costs one broker round trip a second, not one per request.
* Request rate (``BURROW_API_RATE_LIMIT``, e.g. ``100/s``): a sliding window per API key (per
  client address without keys) kept in Redis, so it holds across API processes. One Lua
  call: drop entries older than the window, count, add this request if under the limit.
* Body size (``BURROW_MAX_BODY_BYTES``): enforced by ``front.ApiFront`` while the body is
  read, so a chunked body without ``Content-Length`` is cut off as soon as it passes the cap.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import Scope

from burrow.api.envelope import ApiError
from burrow.app import Burrow

#: Seconds a queue depth read from the broker is reused.
DEPTH_TTL = 1.0

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")
_WINDOWS = {"s": 1.0, "m": 60.0, "h": 3600.0}

# KEYS[1] the window's sorted set; ARGV now_ms, window_ms, limit, member.
# Returns 0 when admitted, else the milliseconds until the oldest entry leaves the window.
_SLIDING_WINDOW = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


def parse_rate(value: str) -> tuple[int, float] | None:
    """``"100/s"`` -> (100, 1.0); empty -> None (no limit).

    Raises:
        ValueError: not ``N/s``, ``N/m`` or ``N/h`` with N >= 1.
    """
    if not value.strip():
        return None
    match = _RATE_RE.match(value)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"rate limit {value!r} must look like 10/s, 100/m or 1000/h")
    return int(match.group(1)), _WINDOWS[match.group(2)]


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class RateLimiter:
    """Sliding-window request limit per client identity, in Redis."""

    def __init__(self, app: Burrow, rate: tuple[int, float] | None) -> None:
        self._app = app
        self._rate = rate

    @property
    def enabled(self) -> bool:
        return self._rate is not None

    async def check(self, identity: str) -> None:
        """Count one request of ``identity``.

        Raises:
            ApiError: 429 with ``Retry-After`` when over the limit.
            StateUnavailable: Redis did not answer (the request is refused, 503).
        """
        if self._rate is None:
            return
        limit, window = self._rate
        key = f"{self._app.state.keys.prefix}api:rate:{identity}"
        # The state store has no public "run this script" call yet; its command path is the
        # one that already maps redis errors to StateUnavailable (api/ may not import redis).
        wait_ms = await self._app.state._command(
            "EVAL",
            _SLIDING_WINDOW,
            1,
            key,
            int(time.time() * 1000),
            int(window * 1000),
            limit,
            uuid.uuid4().hex,
        )
        if int(wait_ms):
            raise ApiError(
                429,
                "rate_limited",
                f"over the request rate limit of {limit} per {window:g} s",
                {"limit": limit, "window_seconds": window},
                headers=retry_after(int(wait_ms) / 1000),
            )


@dataclass(slots=True)
class _Depth:
    value: int
    at: float


class DepthGuard:
    """Refuse submits to queues over ``limit`` ready messages (0: no limit)."""

    def __init__(self, app: Burrow, limit: int, timeout: float) -> None:
        self._app = app
        self._limit = limit
        self._timeout = timeout
        self._cache: dict[str, _Depth] = {}
        self._fetching: dict[str, asyncio.Future[int]] = {}
        self.fetches = 0  # broker round trips made (tests check the cache with it)

    @property
    def limit(self) -> int:
        return self._limit

    async def depth(self, queue: str) -> int:
        """Ready messages in ``queue``, every priority lane included (0 when it does not
        exist yet), at most DEPTH_TTL old."""
        cached = self._cache.get(queue)
        now = time.monotonic()
        if cached is not None and now - cached.at < DEPTH_TTL:
            return cached.value
        pending = self._fetching.get(queue)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._fetching[queue] = future
        try:
            self.fetches += 1
            async with asyncio.timeout(self._timeout):
                stats = await self._app.work_queue_stats(queue)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it through the shield
            raise
        else:
            value = stats.messages if stats is not None else 0
            self._cache[queue] = _Depth(value, time.monotonic())
            future.set_result(value)
            return value
        finally:
            self._fetching.pop(queue, None)

    def cached(self, queue: str) -> int | None:
        """The last depth read for ``queue`` (None before the first read)."""
        entry = self._cache.get(queue)
        return entry.value if entry is not None else None

    async def check(self, queue: str, adding: int = 1) -> None:
        """Raises ApiError 429 when ``queue`` is at or over the limit."""
        if not self._limit:
            return
        depth = await self.depth(queue)
        if depth + adding > self._limit:
            raise ApiError(
                429,
                "queue_full",
                f"queue {queue!r} holds {depth} messages; the limit is {self._limit}",
                {"queue": queue, "depth": depth, "limit": self._limit},
                headers=retry_after(DEPTH_TTL),
            )


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body passes the cap. An ``HTTPException`` so that
    FastAPI's body reader passes it on instead of turning it into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"request body larger than {limit} bytes", headers={"Connection": "close"}
        )


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def json_or_empty(scope: Scope, length: int | None) -> bool:
    """True when a body-carrying request is JSON in UTF-8, or has no body at all."""
    raw = _header(scope, b"content-type")
    if raw is None:
        return length == 0 or (length is None and _header(scope, b"transfer-encoding") is None)
    media, _, params = raw.decode("latin-1").lower().partition(";")
    media = media.strip()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return False
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name == "charset" and value.strip('"') not in ("utf-8", "utf8"):
            return False
    return True


def content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


__all__: list[Any] = [
    "BodyTooLarge",
    "DepthGuard",
    "RateLimiter",
    "content_length",
    "json_or_empty",
    "parse_rate",
    "retry_after",
]
