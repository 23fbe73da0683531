"""``burrow.worker._deadlines``: per-attempt timeouts with one timer per timeout length."""

from __future__ import annotations

import asyncio

import pytest

from burrow.worker._deadlines import Deadlines


async def _limited(deadlines: Deadlines, timeout: float, work: float) -> str:
    scope = deadlines.scope(timeout)
    try:
        with scope:
            await asyncio.sleep(work)
    except TimeoutError:
        assert scope.expired()
        return "timeout"
    assert not scope.expired()
    return "done"


async def test_an_attempt_past_its_deadline_gets_timeout_error() -> None:
    assert await _limited(Deadlines(), 0.02, 10) == "timeout"


async def test_an_attempt_that_ends_in_time_is_untouched() -> None:
    deadlines = Deadlines()
    assert await _limited(deadlines, 5, 0) == "done"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_only_the_overdue_attempts_of_a_length_are_cancelled() -> None:
    """Attempts share one lane: the slow ones time out, the quick ones (started before,
    between and after them) finish, and the timer re-arms for attempts still running."""
    deadlines = Deadlines()
    works = [0, 10, 0.001, 10, 0, 0.002, 10]
    results = await asyncio.gather(*(_limited(deadlines, 0.05, w) for w in works))
    assert results == ["timeout" if w == 10 else "done" for w in works]
    # And the lane still works afterwards (its timer was re-armed or cleared properly).
    assert await _limited(deadlines, 0.02, 10) == "timeout"
    assert await _limited(deadlines, 0.02, 0) == "done"


async def test_lengths_do_not_interfere() -> None:
    deadlines = Deadlines()
    short, long_ = await asyncio.gather(_limited(deadlines, 0.02, 10), _limited(deadlines, 30, 0.1))
    assert (short, long_) == ("timeout", "done")


async def test_an_outside_cancel_stays_a_cancel_even_after_the_deadline() -> None:
    """Shutdown (or Burrow.cancel) cancelling the task as well: CancelledError goes on."""
    deadlines = Deadlines()
    started = asyncio.Event()

    async def attempt() -> None:
        with deadlines.scope(0.01):
            started.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await asyncio.sleep(0.05)  # the deadline passes while we handle the cancel
                raise

    task = asyncio.create_task(attempt())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_handler_that_swallows_the_cancel_returns_normally() -> None:
    deadlines = Deadlines()

    async def attempt() -> tuple[str, bool, int]:
        scope = deadlines.scope(0.01)
        swallowed = False
        with scope:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed = True  # the attempt returns a value, as asyncio.timeout allows
        assert swallowed
        task = asyncio.current_task()
        assert task is not None
        return "returned", scope.expired(), task.cancelling()

    assert await asyncio.create_task(attempt()) == ("returned", True, 0)
