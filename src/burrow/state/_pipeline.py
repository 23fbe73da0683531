"""Automatic pipelining of Lua calls: one Redis round trip for many concurrent tasks.

Each running task needs two or three atomic transitions. Sent one by one they would cost a
round trip each; here every call is queued and a single flusher sends whatever has
accumulated as one pipeline (``transaction=False``: each script is atomic on its own), so
under load a round trip carries dozens of transitions and at low load a call still goes out
at once. Scripts are called by SHA; after a Redis restart (which forgets loaded scripts)
the NOSCRIPT replies are answered by loading the scripts again and resending those calls.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from burrow.state.errors import map_redis_errors, translate_redis_error

MAX_BATCH = 512


@dataclass(slots=True)
class _Call:
    script: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Script:
    """A Lua script known by its SHA1."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class AutoPipeline:
    """Queue script calls and flush them in pipelines from one background loop."""

    def __init__(self, client: aioredis.Redis, scripts: dict[str, Script]) -> None:
        self._client = client
        self._scripts = scripts
        self._pending: list[_Call] = []
        self._wakeup = asyncio.Event()

    async def call(self, script: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        """Run ``script`` in the next pipeline and return its reply.

        Raises:
            StateUnavailable: Redis could not be reached.
            StateError: Redis answered with an error.
        """
        item = _Call(script, keys, args)
        self._pending.append(item)
        self._wakeup.set()
        return await item.future

    async def load_scripts(self) -> None:
        with map_redis_errors("load scripts"):
            for script in self._scripts.values():
                await self._client.script_load(script.source)

    async def run(self) -> None:
        """The flusher; runs until cancelled."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                await self._flush(batch)

    async def _flush(self, batch: list[_Call]) -> None:
        try:
            results = await self._execute(batch)
            missing = [
                c for c, r in zip(batch, results, strict=True) if isinstance(r, NoScriptError)
            ]
            if missing:  # Redis restarted and forgot the scripts
                await self.load_scripts()
                for call, result in zip(missing, await self._execute(missing), strict=True):
                    _settle(call, result)
            for call, result in zip(batch, results, strict=True):
                if not isinstance(result, NoScriptError):
                    _settle(call, result)
        except asyncio.CancelledError:
            _fail(batch, None)
            raise
        except Exception as exc:  # a failed round trip fails every call in it
            _fail(batch, exc)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        with map_redis_errors("run state transitions"):
            pipe = self._client.pipeline(transaction=False)
            for call in batch:
                pipe.evalsha(self._scripts[call.script].sha, len(call.keys), *call.keys, *call.args)
            return list(await pipe.execute(raise_on_error=False))


def _settle(call: _Call, result: Any) -> None:
    if call.future.done():
        return
    if isinstance(result, RedisError):
        mapped = translate_redis_error(result, f"script {call.script}")
        mapped.__cause__ = result
        call.future.set_exception(mapped)
    else:
        call.future.set_result(result)


def _fail(batch: list[_Call], exc: Exception | None) -> None:
    """Fail (or, with None, cancel) every call of ``batch`` still waiting."""
    for call in batch:
        if call.future.done():
            continue
        if exc is None:
            call.future.cancel()
        else:
            call.future.set_exception(exc)
