"""Operator actions on tasks, on the real RabbitMQ and Redis: list, cancel, retry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from burrow import (
    Burrow,
    ConfigurationError,
    Reject,
    TaskConflict,
    TaskContext,
    TaskNotFound,
    TaskRecord,
    TaskStatus,
)
from tests.conftest import eventually, running_worker

pytestmark = pytest.mark.integration


class Item(BaseModel):
    n: int


async def _all_pages(app: Burrow, cursor: str | None = None, **filters: Any) -> list[TaskRecord]:
    seen: list[TaskRecord] = []
    for _ in range(100):
        page = await app.list_tasks(cursor=cursor, **filters)
        seen += page.items
        cursor = page.next_cursor
        if cursor is None:
            return seen
    pytest.fail("the listing did not end")


# -- list_tasks -------------------------------------------------------------------------


async def test_list_pages_through_every_task_once_newest_first(
    make_app: Callable[..., Burrow],
) -> None:
    """120 tasks listed 50 at a time come back exactly once each, newest first, in three
    pages, the last without a cursor."""
    app = make_app()

    @app.task
    async def job(p: Item) -> None: ...

    ids = [(await app.submit("job", {"n": i})).id for i in range(120)]
    pages = []
    cursor: str | None = None
    while True:
        page = await app.list_tasks(limit=50, cursor=cursor)
        pages.append(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    listed = [r.id for p in pages for r in p.items]
    assert [len(p.items) for p in pages][:2] == [50, 50]
    assert listed == list(reversed(ids))
    created = [r.created_at or 0 for p in pages for r in p.items]
    assert created == sorted(created, reverse=True)


async def test_list_filters_by_status_name_and_queue(make_app: Callable[..., Burrow]) -> None:
    """Filters on status, name and queue each keep exactly the matching tasks."""
    app = make_app()

    @app.task(queue="alpha")
    async def ok(p: Item) -> int:
        return p.n

    @app.task(queue="beta", max_retries=0)
    async def bad(p: Item) -> None:
        raise Reject("no")

    async with running_worker(app):
        good = [(await app.submit("ok", {"n": i})).id for i in range(7)]
        dead = [(await app.submit("bad", {"n": i})).id for i in range(5)]
        await asyncio.gather(*(app.wait(i, timeout=15) for i in good + dead))
    waiting = (await app.submit("ok", {"n": 99})).id  # no worker now: stays queued

    by_status = await _all_pages(app, status=TaskStatus.FAILED, limit=2)
    assert sorted(r.id for r in by_status) == sorted(dead)
    assert all(r.status is TaskStatus.FAILED for r in by_status)
    by_name = await _all_pages(app, name="ok", limit=3)
    assert [r.id for r in by_name] == [waiting, *reversed(good)]
    by_queue = await _all_pages(app, queue="beta")
    assert sorted(r.id for r in by_queue) == sorted(dead)
    both = await _all_pages(app, name="ok", status=TaskStatus.QUEUED)
    assert [r.id for r in both] == [waiting]
    assert await _all_pages(app, name="nobody") == []


async def test_list_cursor_is_stable_while_tasks_are_submitted(
    make_app: Callable[..., Burrow],
) -> None:
    """Tasks submitted between pages neither shift later pages nor repeat entries: paging
    from the first cursor lists exactly the tasks that existed before it."""
    app = make_app()

    @app.task
    async def job(p: Item) -> None: ...

    before = [(await app.submit("job", {"n": i})).id for i in range(60)]
    first = await app.list_tasks(limit=25)
    later = [(await app.submit("job", {"n": i})).id for i in range(30)]
    rest = await _all_pages(app, limit=25, cursor=first.next_cursor)
    listed = [r.id for r in first.items] + [r.id for r in rest]
    assert listed == list(reversed(before))
    assert not set(later) & set(listed)
    assert [r.id for r in (await app.list_tasks(limit=30)).items] == list(reversed(later))


async def test_list_rejects_bad_limits_cursors_and_statuses(
    make_app: Callable[..., Burrow],
) -> None:
    """A limit outside 1-500, a malformed cursor or an unknown status is a
    ConfigurationError that says what is wrong."""
    app = make_app()
    for limit in (0, 501, -1):
        with pytest.raises(ConfigurationError, match="limit"):
            await app.list_tasks(limit=limit)
    with pytest.raises(ConfigurationError, match="malformed cursor"):
        await app.list_tasks(cursor="not-a-cursor")
    with pytest.raises(ConfigurationError, match="unknown status"):
        await app.list_tasks(status="sleeping")  # type: ignore[arg-type]


async def test_expired_records_leave_the_listing(make_app: Callable[..., Burrow]) -> None:
    """A task whose record expired is not listed, and its index entry is dropped."""
    app = make_app()

    @app.task
    async def job(p: Item) -> None: ...

    kept, gone = (await app.submit("job", {"n": 1})).id, (await app.submit("job", {"n": 2})).id
    await app.state.delete(gone)  # the record alone (as expiry does), index entry kept
    redis = app.state._redis()
    await redis.zadd(app.state.keys.tasks, {gone: time.time()})
    page = await app.list_tasks()
    assert [r.id for r in page.items] == [kept]
    assert await redis.zscore(app.state.keys.tasks, gone) is None


# -- cancel -----------------------------------------------------------------------------


async def test_cancel_queued_task_never_runs(make_app: Callable[..., Burrow]) -> None:
    """A task cancelled while queued (no worker yet) is 'cancelled' at once, wakes waiters,
    and is acked without running once a worker starts; the worker then runs new tasks."""
    app = make_app()
    runs: list[int] = []

    @app.task
    async def job(p: Item) -> int:
        runs.append(p.n)
        return p.n

    handle = await app.submit("job", {"n": 1})
    waiter = asyncio.ensure_future(app.wait(handle.id, timeout=10))
    await asyncio.sleep(0.2)
    record = await app.cancel(handle.id)
    assert record.status is TaskStatus.CANCELLED
    assert (await waiter).status is TaskStatus.CANCELLED
    async with running_worker(app) as worker:
        after = await app.submit("job", {"n": 2})
        assert (await app.wait(after.id, timeout=15)).status is TaskStatus.SUCCEEDED
        assert worker.statistics().deduplicated == 1
    assert runs == [2]
    events = await app.history(handle.id)
    assert [e.status for e in events] == ["queued", "cancelled"]
    assert events[-1].note == "cancelled on request"


async def test_cancel_running_async_handler_stops_it(make_app: Callable[..., Burrow]) -> None:
    """Cancelling a running async handler interrupts it with CancelledError within a
    second; the record is 'cancelled' with one terminal event and the worker goes on."""
    app = make_app()
    started = asyncio.Event()
    observed: list[float] = []

    @app.task
    async def slow(p: Item, ctx: TaskContext) -> int:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            observed.append(time.monotonic())
            raise
        return p.n

    @app.task
    async def quick(p: Item) -> int:
        return p.n

    async with running_worker(app) as worker:
        handle = await app.submit("slow", {"n": 1})
        await asyncio.wait_for(started.wait(), 15)
        asked = time.monotonic()
        record = await app.cancel(handle.id)
        assert record.status is TaskStatus.CANCELLED
        await eventually(lambda: observed, timeout=5, what="handler cancelled")
        assert observed[0] - asked < 1.0
        await eventually(
            lambda: worker.statistics().in_flight == 0, timeout=5, what="delivery settled"
        )
        nxt = await app.submit("quick", {"n": 7})
        assert (await app.wait(nxt.id, timeout=15)).result == 7
        assert worker.statistics().cancelled == 1
    final = await app.get(handle.id)
    assert final.status is TaskStatus.CANCELLED
    assert final.result is None
    statuses = [e.status for e in await app.history(handle.id)]
    assert statuses == ["queued", "running", "cancelled"]
    work, dead = await app.queue_stats("default")
    assert work is not None
    assert work.messages == 0  # acked, not requeued
    assert dead is not None
    assert dead.messages == 0  # and not dead-lettered


async def test_cancel_running_sync_handler_discards_its_result(
    make_app: Callable[..., Burrow],
) -> None:
    """A sync handler cannot be interrupted: it runs to its end, its result is discarded,
    and the record stays 'cancelled'."""
    app = make_app()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    finished: list[int] = []

    @app.task
    def blocking(p: Item) -> int:
        loop.call_soon_threadsafe(started.set)
        time.sleep(1.0)
        finished.append(p.n)
        return p.n

    async with running_worker(app) as worker:
        handle = await app.submit("blocking", {"n": 3})
        await asyncio.wait_for(started.wait(), 15)
        await app.cancel(handle.id)
        await eventually(lambda: worker.statistics().cancelled == 1, timeout=10, what="discarded")
    record = await app.get(handle.id)
    assert finished == [3]
    assert record.status is TaskStatus.CANCELLED
    assert record.result is None


async def test_cancel_terminal_or_unknown_task_is_refused(
    make_app: Callable[..., Burrow],
) -> None:
    """Cancelling a finished task raises TaskConflict (record unchanged); an unknown id
    raises TaskNotFound."""
    app = make_app()

    @app.task
    async def job(p: Item) -> int:
        return p.n

    async with running_worker(app):
        handle = await app.submit("job", {"n": 5})
        await app.wait(handle.id, timeout=15)
    with pytest.raises(TaskConflict) as info:
        await app.cancel(handle.id)
    assert (info.value.task_id, info.value.status) == (handle.id, "succeeded")
    assert (await app.get(handle.id)).status is TaskStatus.SUCCEEDED
    with pytest.raises(TaskNotFound):
        await app.cancel("no-such-task")


# -- retry ------------------------------------------------------------------------------


async def test_retry_failed_task_runs_it_again(make_app: Callable[..., Burrow]) -> None:
    """A failed task retried after its cause is fixed runs again under the same id, with
    attempt 1, and succeeds; its history shows both runs and the record is listed once."""
    app = make_app()
    broken = {"on": True}
    attempts: list[int] = []

    @app.task(max_retries=0)
    async def fragile(p: Item, ctx: TaskContext) -> int:
        attempts.append(ctx.attempt)
        if broken["on"]:
            raise Reject("downstream is broken")
        return p.n * 10

    async with running_worker(app):
        handle = await app.submit("fragile", {"n": 4})
        assert (await app.wait(handle.id, timeout=15)).status is TaskStatus.FAILED
        broken["on"] = False
        again = await app.retry(handle.id)
        assert (again.id, again.name) == (handle.id, "fragile")
        record = await eventually(
            lambda: _succeeded(app, handle.id), timeout=15, what="retried task done"
        )
    assert record.result == 40
    assert record.attempts == 1
    assert record.error is None
    assert attempts == [1, 1]
    statuses = [e.status for e in await app.history(handle.id)]
    assert statuses == ["queued", "running", "failed", "queued", "running", "succeeded"]
    assert [r.id for r in await _all_pages(app)] == [handle.id]


async def test_retry_cancelled_task_runs_it(make_app: Callable[..., Burrow]) -> None:
    """A task cancelled while queued can be retried and then runs."""
    app = make_app()

    @app.task
    async def job(p: Item) -> int:
        return p.n

    handle = await app.submit("job", {"n": 8})
    await app.cancel(handle.id)
    await app.retry(handle.id)
    async with running_worker(app):
        record = await eventually(lambda: _succeeded(app, handle.id), timeout=15, what="ran")
    assert record.result == 8


async def test_retry_of_unfinished_or_succeeded_task_is_refused(
    make_app: Callable[..., Burrow],
) -> None:
    """Retrying a succeeded or queued task raises TaskConflict; an unknown id TaskNotFound."""
    app = make_app()

    @app.task
    async def job(p: Item) -> int:
        return p.n

    async with running_worker(app):
        done = await app.submit("job", {"n": 1})
        await app.wait(done.id, timeout=15)
    with pytest.raises(TaskConflict, match="succeeded"):
        await app.retry(done.id)
    queued = await app.submit("job", {"n": 2})
    with pytest.raises(TaskConflict, match="queued"):
        await app.retry(queued.id)
    with pytest.raises(TaskNotFound):
        await app.retry("no-such-task")
    assert (await app.get(done.id)).status is TaskStatus.SUCCEEDED


async def _succeeded(app: Burrow, task_id: str) -> TaskRecord | None:
    record = await app.get(task_id)
    return record if record.status is TaskStatus.SUCCEEDED else None


async def test_trim_drops_index_entries_of_expired_records_only(
    make_app: Callable[..., Burrow],
) -> None:
    """The maintenance trim removes old index entries whose record is gone and keeps those
    whose record still exists."""
    app = make_app()

    @app.task
    async def job(p: Item) -> None: ...

    alive, gone = (await app.submit("job", {"n": 1})).id, (await app.submit("job", {"n": 2})).id
    redis = app.state._redis()
    await app.state.delete(gone)
    old = time.time() - app.state.ttl - 10
    await redis.zadd(app.state.keys.tasks, {gone: old, alive: old})
    assert await app.state.trim_index() == 1
    assert await redis.zscore(app.state.keys.tasks, gone) is None
    assert await redis.zscore(app.state.keys.tasks, alive) == old
