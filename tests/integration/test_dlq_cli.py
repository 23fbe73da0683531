"""``burrow queues`` and ``burrow dlq`` as real subprocesses at 80 columns, on an app whose
failures happen in an event subscriber: its queue and dead letters are shown with whole
ids, and a dead letter is replayed by id; resolved ones are purged with ``--resolved``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from burrow import Burrow, Exchange, Reject, TaskStatus
from tests.conftest import eventually, running_worker
from tests.integration._procs import burrow

pytestmark = pytest.mark.integration

APP = "tests.integration.test_dlq_cli:app"
EVENTS = Exchange("shop.events", "topic")
#: What the handlers do; the subprocesses only list, replay and purge (they run nothing).
BROKEN = {"audit": True, "fulfil": True}


class Order(BaseModel):
    order_id: int


def register(target: Burrow) -> Burrow:
    @target.subscriber(EVENTS, "order.#", queue="shop.audit", max_retries=0)
    async def audit_trail(event: Order) -> int:
        if BROKEN["audit"]:
            raise ValueError(f"audit store down for order {event.order_id}")
        return event.order_id

    @target.task(queue="shop.fulfilment", max_retries=0)
    async def fulfil_order(p: Order) -> int:
        if BROKEN["fulfil"]:
            raise Reject("warehouse closed")
        return p.order_id

    return target


#: The app the CLI loads (namespace from BURROW_NAMESPACE).
app = register(Burrow())


def cli(namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m burrow *args`` on ``namespace`` in an 80-column terminal (no line of
    its output but JSON is wider)."""
    done = burrow(namespace, *args, columns=80)
    if "--json" not in args:
        assert all(len(line) <= 80 for line in done.stdout.splitlines()), done.stdout
    return done


async def test_subscriber_dead_letters_through_the_cli_at_80_columns(
    make_app: Callable[..., Burrow], namespace: str
) -> None:
    """burrow queues names the subscriber queue and its kind; burrow dlq list shows its
    dead letters with whole ids; replay --id runs one again; the other stays."""
    BROKEN.update(audit=True, fulfil=True)
    worker_app = register(make_app())
    async with running_worker(worker_app):
        events = [
            await worker_app.publish(EVENTS, "order.created", {"order_id": n}) for n in (1, 2)
        ]
        ids = [f"{e}:audit_trail" for e in events]
        for task_id in ids:
            await worker_app.wait(task_id, timeout=15)
        await eventually(lambda: _count(worker_app, "shop.audit", 2), timeout=10, what="letters")

        queues = cli(namespace, "queues", APP)
        assert queues.returncode == 0, queues.stderr
        assert "shop.audit" in queues.stdout
        assert "subscriber" in queues.stdout

        listed = cli(namespace, "dlq", APP, "list")
        assert listed.returncode == 0, listed.stderr
        assert "shop.audit (subscriber): 2 dead letter(s)" in listed.stdout
        lines = listed.stdout.splitlines()
        for task_id in ids:
            assert any(task_id in line for line in lines), listed.stdout  # whole, one line
        assert "…" not in listed.stdout

        BROKEN["audit"] = False
        replayed = cli(namespace, "dlq", APP, "replay", "--queue", "shop.audit", "--id", ids[0])
        assert replayed.returncode == 0, replayed.stderr
        assert "shop.audit: replayed 1" in replayed.stdout
        assert (await worker_app.wait(ids[0], timeout=15)).status is TaskStatus.SUCCEEDED

        as_json = cli(namespace, "dlq", APP, "list", "--queue", "shop.audit", "--json")
        left: list[dict[str, Any]] = json.loads(as_json.stdout)
        assert [(d["task_id"], d["status"]) for d in left] == [(ids[1], "failed")]
        assert "audit store down for order 2" in left[0]["error"]["message"]

        missing = cli(namespace, "dlq", APP, "replay", "--id", "no-such-task")
        assert missing.returncode == 1
        assert "no dead letter of: no-such-task" in missing.stdout


async def test_resolved_dead_letters_are_marked_and_purged_with_resolved(
    make_app: Callable[..., Burrow], namespace: str
) -> None:
    """A task retried to success after its dead letter shows as resolved in dlq list, replay
    keeps it, and purge --resolved deletes it while the still-failed one stays; a queue
    that has no dead letters is refused."""
    BROKEN.update(audit=False, fulfil=True)
    worker_app = register(make_app())
    async with running_worker(worker_app):
        done = await worker_app.submit("fulfil_order", {"order_id": 1})
        still = await worker_app.submit("fulfil_order", {"order_id": 2})
        for handle in (done, still):
            await worker_app.wait(handle.id, timeout=15)
        await eventually(
            lambda: _count(worker_app, "shop.fulfilment", 2), timeout=10, what="letters"
        )
        BROKEN["fulfil"] = False
        await worker_app.retry(done.id)
        await worker_app.wait(done.id, timeout=15)

        listed = cli(namespace, "dlq", APP, "list", "--queue", "shop.fulfilment")
        assert "(resolved)" in listed.stdout
        replayed = cli(namespace, "dlq", APP, "replay", "--queue", "shop.fulfilment")
        assert "shop.fulfilment: replayed 1; kept 1 resolved" in replayed.stdout
        await worker_app.wait(still.id, timeout=15)

        purged = cli(
            namespace, "dlq", APP, "purge", "--queue", "shop.fulfilment", "--resolved", "--yes"
        )
        assert purged.returncode == 0, purged.stderr
        assert "shop.fulfilment: purged 1" in purged.stdout
        assert await worker_app.dead_letters("shop.fulfilment") == []

    unknown = cli(namespace, "dlq", APP, "list", "--queue", "nope")
    assert unknown.returncode == 2
    said = " ".join(unknown.stderr.replace("│", " ").split())  # Rich boxes and wraps it
    assert "no task or subscriber of the app uses queue 'nope'" in said


async def _count(target: Burrow, queue: str, n: int) -> bool:
    return len(await target.dead_letters(queue)) == n
