"""Ownership of long-lived background coroutines.

``asyncio.TaskGroup`` must be entered and exited by the same task, which does not fit
objects such as ``Burrow`` that connect lazily on first use and close later from another
task. ``Background`` gives those objects the same guarantees: every coroutine it starts is
tracked, a crash is logged (never silently dropped), and ``aclose()`` cancels and awaits all
of them, so nothing outlives its owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger("burrow.background")


class Background:
    """A set of owned background tasks; ``aclose()`` cancels and awaits them all."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def start(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background until it returns or ``aclose()`` is called.

        Raises:
            RuntimeError: the owner is already closed.
        """
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self._owner} is closed; cannot start {name}")
        task = asyncio.get_running_loop().create_task(coro, name=f"{self._owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task crashed", task=task.get_name(), exc_info=exc)

    async def aclose(self) -> None:
        """Cancel every task and wait for all of them to finish."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            # asyncio.wait never raises the tasks' errors, and a cancellation of aclose()
            # itself still propagates (unlike suppressing CancelledError around each await).
            await asyncio.wait(tasks)
