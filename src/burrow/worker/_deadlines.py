"""``Deadlines``: per-attempt timeouts for many concurrent attempts, one timer per length.

``asyncio.timeout`` arms a timer (a heap push) per attempt and cancels it (and the heap is
rebuilt now and then) when the attempt ends in time, which almost every attempt does. On
the worker's hot path that is a few per cent of a task's CPU. Attempts of one length start
in order, so their deadlines come in order too: ``Deadlines`` keeps each length's running
attempts in an insertion-ordered dict (O(1) to add and to remove) with a single timer armed
for the oldest one. When it fires, the attempts past their deadline are cancelled and the
timer is armed again for the oldest left, so under load a timer fires about once per
timeout length instead of being armed and cancelled once per attempt.

A ``Scope`` behaves like ``asyncio.timeout``: the attempt's task is cancelled at its
deadline, and the ``CancelledError`` leaving the ``with`` block becomes ``TimeoutError``
unless someone else cancelled the task too (shutdown, ``Burrow.cancel``), which the
``cancelling()`` count tells apart.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Scope:
    """One attempt's deadline (a synchronous context manager around the awaited call)."""

    __slots__ = ("_deadline", "_expired", "_lane", "_owner", "_task")

    def __init__(self, lane: _Lane, deadline: float) -> None:
        self._lane = lane
        self._deadline = deadline
        self._expired = False
        self._task: asyncio.Task[object] | None = None
        self._owner = 0  # the task's cancelling() count on entry

    @property
    def deadline(self) -> float:
        return self._deadline

    def expired(self) -> bool:
        """True when the deadline passed and the attempt was cancelled for it."""
        return self._expired

    def _expire(self) -> None:
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    def __enter__(self) -> Scope:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline scope must be entered inside a task")
        self._task = task
        self._owner = task.cancelling()
        self._lane.add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lane.remove(self)
        if not self._expired or self._task is None:
            return
        if self._task.uncancel() <= self._owner and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


class _Lane:
    """The running scopes of one timeout length, oldest first, and their timer."""

    __slots__ = ("_loop", "_running", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._running: dict[Scope, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, scope: Scope) -> None:
        self._running[scope] = None
        if self._timer is None:
            self._timer = self._loop.call_at(scope.deadline, self._fire)

    def remove(self, scope: Scope) -> None:
        self._running.pop(scope, None)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        running = self._running
        while running:
            oldest = next(iter(running))
            if oldest.deadline > now:
                self._timer = self._loop.call_at(oldest.deadline, self._fire)
                return
            del running[oldest]
            oldest._expire()


class Deadlines:
    """Hands out ``Scope``s; one ``_Lane`` (and at most one timer) per timeout length."""

    __slots__ = ("_lanes", "_loop")

    def __init__(self) -> None:
        self._lanes: dict[float, _Lane] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def scope(self, timeout: float) -> Scope:
        """A deadline ``timeout`` seconds from now; enter it in the task it limits."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        lane = self._lanes.get(timeout)
        if lane is None:
            lane = self._lanes[timeout] = _Lane(loop)
        return Scope(lane, loop.time() + timeout)
