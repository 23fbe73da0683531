"""Start slots of rate-limited tasks, shared by every worker process through Redis.

One key per namespace and task name, ``{ns}:ratelimit:{task}``, holds the theoretical
arrival time (GCRA) of the next start in milliseconds of Redis time. ``lua/ratelimit.lua``
reads and advances it in one atomic step, so workers on any host draw slots from the same
sequence, spaced ``period / count`` apart, without a lock or a clock of their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from burrow.state.keys import Keys

ScriptCall = Callable[[str, tuple[str, ...], tuple[Any, ...]], Awaitable[Any]]


def limiter_key(keys: Keys, task: str) -> str:
    """String: the next free start slot (Unix ms, Redis time) of task ``task``."""
    return f"{keys.prefix}ratelimit:{task}"


async def reserve_start(
    call: ScriptCall, keys: Keys, *, task: str, task_id: str, interval: float
) -> float:
    """Reserve the next start slot of ``task`` for ``task_id``; returns the seconds to
    wait until it (0: start now). ``interval`` is the spacing of starts in seconds.

    Nothing is reserved (0 is returned) when the task's record is terminal or another
    attempt holds its lease: the start step turns those away without running them.
    """
    reply = await call(
        "ratelimit", (limiter_key(keys, task), keys.task(task_id)), (interval * 1000,)
    )
    wait_ms = float(reply.decode() if isinstance(reply, bytes) else reply)
    return max(0.0, wait_ms / 1000)


__all__ = ["limiter_key", "reserve_start"]
