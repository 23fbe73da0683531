"""``call_handler``: how the worker calls a task, subscriber or RPC handler."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from burrow.tasks.definition import TaskDefinition


async def call_handler(
    definition: TaskDefinition, args: tuple[Any, ...], pool: ThreadPoolExecutor
) -> Any:
    """Await an async handler on the loop, or run a sync one in the bounded ``pool``.

    A sync handler cannot be interrupted: on a timeout or cancel the caller stops waiting
    for it and moves on, while the thread finishes in the background (documented).
    """
    if definition.is_async:
        return await definition.fn(*args)
    loop = asyncio.get_running_loop()
    # In a copy of the caller's context, as asyncio.to_thread does: the task's log context
    # and trace span are there for the handler's own log lines and spans.
    run = functools.partial(contextvars.copy_context().run, definition.fn, *args)
    return await loop.run_in_executor(pool, run)
