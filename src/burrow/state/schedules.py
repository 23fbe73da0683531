"""``ScheduleStore``: cron schedules, their cursors and the scheduler leader lock in Redis.

Keys (namespace-prefixed like every key in ``keys.py``):

* ``{ns}:schedules`` hash: schedule id -> JSON of a schedule created at run time
  (``POST /api/v1/schedules``). Schedules defined in code are not stored.
* ``{ns}:schedules:cursor`` hash: schedule id -> the last tick (Unix seconds) the scheduler
  handled, fired or skipped (misfire policy), for schedules of either source.
* ``{ns}:schedules:fired`` hash: schedule id -> the last tick that was fired ("last fired").
* ``{ns}:scheduler:lock`` string: the fencing token of the active scheduler, with a TTL.
* ``{ns}:scheduler:fence`` counter: grows on every acquisition of the lock.

Every cursor write checks the caller's token against the lock in the same Lua step
(``lua/schedule_mark.lua``), so a scheduler that lost the lock cannot write. Scripts run
through redis-py's ``Script``, which loads them again after a ``NOSCRIPT`` (Redis restart).
"""

from __future__ import annotations

import secrets
from importlib import resources
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from burrow.state.errors import map_redis_errors

if TYPE_CHECKING:
    from burrow.state.redis import RedisStateStore

_SCRIPTS = ("schedule_lock", "schedule_mark", "schedule_unlock")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


class ScheduleStore:
    """Schedules of one namespace, on the connection pool of a ``RedisStateStore``
    (which must be open)."""

    def __init__(self, state: RedisStateStore) -> None:
        self._state = state
        prefix = state.keys.prefix
        self.schedules_key = f"{prefix}schedules"
        self.cursors_key = f"{prefix}schedules:cursor"
        self.fired_key = f"{prefix}schedules:fired"
        self.lock_key = f"{prefix}scheduler:lock"
        self.fence_key = f"{prefix}scheduler:fence"
        self._scripts: dict[str, AsyncScript] = {}

    def _redis(self) -> aioredis.Redis:
        # The state store's client (same package): one pool per process.
        return self._state._redis()

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        client = self._redis()
        script = self._scripts.get(name)
        if script is None:
            text = (resources.files("burrow.state") / "lua" / f"{name}.lua").read_text()
            script = self._scripts[name] = client.register_script(text)
        with map_redis_errors(f"scheduler {name}"):
            return await script(keys=keys, args=args, client=client)

    # -- schedules --------------------------------------------------------------------

    async def add(self, schedule_id: str, data: bytes) -> bool:
        """Store a schedule under a new id; False when the id is taken."""
        with map_redis_errors("add schedule"):
            return bool(await self._redis().hsetnx(self.schedules_key, schedule_id, data))

    async def get(self, schedule_id: str) -> bytes | None:
        with map_redis_errors("read schedule"):
            raw = await self._redis().hget(self.schedules_key, schedule_id)
        return _bytes(raw) if raw is not None else None

    async def all(self) -> dict[str, bytes]:
        """Every stored schedule, by id."""
        with map_redis_errors("read schedules"):
            raw = await self._redis().hgetall(self.schedules_key)
        return {_text(k): _bytes(v) for k, v in raw.items()}

    async def remove(self, schedule_id: str) -> bool:
        """Delete a stored schedule and its cursor; False when there was none."""
        with map_redis_errors("remove schedule"):
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.hdel(self.schedules_key, schedule_id)
                pipe.hdel(self.cursors_key, schedule_id)
                pipe.hdel(self.fired_key, schedule_id)
                removed, _, _ = await pipe.execute()
        return bool(removed)

    # -- cursors ----------------------------------------------------------------------

    async def cursors(self) -> dict[str, float]:
        """The last handled tick of every schedule that has one."""
        return await self._floats(self.cursors_key)

    async def fired(self) -> dict[str, float]:
        """The last fired tick of every schedule that fired."""
        return await self._floats(self.fired_key)

    async def _floats(self, key: str) -> dict[str, float]:
        with map_redis_errors("read schedule cursors"):
            raw = await self._redis().hgetall(key)
        return {_text(k): float(v) for k, v in raw.items()}

    async def set_cursor(
        self, token: str, schedule_id: str, tick: float, *, fired: bool = False
    ) -> bool:
        """Move a schedule's cursor to ``tick`` (never backwards), fenced by ``token``, and
        record it as last fired when ``fired``. False when ``token`` no longer holds the
        leader lock (nothing written)."""
        keys = [self.lock_key, self.cursors_key, self.fired_key]
        args = [token, schedule_id, repr(tick), "1" if fired else "0"]
        return bool(await self._run("schedule_mark", keys, args))

    async def force_cursor(self, schedule_id: str, tick: float) -> None:
        """Set a cursor without the lock (operators and tests: "pretend the last fire was
        at ``tick``")."""
        with map_redis_errors("write schedule cursor"):
            await self._redis().hset(self.cursors_key, schedule_id, repr(tick))

    # -- leader lock ------------------------------------------------------------------

    async def acquire(self, token: str | None, ttl: float, *, owner: str = "") -> str | None:
        """Renew the lock held with ``token``, or take it when free. Returns the token held
        now (``{fence}:{owner}:{random}``), or None when another scheduler holds the lock.

        Args:
            owner: who asks (e.g. ``host:pid``), kept in the token for operators.
        """
        args = [token or "", max(1, int(ttl * 1000)), f"{owner}:{secrets.token_hex(8)}"]
        held = await self._run("schedule_lock", [self.lock_key, self.fence_key], args)
        return _text(held) if held else None

    async def release(self, token: str) -> bool:
        """Give the lock up if ``token`` still holds it."""
        return bool(await self._run("schedule_unlock", [self.lock_key], [token]))

    async def holder(self) -> str | None:
        """The token of the scheduler holding the lock, if any."""
        with map_redis_errors("read scheduler lock"):
            raw = await self._redis().get(self.lock_key)
        return _text(raw) if raw is not None else None
