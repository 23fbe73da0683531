"""The example shop (examples/shop) as ``make up`` runs it: ``burrow up`` with the shop's
routes, a real database (a SQLite file, and a PostgreSQL database made for the run) and
the real RabbitMQ and Redis. One server per database serves all the tests of the module;
each test orders products of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from examples.shop import service
from examples.shop.db import Compensation, Database, Payment, ProcessedEvent, Refund, SmsOutbox
from sqlalchemy import func, select

from burrow import Burrow, Settings, TaskStatus
from tests._leaks import new_namespace
from tests.conftest import cleanup, eventually
from tests.integration.test_up import free_port, wait_ready

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP = "examples.shop.app:app"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
#: The SMS rate limit the server runs with: low, so a burst of orders has to wait for it.
SMS_LIMIT = 10
#: How late an SMS's outbox row may be written after the limiter's slot on a busy machine.
SMS_LATENESS = 0.5
QUEUES = ["shop.inventory", "shop.notifications", "shop.audit", "shop.fulfilment", "shop.sms"]
PHONE = "+44 7700 900123"


@dataclass
class Shop:
    """A running shop: its HTTP base, database, namespace and server log."""

    base: str
    db_url: str
    namespace: str
    log: Path


def _create_pg_database(name: str) -> str:
    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def _drop_pg_database(name: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    """``burrow up examples.shop.app:app`` on a fresh database and namespace."""
    namespace = new_namespace("t")
    tmp = tmp_path_factory.mktemp(f"shop-{request.param}")
    pg_name = f"shop_{namespace}"
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp / 'shop.db'}"
    else:
        db_url = _create_pg_database(pg_name)
    port = free_port()
    env = {
        **os.environ,
        "BURROW_NAMESPACE": namespace,
        "BURROW_API_KEYS": "",
        "BURROW_GRACE": "5",
        "SHOP_DATABASE_URL": db_url,
        "SHOP_SMS_RATE": f"{SMS_LIMIT}/s",
        "SHOP_FULFIL_RETRIES": "1",
    }
    log = tmp / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "burrow",
                "up",
                APP,
                "--port",
                str(port),
                "--log-format",
                "json",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, timeout=60)
        yield Shop(base, db_url, namespace, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        asyncio.run(cleanup(namespace, [*QUEUES, "default"], exchanges=["shop.events"]))
        if request.param == "postgresql":
            _drop_pg_database(pg_name)


@pytest.fixture
async def http(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shop.base, timeout=30) as client:
        yield client


@pytest.fixture
async def db(shop: Shop) -> AsyncIterator[Database]:
    """The shop's database, opened from the test (to read tables and call the service)."""
    database = Database(shop.db_url)
    yield database
    await database.dispose()


async def new_product(
    http: httpx.AsyncClient, stock: int, *, price: int = 250, broken: bool = False
) -> str:
    sku = f"p-{uuid.uuid4().hex[:8]}"
    body = {"price_cents": price, "stock": stock, "broken": broken}
    r = await http.put(f"/products/{sku}", json=body)
    assert r.status_code == 200, r.text
    return sku


async def order(http: httpx.AsyncClient, sku: str, qty: int = 1) -> str:
    r = await http.post("/orders", json={"sku": sku, "qty": qty, "phone": PHONE})
    assert r.status_code == 201, r.text
    assert r.json()["data"]["status"] == "pending"
    return str(r.json()["data"]["id"])


async def get(http: httpx.AsyncClient, path: str) -> Any:
    r = await http.get(path)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def terminal(http: httpx.AsyncClient, *ids: str, shop: Shop) -> dict[str, str]:
    """Wait until every order in ``ids`` is confirmed, rejected or cancelled."""

    async def statuses() -> dict[str, str] | None:
        found = {i: (await get(http, f"/orders/{i}"))["status"] for i in ids}
        return found if all(s in service.TERMINAL for s in found.values()) else None

    found: dict[str, str] = await eventually(
        statuses, timeout=60, what="orders terminal", pool=_Log(shop)
    )
    return found


async def product(http: httpx.AsyncClient, sku: str) -> dict[str, Any]:
    found = [p for p in await get(http, "/products") if p["sku"] == sku]
    assert found, sku
    return dict(found[0])


async def count(db: Database, model: Any, *where: Any) -> int:
    sessions = await db.sessions()
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


class _Log:
    """The server's log, shown when a wait fails."""

    def __init__(self, shop: Shop) -> None:
        self.path = shop.log

    def output(self) -> str:
        return self.path.read_text(errors="replace")[-6000:]


async def test_an_order_is_confirmed_deducted_charged_texted_and_audited(
    shop: Shop, http: httpx.AsyncClient, db: Database
) -> None:
    """POST /orders answers at once (pending); then the stock is deducted, the order
    charged and confirmed, the customer texted, and its three events audited."""
    sku = await new_product(http, stock=10, price=300)
    order_id = await order(http, sku, qty=3)
    assert await terminal(http, order_id, shop=shop) == {order_id: "confirmed"}
    assert await product(http, sku) == {
        "sku": sku,
        "name": sku,
        "price_cents": 300,
        "stock": 7,
        "sold": 3,
        "initial_stock": 10,
        "broken": False,
    }
    assert await count(db, Payment, Payment.order_id == order_id) == 1
    sms = await eventually(
        lambda: count(db, SmsOutbox, SmsOutbox.order_id == order_id), timeout=30, what="SMS"
    )
    assert sms == 1
    history = await eventually(
        lambda: _history_with(http, order_id, 3), timeout=30, what="three audited events"
    )
    assert [e["type"] for e in history["events"]] == ["created", "reserved", "confirmed"]


async def _history_with(http: httpx.AsyncClient, order_id: str, n: int) -> Any:
    history = await get(http, f"/orders/{order_id}/history")
    return history if len(history["events"]) >= n else None


async def test_a_redelivered_order_event_deducts_the_stock_once(
    shop: Shop, http: httpx.AsyncClient, db: Database
) -> None:
    """The order.created event published again with its own id (burrow's dedupe) and with
    a new message id (past burrow's dedupe: the inventory's processed-events table) leaves
    the stock deducted once."""
    sku = await new_product(http, stock=10)
    order_id = await order(http, sku, qty=2)
    await terminal(http, order_id, shop=shop)
    # All three (created, reserved, confirmed): the audit consumer may store them in any order.
    created = await eventually(
        lambda: _history_with(http, order_id, 3), timeout=30, what="three audited events"
    )
    event = next(e for e in created["events"] if e["type"] == "created")
    client = Burrow(settings=Settings(namespace=shop.namespace))
    try:
        await client.publish("shop.events", "order.created", event, message_id=event["event_id"])
        replay_id = f"replay-{uuid.uuid4().hex}"
        await client.publish("shop.events", "order.created", event, message_id=replay_id)
        replayed = await client.wait(f"{replay_id}:reserve_stock", timeout=30)
        assert replayed.status is TaskStatus.SUCCEEDED, replayed
        assert replayed.result == "confirmed"  # it found the order as it was, changed nothing
        first = await client.get(f"{event['event_id']}:reserve_stock")
        assert first.attempts == 1  # the same id again was acked without running

        async def drained() -> bool:
            work, _dead = await client.queue_stats("shop.inventory")
            return work is not None and work.messages == 0

        await eventually(drained, timeout=30, what="inventory queue drained")
    finally:
        await client.close()
    stock = await product(http, sku)
    assert (stock["stock"], stock["sold"]) == (8, 2)
    assert await count(db, ProcessedEvent, ProcessedEvent.event_id == event["event_id"]) == 1


async def test_concurrent_orders_for_the_last_items_never_oversell(
    shop: Shop, http: httpx.AsyncClient
) -> None:
    """20 orders at once for 5 items: exactly 5 confirmed, 15 rejected, stock 0, sold 5."""
    sku = await new_product(http, stock=5)
    ids = await asyncio.gather(*(order(http, sku) for _ in range(20)))
    statuses = await terminal(http, *ids, shop=shop)
    assert sorted(statuses.values()).count("confirmed") == 5, statuses
    assert list(statuses.values()).count("rejected") == 15, statuses
    stock = await product(http, sku)
    assert (stock["stock"], stock["sold"]) == (0, 5)
    rejected = next(i for i, s in statuses.items() if s == "rejected")
    assert "out of stock" in (await get(http, f"/orders/{rejected}"))["reason"]


async def test_sms_go_to_the_outbox_within_the_rate_limit(
    shop: Shop, http: httpx.AsyncClient, db: Database
) -> None:
    """A burst of 15 orders makes 15 SMS, one per order, each written to the outbox once,
    at no more than the limit of 10/s: no stretch of 0.5 s holds more than 10 sends (the
    other half second is the lateness a loaded machine adds between the limiter's slot and
    the outbox write), and the burst is spread over at least half a second."""
    sku = await new_product(http, stock=100)
    ids = await asyncio.gather(*(order(http, sku) for _ in range(15)))
    await terminal(http, *ids, shop=shop)

    async def all_sent() -> list[SmsOutbox] | None:
        sessions = await db.sessions()
        async with sessions() as session:
            rows = list(await session.scalars(select(SmsOutbox).where(SmsOutbox.order_id.in_(ids))))
        return rows if len(rows) >= len(ids) else None

    rows = await eventually(all_sent, timeout=60, what="15 SMS sent")
    assert sorted(r.order_id for r in rows) == sorted(ids)
    assert all("confirmed" in r.text and r.phone == PHONE for r in rows)
    sessions = await db.sessions()
    async with sessions() as session:
        times = sorted(await session.scalars(select(SmsOutbox.sent_at)))
    window = 1.0 - SMS_LATENESS
    busiest = max(sum(1 for t in times if start <= t < start + window) for start in times)
    assert busiest <= SMS_LIMIT, times
    # Unlimited, 15 sends would land within a few milliseconds of each other.
    assert times[-1] - times[0] >= window, times


async def test_history_rebuilds_the_order_from_its_events(
    shop: Shop, http: httpx.AsyncClient
) -> None:
    """GET /orders/{id}/history folds the audited events into the order's state: the same
    status as the order table, for a confirmed and for a rejected order."""
    sku = await new_product(http, stock=1, price=700)
    first, second = await order(http, sku), await order(http, sku)
    statuses = await terminal(http, first, second, shop=shop)
    assert sorted(statuses.values()) == ["confirmed", "rejected"]
    for order_id, status in statuses.items():
        history = await eventually(
            lambda i=order_id: _history_with(http, i, 3 if statuses[i] == "confirmed" else 2),
            timeout=30,
            what="audited events",
        )
        rebuilt = history["rebuilt"]
        assert rebuilt["status"] == status
        assert (rebuilt["sku"], rebuilt["qty"], rebuilt["amount_cents"]) == (sku, 1, 700)
        if status == "confirmed":
            assert rebuilt["charged_cents"] == 700
            assert rebuilt["stock_reserved"] == 1
        else:
            assert "out of stock" in rebuilt["reason"]
            assert rebuilt["stock_reserved"] == 0
    r = await http.get(f"/orders/{uuid.uuid4().hex}/history")
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found"


async def test_a_failing_order_is_dead_lettered_and_compensated_once(
    shop: Shop, http: httpx.AsyncClient, db: Database
) -> None:
    """Fulfilment of a product the warehouse cannot ship fails every attempt; the task is
    dead-lettered and the order compensated: cancelled, stock released, charge refunded,
    customer texted. Compensating again (directly) and replaying the dead letter (the
    fulfilment then finds the order cancelled) change nothing more."""
    sku = await new_product(http, stock=5, price=400, broken=True)
    order_id = await order(http, sku, qty=2)
    assert await terminal(http, order_id, shop=shop) == {order_id: "cancelled"}
    cancelled = await get(http, f"/orders/{order_id}")
    assert "the warehouse cannot ship" in cancelled["reason"]
    dead = await get(http, "/api/v1/dead-letters?queue=shop.fulfilment")
    ours = [d for d in dead if d["payload"] == {"order_id": order_id}]
    assert len(ours) == 1, dead
    assert ours[0]["error"]["type"] == "WarehouseError"
    task_id = ours[0]["task_id"]
    stock = await product(http, sku)
    assert (stock["stock"], stock["sold"]) == (5, 0)
    assert await count(db, Payment, Payment.order_id == order_id) == 1
    assert await count(db, Refund, Refund.order_id == order_id) == 1
    assert await count(db, Compensation, Compensation.order_id == order_id) == 1

    assert await service.compensate(db, order_id, "again") is None
    r = await http.post("/api/v1/dead-letters/replay", json={"queue": "shop.fulfilment"})
    assert r.status_code == 200, r.text

    async def ran_again() -> Any:
        record = await get(http, f"/api/v1/tasks/{task_id}")
        return record if record["status"] in ("succeeded", "failed") else None

    # The replayed fulfilment finds the order cancelled and leaves it alone.
    record = await eventually(ran_again, timeout=30, what="the replayed task ran")
    assert (record["status"], record["result"]) == ("succeeded", "cancelled"), record
    sms = await eventually(
        lambda: count(db, SmsOutbox, SmsOutbox.order_id == order_id), timeout=30, what="SMS"
    )
    assert sms == 1
    stock = await product(http, sku)
    assert (stock["stock"], stock["sold"]) == (5, 0)
    assert await count(db, Refund, Refund.order_id == order_id) == 1
    assert await count(db, Compensation, Compensation.order_id == order_id) == 1
    history = await eventually(lambda: _history_with(http, order_id, 3), timeout=30, what="audit")
    assert history["rebuilt"]["refunded_cents"] == 800
