"""``LaneGate``: the run slots of a queue, handed out highest priority lane first.

The executor keeps one per queue (its run slots, ``executor._Slot``); a queue without
priorities has a single lane. A worker consumes every lane of a queue with priorities
(``{Q}.high``, ``{Q}``, ``{Q}.low``), each with its own prefetch, so up to three prefetches
of deliveries can be here at once. The gate lets only ``slots`` of them run; the others
wait in it, one FIFO per lane, and each freed slot goes to the oldest waiter of the highest
lane that has one. Under a backlog the broker keeps every lane's prefetch full, so a high
delivery is always waiting here when a slot frees, and low ones start only while no high
or normal one waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class LaneGate:
    """``slots`` run slots shared by ``lanes`` lanes (0 = the highest)."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, slots: int, lanes: int) -> None:
        if slots < 1 or lanes < 1:
            raise ValueError("a lane gate needs at least one slot and one lane")
        self._free = slots
        self._waiters: tuple[deque[asyncio.Future[None]], ...] = tuple(
            deque() for _ in range(lanes)
        )

    @property
    def free(self) -> int:
        """Slots nobody holds."""
        return self._free

    @property
    def waiting(self) -> int:
        """Deliveries waiting for a slot."""
        return sum(len(w) for w in self._waiters)

    async def acquire(self, lane: int) -> None:
        """Take a slot for a delivery of ``lane``; waits while none is free."""
        if self._free > 0:  # a free slot means nobody waits (release hands slots over)
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters[lane]
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted as we were cancelled: pass the slot on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(future)
            raise

    def release(self) -> None:
        """Give a slot back: to the oldest waiter of the highest lane, else to the pool."""
        for queue in self._waiters:
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)
                    return
        self._free += 1

    @contextlib.asynccontextmanager
    async def slot(self, lane: int) -> AsyncIterator[None]:
        """Hold a slot for the block."""
        await self.acquire(lane)
        try:
            yield
        finally:
            self.release()


__all__ = ["LaneGate"]
