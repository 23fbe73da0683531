"""``/api/v1/queues``, ``/api/v1/dead-letters`` and ``/api/v1/workers`` for an app with event
subscribers and RPC handlers, on the real RabbitMQ and Redis: every queue with its kind,
subscriber dead letters listed, replayed and deleted one by one, resolved ones purged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from burrow import Burrow, Exchange, Reject
from tests.api.conftest import asgi_client, assert_envelope
from tests.conftest import eventually, running_worker

pytestmark = pytest.mark.integration

EVENTS = Exchange("shop.events", "topic")


class Order(BaseModel):
    order_id: int


def shop(app: Burrow, broken: dict[str, bool]) -> Burrow:
    """A task queue, a shared and a broadcast subscriber and an RPC handler; the audit
    subscriber and the task fail for good while ``broken`` says so."""

    @app.task(queue="shop.fulfilment", max_retries=0)
    async def fulfil_order(p: Order) -> int:
        if broken["fulfil"]:
            raise Reject("warehouse closed")
        return p.order_id

    @app.subscriber(EVENTS, "order.#", queue="shop.audit", max_retries=0)
    async def audit_trail(event: Order) -> int:
        if broken["audit"]:
            raise ValueError(f"audit store down for order {event.order_id}")
        return event.order_id

    @app.subscriber(EVENTS, "order.created")
    async def warm_cache(event: Order) -> None: ...

    @app.rpc("price")
    async def price(p: Order) -> int:
        return p.order_id * 100

    return app


async def letters(c: httpx.AsyncClient, queue: str) -> list[dict[str, Any]]:
    r = await c.get("/api/v1/dead-letters", params={"queue": queue})
    found: list[dict[str, Any]] = assert_envelope(r)["data"]
    return found


async def test_queues_lists_every_kind_and_workers_show_subscriber_queues(
    make_app: Callable[..., Burrow],
) -> None:
    """GET /queues has task, subscriber, broadcast and rpc queues with their kind and
    dead-letter queue; GET /workers shows the subscriber and RPC queues a worker consumes."""
    app = shop(make_app(), {"fulfil": False, "audit": False})
    ns = app.names.namespace
    async with running_worker(app), asgi_client(app) as c:
        queues = {q["name"]: q for q in assert_envelope(await c.get("/api/v1/queues"))["data"]}
        workers = assert_envelope(await c.get("/api/v1/workers"))["data"]
    assert {n: q["kind"] for n, q in queues.items()} == {
        "shop.fulfilment": "task",
        "shop.audit": "subscriber",
        "sub.warm_cache": "broadcast",
        "rpc.price": "rpc",
    }
    assert queues["shop.audit"]["handlers"] == ["audit_trail"]
    assert queues["shop.audit"]["broker_name"] == f"{ns}.shop.audit"
    assert queues["shop.audit"]["consumers"] == 1
    assert queues["shop.audit"]["dead_letters"] == 0
    assert queues["shop.audit"]["dead_letter_queue"] == f"{ns}.shop.audit.dlq"
    assert queues["sub.warm_cache"]["depth"] is None  # only its worker can read its queue
    assert queues["sub.warm_cache"]["dead_letters"] == 0
    assert queues["rpc.price"]["consumers"] == 1
    assert queues["rpc.price"]["dead_letter_queue"] is None
    assert queues["rpc.price"]["dead_letters"] is None
    assert [(w["subscriber_queues"], w["rpc_queues"]) for w in workers] == [
        (["shop.audit", "sub.warm_cache"], ["rpc.price"])
    ]


async def test_subscriber_dead_letters_are_listed_replayed_and_deleted_by_id(
    make_app: Callable[..., Burrow],
) -> None:
    """A subscriber queue's dead letters are listed (no longer 404), one is replayed by id
    and runs again, one is deleted by id, and ids without a dead letter are reported."""
    broken = {"fulfil": False, "audit": True}
    app = shop(make_app(), broken)
    async with running_worker(app), asgi_client(app) as c:
        events = [await app.publish(EVENTS, "order.created", {"order_id": n}) for n in (1, 2)]
        ids = [f"{e}:audit_trail" for e in events]
        for task_id in ids:
            await app.wait(task_id, timeout=15)
        found = await eventually(
            lambda: _n_letters(c, "shop.audit", 2), timeout=10, what="two dead letters"
        )
        assert sorted(d["task_id"] for d in found) == sorted(ids)
        assert {d["status"] for d in found} == {"failed"}
        assert {d["queue"] for d in found} == {"shop.audit"}
        assert "audit store down" in found[0]["error"]["message"]

        broken["audit"] = False
        body = {"queue": "shop.audit", "ids": [ids[0], "no-such-task"]}
        replayed = assert_envelope(await c.post("/api/v1/dead-letters/replay", json=body))
        assert replayed["data"] == {
            "total": 1,
            "queues": {"shop.audit": 1},
            "missing": ["no-such-task"],
        }
        assert (await app.wait(ids[0], timeout=15)).status == "succeeded"

        deleted = await c.delete(
            "/api/v1/dead-letters", params={"queue": "shop.audit", "id": ids[1]}
        )
        assert assert_envelope(deleted)["data"] == {"total": 1, "queues": {"shop.audit": 1}}
        assert await letters(c, "shop.audit") == []

        gone = await c.delete("/api/v1/dead-letters", params={"queue": "shop.audit", "id": ids[1]})
        assert gone.status_code == 404
        assert assert_envelope(gone)["error"]["type"] == "dead_letter_not_found"
        assert gone.json()["error"]["details"] == {"missing": [ids[1]]}


async def test_resolved_dead_letters_are_flagged_kept_on_replay_and_purged(
    make_app: Callable[..., Burrow],
) -> None:
    """A dead letter whose task succeeded on retry is listed as resolved; a replay keeps
    it (and says so), and DELETE ?resolved=true removes just the resolved ones."""
    broken = {"fulfil": True, "audit": False}
    app = shop(make_app(), broken)
    async with running_worker(app), asgi_client(app) as c:
        ids = [
            (await c.post("/api/v1/tasks/fulfil_order", json={"payload": {"order_id": n}})).json()[
                "data"
            ]["id"]
            for n in (1, 2)
        ]
        for task_id in ids:
            await app.wait(task_id, timeout=15)
        await eventually(
            lambda: _n_letters(c, "shop.fulfilment", 2), timeout=10, what="two dead letters"
        )
        broken["fulfil"] = False
        assert (await c.post(f"/api/v1/tasks/{ids[0]}/retry")).status_code == 202
        assert (await app.wait(ids[0], timeout=15)).status == "succeeded"

        found = {d["task_id"]: d for d in await letters(c, "shop.fulfilment")}
        assert (found[ids[0]]["status"], found[ids[0]]["resolved"]) == ("succeeded", True)
        assert (found[ids[1]]["status"], found[ids[1]]["resolved"]) == ("failed", False)

        body = {"queue": "shop.fulfilment", "ids": [ids[0]]}
        kept = assert_envelope(await c.post("/api/v1/dead-letters/replay", json=body))
        assert kept["data"] == {
            "total": 0,
            "queues": {"shop.fulfilment": 0},
            "kept": {"shop.fulfilment": {"resolved": 1}},
        }
        purged = await c.delete(
            "/api/v1/dead-letters", params={"queue": "shop.fulfilment", "resolved": "true"}
        )
        assert assert_envelope(purged)["data"]["total"] == 1
        assert [d["task_id"] for d in await letters(c, "shop.fulfilment")] == [ids[1]]


async def test_rpc_and_unknown_queues_have_no_dead_letters(
    make_app: Callable[..., Burrow],
) -> None:
    """Dead-letter routes answer 404 unknown_queue for an RPC queue (saying why) and for a
    queue the app does not have; the known list names subscriber queues too."""
    app = shop(make_app(), {"fulfil": False, "audit": False})
    async with asgi_client(app) as c:
        rpc = await c.get("/api/v1/dead-letters", params={"queue": "rpc.price"})
        unknown = await c.delete("/api/v1/dead-letters", params={"queue": "nope"})
        too_many = await c.post(
            "/api/v1/dead-letters/replay", json={"ids": [f"t{n}" for n in range(1001)]}
        )
        too_long = await c.delete(
            "/api/v1/dead-letters", params={"queue": "shop.audit", "id": "x" * 401}
        )
    assert rpc.status_code == 404
    assert assert_envelope(rpc)["error"]["type"] == "unknown_queue"
    assert "never dead-lettered" in rpc.json()["message"]
    assert unknown.status_code == 404
    assert unknown.json()["error"]["details"]["known"] == [
        "shop.fulfilment",
        "shop.audit",
        "sub.warm_cache",
    ]
    assert too_many.status_code == 422
    assert too_long.status_code == 422


async def _n_letters(c: httpx.AsyncClient, queue: str, n: int) -> list[dict[str, Any]] | None:
    found = await letters(c, queue)
    if len(found) != n:
        await asyncio.sleep(0.05)
        return None
    return found
