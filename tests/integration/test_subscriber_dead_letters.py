"""Dead letters of event subscribers and of tasks that later succeeded, on the real RabbitMQ
and Redis: listed with their task's status, replayed (a broadcast one to the worker process
it failed in), kept when replaying would be wrong, and removed one by one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from burrow import Burrow, Exchange, Reject, TaskContext, TaskStatus
from tests.conftest import eventually, running_worker

pytestmark = pytest.mark.integration

EVENTS = Exchange("shop.events", "topic")


class Order(BaseModel):
    order_id: int


def flaky_shop(app: Burrow, broken: dict[str, bool]) -> Burrow:
    """A shared subscriber (``shop.audit``) and a broadcast one (``warm_cache``) that fail
    for good while ``broken`` says so, and a task that does the same."""

    @app.subscriber(EVENTS, "order.#", queue="shop.audit", max_retries=0)
    async def audit_trail(event: Order) -> int:
        if broken["audit"]:
            raise ValueError(f"audit store down for order {event.order_id}")
        return event.order_id

    @app.subscriber(EVENTS, "order.created", max_retries=0)
    async def warm_cache(event: Order) -> int:
        if broken["cache"]:
            raise ValueError("cache unreachable")
        return event.order_id

    @app.task(queue="shop.fulfilment", max_retries=0)
    async def fulfil_order(p: Order, ctx: TaskContext) -> int:
        if broken["fulfil"]:
            raise Reject("warehouse closed")
        return p.order_id

    return app


async def status_of(app: Burrow, task_id: str) -> TaskStatus:
    return (await app.get(task_id)).status


async def dead_ids(app: Burrow, queue: str) -> list[str | None]:
    """The task ids of ``queue``'s dead letters, sorted: tasks that fail at the same time
    are dead-lettered in either order, and a replay pass puts back what it leaves."""
    return sorted((d.task_id for d in await app.dead_letters(queue)), key=str)


async def test_shared_subscriber_dead_letters_are_listed_replayed_and_purged(
    make_app: Callable[..., Burrow],
) -> None:
    """A subscriber queue's dead letters appear among the app's dead-letter queues, are
    listed with the failed status, and a replay runs the event again under the same id."""
    broken = {"audit": True, "cache": False, "fulfil": False}
    app = flaky_shop(make_app(), broken)
    assert "shop.audit" in app.dead_letter_queues()
    async with running_worker(app):
        event_id = await app.publish(EVENTS, "order.created", {"order_id": 7})
        task_id = f"{event_id}:audit_trail"
        await app.wait(task_id, timeout=15)
        letters = await eventually(
            lambda: app.dead_letters("shop.audit"), timeout=10, what="audit dead letter"
        )
        assert [(d.task_id, d.status, d.resolved) for d in letters] == [(task_id, "failed", False)]
        assert letters[0].queue == "shop.audit"
        assert letters[0].dead_at is not None

        broken["audit"] = False
        report = await app.replay_dead_letters_report("shop.audit")
        assert (report.done, dict(report.kept), report.matched) == (1, {}, {task_id})
        record = await app.wait(task_id, timeout=15)
        assert record.status is TaskStatus.SUCCEEDED
        assert record.result == 7
        assert await app.dead_letters("shop.audit") == []


async def test_broadcast_dead_letter_goes_back_to_its_worker_or_stays(
    make_app: Callable[..., Burrow],
) -> None:
    """A broadcast subscriber's dead letter is replayed to the worker process it failed in
    while that process runs; once it has stopped, the dead letter stays (worker_gone) and
    its task stays failed."""
    broken = {"audit": False, "cache": True, "fulfil": False}
    operator = make_app()
    flaky_shop(operator, {"audit": False, "cache": False, "fulfil": False})
    worker_app = flaky_shop(make_app(), broken)
    async with running_worker(worker_app) as worker:
        await eventually(
            lambda: _has_worker(operator, worker.worker_id), timeout=10, what="heartbeat"
        )
        first = await operator.publish(EVENTS, "order.created", {"order_id": 1})
        first_id = f"{first}:warm_cache@{worker.worker_id}"
        await operator.wait(first_id, timeout=15)
        await eventually(
            lambda: _listed(operator, "sub.warm_cache", first_id), timeout=10, what="dead letter"
        )
        broken["cache"] = False
        report = await operator.replay_dead_letters_report("sub.warm_cache")
        assert report.done == 1
        assert (await operator.wait(first_id, timeout=15)).status is TaskStatus.SUCCEEDED

        broken["cache"] = True
        second = await operator.publish(EVENTS, "order.created", {"order_id": 2})
        second_id = f"{second}:warm_cache@{worker.worker_id}"
        await operator.wait(second_id, timeout=15)
        await eventually(
            lambda: _listed(operator, "sub.warm_cache", second_id), timeout=10, what="2nd letter"
        )
    report = await operator.replay_dead_letters_report("sub.warm_cache")
    assert (report.done, dict(report.kept)) == (0, {"worker_gone": 1})
    assert await dead_ids(operator, "sub.warm_cache") == [second_id]
    assert await status_of(operator, second_id) is TaskStatus.FAILED


async def test_a_failed_publish_puts_the_reopened_record_back(
    make_app: Callable[..., Burrow],
) -> None:
    """When a broadcast replay's publish finds the worker's queue gone although its
    heartbeat was still there, the record goes back to failed and the dead letter stays."""
    broken = {"audit": False, "cache": True, "fulfil": False}
    operator = make_app()
    flaky_shop(operator, dict(broken))
    worker_app = flaky_shop(make_app(), broken)
    async with running_worker(worker_app) as worker:
        event = await operator.publish(EVENTS, "order.created", {"order_id": 3})
        task_id = f"{event}:warm_cache@{worker.worker_id}"
        await operator.wait(task_id, timeout=15)
        await eventually(
            lambda: _listed(operator, "sub.warm_cache", task_id), timeout=10, what="dead letter"
        )
    # The worker stopped (its exclusive queue is gone); a heartbeat as if it still ran:
    await operator.state.heartbeat(worker.worker_id, {"id": worker.worker_id}, ttl=30)
    report = await operator.replay_dead_letters_report("sub.warm_cache")
    assert (report.done, dict(report.kept)) == (0, {"worker_gone": 1})
    assert await status_of(operator, task_id) is TaskStatus.FAILED
    assert await dead_ids(operator, "sub.warm_cache") == [task_id]


async def test_dead_letters_of_tasks_that_succeeded_since_are_resolved_and_kept(
    make_app: Callable[..., Burrow],
) -> None:
    """A dead letter whose task later succeeded (retried) is listed as resolved, a replay
    leaves it in place instead of running the task twice, and removing the resolved ones
    deletes it and only it."""
    broken = {"audit": False, "cache": False, "fulfil": True}
    app = flaky_shop(make_app(), broken)
    async with running_worker(app):
        done = await app.submit("fulfil_order", {"order_id": 1})
        still = await app.submit("fulfil_order", {"order_id": 2})
        for handle in (done, still):
            await app.wait(handle.id, timeout=15)
        await eventually(
            lambda: _count(app, "shop.fulfilment", 2), timeout=10, what="two dead letters"
        )
        broken["fulfil"] = False
        await app.retry(done.id)
        assert (await app.wait(done.id, timeout=15)).status is TaskStatus.SUCCEEDED

        letters = {d.task_id: d for d in await app.dead_letters("shop.fulfilment")}
        assert (letters[done.id].status, letters[done.id].resolved) == ("succeeded", True)
        assert (letters[still.id].status, letters[still.id].resolved) == ("failed", False)

        report = await app.replay_dead_letters_report("shop.fulfilment", ids=[done.id])
        assert (report.done, dict(report.kept)) == (0, {"resolved": 1})
        assert await dead_ids(app, "shop.fulfilment") == sorted([done.id, still.id])

        removed = await app.remove_dead_letters("shop.fulfilment", resolved=True)
        assert removed.done == 1
        assert await dead_ids(app, "shop.fulfilment") == [still.id]
        assert await status_of(app, done.id) is TaskStatus.SUCCEEDED


async def test_replay_and_remove_single_dead_letters_by_task_id(
    make_app: Callable[..., Burrow],
) -> None:
    """Replay and removal by task id act on the named dead letters only; the others stay in
    their order, and an id with no dead letter is reported unmatched."""
    broken = {"audit": False, "cache": False, "fulfil": True}
    app = flaky_shop(make_app(), broken)
    async with running_worker(app):
        ids = [(await app.submit("fulfil_order", {"order_id": n})).id for n in range(3)]
        for task_id in ids:
            await app.wait(task_id, timeout=15)
        await eventually(
            lambda: _count(app, "shop.fulfilment", 3), timeout=10, what="three dead letters"
        )
        broken["fulfil"] = False
        report = await app.replay_dead_letters_report(
            "shop.fulfilment", ids=[ids[1], "no-such-task"]
        )
        assert (report.done, report.matched) == (1, {ids[1]})
        assert (await app.wait(ids[1], timeout=15)).status is TaskStatus.SUCCEEDED

        removed = await app.remove_dead_letters("shop.fulfilment", ids=[ids[2]])
        assert (removed.done, removed.matched) == (1, {ids[2]})
        assert await dead_ids(app, "shop.fulfilment") == [ids[0]]
        assert await status_of(app, ids[2]) is TaskStatus.FAILED  # deleting keeps the record
        assert await app.purge_dead_letters("shop.fulfilment", ids=["no-such-task"]) == 0
        assert await app.purge_dead_letters("shop.fulfilment") == 1


async def _has_worker(app: Burrow, worker_id: str) -> bool:
    await app.state.open()
    return any(w.get("id") == worker_id for w in await app.state.workers())


async def _listed(app: Burrow, queue: str, task_id: str) -> bool:
    return task_id in await dead_ids(app, queue)


async def _count(app: Burrow, queue: str, n: int) -> Any:
    letters = await app.dead_letters(queue)
    return letters if len(letters) == n else None
