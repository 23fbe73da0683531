"""The task lifecycle on the real RabbitMQ and Redis: success, retries, dead letters."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from burrow import Burrow, Reject, Retry, TaskContext, TaskStatus
from burrow.tasks.envelope import HDR_ATTEMPT
from tests._timing import LATE
from tests.conftest import eventually, running_worker

pytestmark = pytest.mark.integration


class Add(BaseModel):
    a: int
    b: int


async def test_async_handler_succeeds_and_records_result(make_app: Callable[..., Burrow]) -> None:
    """An async handler's return value is stored and the record ends 'succeeded'."""
    app = make_app()

    @app.task(queue="math")
    async def add(p: Add) -> int:
        return p.a + p.b

    async with running_worker(app):
        handle = await app.submit("add", {"a": 2, "b": 3})
        record = await app.wait(handle.id, timeout=15)
    assert record.status is TaskStatus.SUCCEEDED
    assert record.result == 5
    assert record.attempts == 1
    statuses = [e.status for e in await app.history(handle.id)]
    assert statuses == ["queued", "running", "succeeded"]


async def test_sync_handler_runs_in_thread_pool_with_context(
    make_app: Callable[..., Burrow],
) -> None:
    """A sync handler runs off the event loop thread and receives a TaskContext that
    carries the message's headers (the producer's own and burrow's)."""
    import threading

    app = make_app()
    seen: dict[str, Any] = {}

    @app.task(name="thumb")
    def thumb(p: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        seen["thread"] = threading.current_thread().name
        seen["ctx"] = ctx
        return {"w": p["w"] * 2}

    async with running_worker(app):
        handle = await app.submit("thumb", {"w": 21}, headers={"x-tenant": "acme"})
        record = await app.wait(handle.id, timeout=15)
    assert record.result == {"w": 42}
    assert seen["thread"].startswith("burrow-sync")
    ctx = seen["ctx"]
    assert (ctx.task_id, ctx.name, ctx.queue, ctx.attempt) == (handle.id, "thumb", "default", 1)
    assert len(ctx.trace_id) == 32
    assert ctx.headers["x-tenant"] == "acme"
    assert ctx.trace_id in ctx.headers["traceparent"]
    assert ctx.headers["x-burrow-attempt"] == 1


async def test_retry_then_succeed_counts_attempts(make_app: Callable[..., Burrow]) -> None:
    """A handler failing twice then succeeding ends 'succeeded' after exactly 3 runs."""
    app = make_app()
    runs: list[int] = []

    @app.task(max_retries=5)
    async def flaky(p: dict[str, Any], ctx: TaskContext) -> str:
        runs.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("transient")
        return "ok"

    async with running_worker(app):
        handle = await app.submit("flaky", {})
        record = await app.wait(handle.id, timeout=20)
    assert record.status is TaskStatus.SUCCEEDED
    assert runs == [1, 2, 3]
    assert record.attempts == 3
    statuses = [e.status for e in await app.history(handle.id)]
    assert statuses.count("retrying") == 2


async def test_exhausted_task_is_dead_lettered_and_compensated_once(
    make_app: Callable[..., Burrow],
) -> None:
    """After max_retries+1 failed runs the task is 'failed', in the DLQ with the error of
    each run, and on_dead ran once."""
    app = make_app()
    runs: list[int] = []
    compensations: list[str] = []

    @app.task(max_retries=2)
    async def doomed(p: dict[str, Any], ctx: TaskContext) -> None:
        runs.append(ctx.attempt)
        raise ValueError(f"boom {ctx.attempt}")

    @app.on_dead("doomed")
    async def undo(record: Any) -> None:
        compensations.append(record.id)

    async with running_worker(app):
        handle = await app.submit("doomed", {})
        record = await app.wait(handle.id, timeout=20)
        letters = await app.dead_letters("default")
    assert runs == [1, 2, 3]
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert record.error.type == "ValueError"
    assert record.error.message == "boom 3"
    assert record.error.reason == "max_retries"
    assert "Traceback" in (record.error.traceback or "")
    assert [letter.task_id for letter in letters] == [handle.id]
    assert letters[0].reason == "max_retries"
    assert letters[0].runs == 3
    history = letters[0].history
    assert [(h["attempt"], h["type"], h["message"]) for h in history] == [
        (1, "ValueError", "boom 1"),
        (2, "ValueError", "boom 2"),
        (3, "ValueError", "boom 3"),
    ]
    assert [h["reason"] for h in history] == ["error", "error", "max_retries"]
    assert history[0]["at"] < history[1]["at"] < history[2]["at"]
    assert compensations == [handle.id]


async def test_reject_fails_after_one_attempt(make_app: Callable[..., Burrow]) -> None:
    """Reject(reason) dead-letters at once: one run, reason 'rejected'."""
    app = make_app()
    runs: list[int] = []

    @app.task(max_retries=5)
    async def refuse(p: dict[str, Any]) -> None:
        runs.append(1)
        raise Reject("not today")

    async with running_worker(app):
        handle = await app.submit("refuse", {})
        record = await app.wait(handle.id, timeout=15)
    assert runs == [1]
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert (record.error.reason, record.error.message) == ("rejected", "not today")


async def test_explicit_retry_delay_is_honoured(make_app: Callable[..., Burrow]) -> None:
    """Retry(delay=0.8) makes the next attempt start no sooner than 0.8 s later."""
    app = make_app()
    starts: list[float] = []

    @app.task(max_retries=3)
    async def later(p: dict[str, Any], ctx: TaskContext) -> int:
        starts.append(time.monotonic())
        if ctx.attempt == 1:
            raise Retry(delay=0.8)
        return ctx.attempt

    async with running_worker(app):
        handle = await app.submit("later", {})
        record = await app.wait(handle.id, timeout=15)
    assert record.result == 2
    gap = starts[1] - starts[0]
    assert 0.75 <= gap < 0.8 + LATE


async def test_invalid_payload_in_message_fails_without_retry(
    make_app: Callable[..., Burrow],
) -> None:
    """A message whose body fails the model fails once with a validation error."""
    app = make_app()
    runs: list[int] = []

    @app.task(max_retries=5)
    async def add(p: Add) -> int:
        runs.append(1)
        return p.a + p.b

    async with running_worker(app):
        await app.declare_queue("default")
        # Bypass submit-side validation, as a foreign producer would.
        await app.connect()
        await app.broker.publish(
            app.names.queue("default"), b'{"a": "x"}', message_id="bad-payload-1", type_="add"
        )
        record = await app.wait("bad-payload-1", timeout=15)
    assert runs == []
    assert record.status is TaskStatus.FAILED
    assert record.attempts == 1
    assert record.error is not None
    assert record.error.reason == "validation_error"


async def test_timeout_cancels_async_handler(make_app: Callable[..., Burrow]) -> None:
    """A handler exceeding its timeout is cancelled and retried, then dead-lettered."""
    app = make_app()
    runs: list[int] = []

    @app.task(timeout=0.3, max_retries=1)
    async def slow(p: dict[str, Any]) -> None:
        import asyncio

        runs.append(1)
        await asyncio.sleep(30)

    async with running_worker(app):
        handle = await app.submit("slow", {})
        record = await app.wait(handle.id, timeout=20)
    assert len(runs) == 2
    assert record.status is TaskStatus.FAILED
    assert record.error is not None
    assert record.error.type == "TaskTimeout"


async def test_submit_with_an_existing_task_id_returns_it(
    make_app: Callable[..., Burrow],
) -> None:
    """A second submit with the same ``task_id`` returns the first task (existing=True)
    and leaves its record alone. While the task is queued its message is published again
    (the repair of a submit that crashed before its publish) and the task still runs
    once; once it finished, nothing more is published."""
    app = make_app()
    runs: list[int] = []

    @app.task(queue="math")
    async def add(p: Add) -> int:
        runs.append(p.a)
        return p.a + p.b

    first = await app.submit("add", {"a": 1, "b": 2}, task_id="fixed-id")
    again = await app.submit("add", {"a": 5, "b": 5}, task_id="fixed-id")
    assert not first.existing
    assert again.existing
    assert again.id == first.id
    work, _ = await app.queue_stats("math")
    assert work is not None
    assert work.messages == 2
    async with running_worker(app) as worker:
        record = await app.wait("fixed-id", timeout=20)
        await eventually(
            lambda: worker.statistics().deduplicated == 1, timeout=10, what="copy acked"
        )
    assert record.status is TaskStatus.SUCCEEDED
    assert record.payload == {"a": 1, "b": 2}
    assert runs == [1]
    late = await app.submit("add", {"a": 1, "b": 2}, task_id="fixed-id")
    assert late.existing
    work, _ = await app.queue_stats("math")
    assert work is not None
    assert work.messages == 0


async def test_on_dead_runs_when_the_worker_died_before_its_hooks(
    make_app: Callable[..., Burrow],
) -> None:
    """A worker recorded the task dead but never ran its on_dead hooks (here: a worker
    without them, standing in for one that crashed before the ack). A redelivery of the
    message to a worker with the hooks runs them, once; a succeeded task's duplicate runs
    none."""
    first = make_app()

    @first.task(max_retries=0)
    async def doomed(p: dict[str, Any]) -> None:
        raise Reject("no")

    @first.task()
    async def fine(p: dict[str, Any]) -> None:
        return None

    async with running_worker(first):
        dead = await first.submit("doomed", {})
        done = await first.submit("fine", {})
        assert (await first.wait(dead.id, timeout=20)).status is TaskStatus.FAILED
        assert (await first.wait(done.id, timeout=20)).status is TaskStatus.SUCCEEDED

    second = make_app()
    compensated: list[str] = []
    second.task(max_retries=0)(doomed)
    second.task()(fine)

    @second.on_dead("doomed")
    async def undo(record: Any) -> None:
        compensated.append(record.id)

    @second.on_dead("fine")
    async def never(record: Any) -> None:
        compensated.append(record.id)

    queue = second.names.queue("default")
    await second.connect()
    async with running_worker(second) as worker:
        for handle in (dead, done, dead):  # redeliveries of finished tasks
            await second.broker.publish(
                queue, b"{}", message_id=handle.id, type_=handle.name, headers={HDR_ATTEMPT: 1}
            )
        await eventually(
            lambda: worker.statistics().deduplicated == 3, timeout=10, what="3 duplicates"
        )
    assert compensated == [dead.id]
