"""The shop's business logic on the database, free of burrow: each function is one step
of the order flow, written so that running it twice changes nothing the second time.

``app.py`` calls these from its HTTP routes and its burrow handlers, and publishes the
events they call for; the tests call some directly to prove the guards hold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select, update

from examples.shop.db import (
    AuditEvent,
    Compensation,
    Database,
    Order,
    Payment,
    ProcessedEvent,
    Product,
    Refund,
    SmsOutbox,
    changed,
    insert_ignoring_duplicates,
)

EventType = Literal["created", "reserved", "rejected", "confirmed", "cancelled"]
#: Where an order ends: every order reaches exactly one of these.
TERMINAL = ("confirmed", "rejected", "cancelled")
#: The order of the steps, for rebuilding an order from events that arrived in any order.
STEP: dict[str, int] = {"created": 0, "reserved": 1, "rejected": 1, "confirmed": 2, "cancelled": 2}


class OrderEvent(BaseModel):
    """An event of the order flow, published as ``order.{type}`` on ``shop.events``.

    ``event_id`` is derived from the order and the step (``{order_id}.{type}``), so the same
    step published again (a retry after a lost confirm, a redelivery) is the same event:
    burrow dedupes it per subscriber, and the consumers' tables dedupe it again.
    """

    event_id: str
    type: EventType
    order_id: str
    sku: str
    qty: int
    amount_cents: int
    phone: str
    occurred_at: float
    reason: str | None = None
    refund_cents: int | None = None


class WarehouseError(RuntimeError):
    """The warehouse cannot ship the product (a product marked ``broken``)."""


class UnknownProduct(LookupError):
    """No product with that SKU."""


def event_of(order: Order, type_: EventType, **extra: Any) -> OrderEvent:
    """The ``type_`` event of ``order`` (now)."""
    return OrderEvent(
        event_id=f"{order.id}.{type_}",
        type=type_,
        order_id=order.id,
        sku=order.sku,
        qty=order.qty,
        amount_cents=order.amount_cents,
        phone=order.phone,
        occurred_at=time.time(),
        **extra,
    )


# -- orders -------------------------------------------------------------------------------


async def place_order(db: Database, order_id: str, sku: str, qty: int, phone: str) -> Order:
    """Write a ``pending`` order.

    Raises:
        UnknownProduct: no product ``sku``.
    """
    sessions = await db.sessions()
    async with sessions.begin() as session:
        product = await session.get(Product, sku)
        if product is None:
            raise UnknownProduct(sku)
        now = time.time()
        order = Order(
            id=order_id,
            sku=sku,
            qty=qty,
            phone=phone,
            amount_cents=product.price_cents * qty,
            status="pending",
            created_at=now,
            updated_at=now,
        )
        session.add(order)
    return order


async def get_order(db: Database, order_id: str) -> Order | None:
    sessions = await db.sessions()
    async with sessions() as session:
        return await session.get(Order, order_id)


async def stuck_orders(db: Database, older_than: float, limit: int = 500) -> list[Order]:
    """Orders still ``pending`` after ``older_than`` seconds (their event may be lost)."""
    sessions = await db.sessions()
    async with sessions() as session:
        rows = await session.scalars(
            select(Order)
            .where(Order.status == "pending", Order.created_at < time.time() - older_than)
            .limit(limit)
        )
        return list(rows)


# -- inventory ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reservation:
    """What the inventory did with an ``order.created`` event: the order afterwards, and
    whether this delivery changed anything (False: a duplicate)."""

    order: Order
    applied: bool


async def reserve_stock(db: Database, event: OrderEvent) -> Reservation:
    """Deduct the order's stock, or reject it when there is not enough; once per event.

    One transaction: claim ``(inventory, event_id)`` in ``processed_events`` (a duplicate
    finds the claim and stops), then ``UPDATE products SET stock = stock - qty WHERE
    stock >= qty``, which cannot oversell however many orders race for the last items (the
    row is locked and the condition re-checked), then move the order on.
    """
    sessions = await db.sessions()
    async with sessions.begin() as session:
        claim = insert_ignoring_duplicates(
            ProcessedEvent.__table__,
            db.dialect,
            {"consumer": "inventory", "event_id": event.event_id, "processed_at": time.time()},
        )
        if changed(await session.execute(claim)) == 0:
            order = await session.get(Order, event.order_id)
            if order is None:
                raise LookupError(f"order {event.order_id} is missing")
            return Reservation(order, applied=False)
        deducted = await session.execute(
            update(Product)
            .where(Product.sku == event.sku, Product.stock >= event.qty)
            .values(stock=Product.stock - event.qty, sold=Product.sold + event.qty)
        )
        status, reason = ("reserved", None)
        if changed(deducted) == 0:
            status, reason = ("rejected", f"out of stock: fewer than {event.qty} {event.sku} left")
        await session.execute(
            update(Order)
            .where(Order.id == event.order_id, Order.status == "pending")
            .values(status=status, reason=reason, updated_at=time.time())
        )
        order = await session.get(Order, event.order_id)
        if order is None:
            raise LookupError(f"order {event.order_id} is missing")
        return Reservation(order, applied=True)


# -- fulfilment and compensation ----------------------------------------------------------


async def fulfil(db: Database, order_id: str) -> Order | None:
    """Charge a reserved order and ship it: ``confirmed``. Idempotent: an order past
    ``reserved`` is returned as it is (None when there is no such order).

    The charge commits on its own, before shipping, as a payment provider's would: when
    shipping then keeps failing, the compensation has a charge to refund.

    Raises:
        WarehouseError: the product cannot be shipped (retried, then dead-lettered).
    """
    sessions = await db.sessions()
    async with sessions.begin() as session:
        order = await session.get(Order, order_id)
        if order is None or order.status != "reserved":
            return order
        await session.execute(
            insert_ignoring_duplicates(
                Payment.__table__,
                db.dialect,
                {
                    "order_id": order_id,
                    "amount_cents": order.amount_cents,
                    "charged_at": time.time(),
                },
            )
        )
    async with sessions.begin() as session:
        product = await session.get(Product, order.sku)
        if product is not None and product.broken:
            raise WarehouseError(f"the warehouse cannot ship {order.sku}")
        await session.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == "reserved")
            .values(status="confirmed", updated_at=time.time())
        )
        return await session.get(Order, order_id)


@dataclass(frozen=True)
class Compensated:
    """A compensation that ran: the cancelled order, the stock put back, the refund."""

    order: Order
    stock_released: int
    refund_cents: int


async def compensate(db: Database, order_id: str, reason: str) -> Compensated | None:
    """Undo a reserved order whose fulfilment died: cancel it, put its stock back, refund
    its charge. Exactly once: the first call inserts the ``compensations`` row, any later
    one finds it and returns None, in the same transaction as the effects.
    """
    sessions = await db.sessions()
    async with sessions.begin() as session:
        order = await session.get(Order, order_id)
        if order is None or order.status != "reserved":
            return None  # confirmed meanwhile, never reserved, or already cancelled
        claim = insert_ignoring_duplicates(
            Compensation.__table__,
            db.dialect,
            {
                "order_id": order_id,
                "reason": reason[:500],
                "stock_released": order.qty,
                "compensated_at": time.time(),
            },
        )
        if changed(await session.execute(claim)) == 0:
            return None
        await session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(status="cancelled", reason=reason[:500], updated_at=time.time())
        )
        await session.execute(
            update(Product)
            .where(Product.sku == order.sku)
            .values(stock=Product.stock + order.qty, sold=Product.sold - order.qty)
        )
        payment = await session.get(Payment, order_id)
        refund = payment.amount_cents if payment is not None else 0
        if payment is not None:
            session.add(Refund(order_id=order_id, amount_cents=refund, refunded_at=time.time()))
        await session.flush()
        await session.refresh(order)
        return Compensated(order, order.qty, refund)


# -- notification and audit ---------------------------------------------------------------


class Sms(BaseModel):
    """One text message to send (the ``send_sms`` task's payload)."""

    event_id: str
    order_id: str
    phone: str
    text: str = Field(max_length=320)


def sms_for(event: OrderEvent) -> Sms:
    """The customer's text message for a terminal event."""
    short = event.order_id[:8]
    texts = {
        "confirmed": f"Order {short} confirmed: {event.qty} x {event.sku}, "
        f"{event.amount_cents / 100:.2f} charged.",
        "rejected": f"Sorry, order {short} could not be placed: {event.sku} is out of stock.",
        "cancelled": f"Order {short} was cancelled; {(event.refund_cents or 0) / 100:.2f} "
        "refunded.",
    }
    return Sms(
        event_id=event.event_id,
        order_id=event.order_id,
        phone=event.phone,
        text=texts.get(event.type, f"Order {short}: {event.type}."),
    )


async def record_sms(db: Database, sms: Sms, sent_at: float) -> bool:
    """Write the sent message to the outbox; False when it was sent before."""
    sessions = await db.sessions()
    async with sessions.begin() as session:
        row = {**sms.model_dump(), "sent_at": sent_at}
        written = await session.execute(
            insert_ignoring_duplicates(SmsOutbox.__table__, db.dialect, row)
        )
        return bool(changed(written))


async def record_event(db: Database, event: OrderEvent) -> bool:
    """Append ``event`` to the audit trail; False when it is there already."""
    sessions = await db.sessions()
    async with sessions.begin() as session:
        row = {
            "event_id": event.event_id,
            "order_id": event.order_id,
            "type": event.type,
            "occurred_at": event.occurred_at,
            "payload": event.model_dump(mode="json"),
        }
        written = await session.execute(
            insert_ignoring_duplicates(AuditEvent.__table__, db.dialect, row)
        )
        return bool(changed(written))


async def order_events(db: Database, order_id: str) -> list[OrderEvent]:
    """The audit trail of one order, in the order of its steps."""
    sessions = await db.sessions()
    async with sessions() as session:
        rows = await session.scalars(select(AuditEvent).where(AuditEvent.order_id == order_id))
        events = [OrderEvent.model_validate(r.payload) for r in rows]
    return sorted(events, key=lambda e: (STEP[e.type], e.occurred_at))


class OrderState(BaseModel):
    """An order as rebuilt from its events alone."""

    order_id: str
    status: str
    sku: str
    qty: int
    amount_cents: int
    stock_reserved: int = 0
    charged_cents: int = 0
    refunded_cents: int = 0
    reason: str | None = None
    version: int = 0


def rebuild(events: list[OrderEvent]) -> OrderState | None:
    """Fold an order's events into its state (None without a ``created`` event).

    ``created`` → pending; ``reserved`` holds the stock; ``rejected`` ends it for want of
    stock; ``confirmed`` charges it; ``cancelled`` releases the stock and refunds.
    """
    state: OrderState | None = None
    for event in sorted(events, key=lambda e: (STEP[e.type], e.occurred_at)):
        if event.type == "created":
            state = OrderState(
                order_id=event.order_id,
                status="pending",
                sku=event.sku,
                qty=event.qty,
                amount_cents=event.amount_cents,
            )
        if state is None:
            continue
        state.version += 1
        if event.type == "reserved":
            state.status, state.stock_reserved = "reserved", event.qty
        elif event.type == "rejected":
            state.status, state.reason = "rejected", event.reason
        elif event.type == "confirmed":
            state.status, state.charged_cents = "confirmed", event.amount_cents
        elif event.type == "cancelled":
            state.status, state.reason = "cancelled", event.reason
            state.stock_reserved = 0
            state.charged_cents = state.refunded_cents = event.refund_cents or 0
    return state


# -- catalogue and report -----------------------------------------------------------------


async def set_product(
    db: Database, sku: str, name: str, price_cents: int, stock: int, broken: bool
) -> Product:
    """Create or reset a product: ``stock`` becomes its initial stock, nothing sold."""
    sessions = await db.sessions()
    async with sessions.begin() as session:
        product = await session.get(Product, sku)
        if product is None:
            product = Product(sku=sku)
            session.add(product)
        product.name, product.price_cents, product.broken = name, price_cents, broken
        product.stock, product.sold, product.initial_stock = stock, 0, stock
    return product


async def products(db: Database) -> list[Product]:
    sessions = await db.sessions()
    async with sessions() as session:
        return list(await session.scalars(select(Product).order_by(Product.sku)))


async def report(db: Database, since: float = 0.0) -> dict[str, Any]:
    """Counts for the demo and the load test, over the orders created at or after ``since``
    (Unix time): orders by status, SMS sent, payments, refunds, compensations, audited
    events; and every product's stock check (``stock + sold == initial_stock``) with the
    quantity of its confirmed orders."""
    recent = select(Order.id).where(Order.created_at >= since)
    sessions = await db.sessions()
    async with sessions() as session:
        rows = await session.execute(
            select(Order.status, func.count())
            .where(Order.created_at >= since)
            .group_by(Order.status)
        )
        by_status = {str(status): int(n) for status, n in rows.all()}

        async def count(model: Any) -> int:
            query = select(func.count()).select_from(model).where(model.order_id.in_(recent))
            return int(await session.scalar(query) or 0)

        counts = {
            "orders": sum(by_status.values()),
            "sms_sent": await count(SmsOutbox),
            "payments": await count(Payment),
            "refunds": await count(Refund),
            "compensations": await count(Compensation),
            "audit_events": await count(AuditEvent),
        }
        confirmed = dict(
            (
                await session.execute(
                    select(Order.sku, func.sum(Order.qty))
                    .where(Order.status == "confirmed")
                    .group_by(Order.sku)
                )
            ).all()
        )
        stock = [
            {
                "sku": p.sku,
                "initial_stock": p.initial_stock,
                "stock": p.stock,
                "sold": p.sold,
                "confirmed_qty": int(confirmed.get(p.sku) or 0),
                "broken": p.broken,
                "consistent": p.stock + p.sold == p.initial_stock and p.stock >= 0,
            }
            for p in await session.scalars(select(Product).order_by(Product.sku))
        ]
        cancelled_uncompensated = await session.scalar(
            select(func.count())
            .select_from(Order)
            .outerjoin(Compensation, Compensation.order_id == Order.id)
            .where(
                Order.created_at >= since,
                Order.status == "cancelled",
                Compensation.order_id.is_(None),
            )
        )
    return {
        **counts,
        "by_status": {s: by_status.get(s, 0) for s in ("pending", "reserved", *TERMINAL)},
        "products": stock,
        "cancelled_without_compensation": int(cancelled_uncompensated or 0),
    }
