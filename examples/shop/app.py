"""The example shop on burrow: ``burrow up examples.shop.app:app`` (what ``make up`` runs).

An order flow (order placed, stock deducted, SMS sent, every event audited) on a real
database (``db.py``):

1. ``POST /orders`` writes a ``pending`` order and publishes ``order.created`` to the topic
   exchange ``shop.events``, then answers 201: the customer does not wait for the rest.
2. **inventory** (``reserve_stock``, queue ``shop.inventory``) deducts the stock with a
   conditional ``UPDATE`` and records the event id in the same transaction (a redelivered
   event deducts nothing; racing orders never oversell), then publishes ``order.reserved``
   and submits ``fulfil_order``, or publishes ``order.rejected`` when stock is short.
3. **fulfilment** (task ``fulfil_order``) charges the order and ships it: ``order.confirmed``.
   A product the warehouse cannot ship fails every attempt; after its retries the task is
   dead-lettered and ``@app.on_dead("fulfil_order")`` **compensates** once: order cancelled,
   stock released, charge refunded, ``order.cancelled`` published.
4. **notification** (``notify_customer``, queue ``shop.notifications``) turns each
   confirmed, rejected or cancelled event into a ``send_sms`` task, rate limited
   (``SHOP_SMS_RATE``, default ``50/s``, across all workers), which writes the SMS outbox.
5. **audit** (``audit_trail``, queue ``shop.audit``) appends every ``order.#`` event;
   ``GET /orders/{id}/history`` rebuilds the order from them.

A cron schedule (``republish_stuck_orders``, every minute) publishes ``order.created`` again
for orders still pending after a minute (say the publish after the commit failed): the event
id is derived from the order, so consumers that saw it already ignore it.

Settings: ``SHOP_DATABASE_URL`` (default ``sqlite:///shop.db``), ``SHOP_SMS_RATE``,
``SHOP_FULFIL_RETRIES`` (default 2), and burrow's ``BURROW_*``.
"""

from __future__ import annotations

import os
import time

from pydantic import BaseModel

from burrow import Burrow, Exchange, TaskContext, TaskRecord
from examples.shop import service
from examples.shop.db import Database
from examples.shop.routes import make_router
from examples.shop.service import OrderEvent, Sms

app = Burrow()
db = Database()
shop_events = Exchange("shop.events", "topic")

SMS_RATE = os.environ.get("SHOP_SMS_RATE", "50/s")
FULFIL_RETRIES = int(os.environ.get("SHOP_FULFIL_RETRIES", "2"))
#: Seconds an order may stay pending before the sweeper publishes its event again.
STUCK_AFTER = 60.0


async def emit(event: OrderEvent) -> None:
    """Publish ``event`` as ``order.{type}``, its event id as the message id (confirmed)."""
    await app.publish(shop_events, f"order.{event.type}", event, message_id=event.event_id)


app.include_router(make_router(db, emit))


# -- inventory ----------------------------------------------------------------------------


class FulfilOrder(BaseModel):
    order_id: str


@app.subscriber(shop_events, "order.created", queue="shop.inventory", retry_base=0.2)
async def reserve_stock(event: OrderEvent, ctx: TaskContext) -> str:
    """Reserve the stock of a new order, then hand it on.

    The follow-ups run again on a redelivery (``applied`` False) while the order still
    needs them, so a crash between the commit and the publish loses nothing. Events and
    the task have fixed ids: published twice, an event is one event, and submitting the
    task again returns the first one, publishing its message again only while it is still
    queued (which repairs a first publish that was lost).
    """
    done = await service.reserve_stock(db, event)
    order = done.order
    if not done.applied:
        ctx.logger.info("order.created seen before: stock not deducted again", order=order.id)
    if order.status == "reserved":
        await emit(service.event_of(order, "reserved"))
        await app.submit(
            "fulfil_order", FulfilOrder(order_id=order.id), task_id=f"fulfil-{order.id}"
        )
    elif order.status == "rejected":
        await emit(service.event_of(order, "rejected", reason=order.reason))
    return order.status


# -- fulfilment and compensation ----------------------------------------------------------


@app.task(queue="shop.fulfilment", max_retries=FULFIL_RETRIES, retry_base=0.2, retry_cap=1.0)
async def fulfil_order(p: FulfilOrder) -> str:
    """Charge and ship a reserved order; fails (and is retried) when the warehouse cannot."""
    order = await service.fulfil(db, p.order_id)
    if order is None:
        return "missing"
    if order.status == "confirmed":
        await emit(service.event_of(order, "confirmed"))
    return order.status


@app.on_dead("fulfil_order")
async def compensate_order(record: TaskRecord) -> None:
    """The fulfilment died: cancel the order, release its stock, refund it (once)."""
    order_id = FulfilOrder.model_validate(record.payload).order_id
    reason = f"fulfilment failed: {record.error.message if record.error else 'dead-lettered'}"
    done = await service.compensate(db, order_id, reason)
    if done is not None:
        await emit(
            service.event_of(done.order, "cancelled", reason=reason, refund_cents=done.refund_cents)
        )


# -- notification -------------------------------------------------------------------------


@app.subscriber(
    shop_events,
    ["order.confirmed", "order.rejected", "order.cancelled"],
    queue="shop.notifications",
    retry_base=0.2,
)
async def notify_customer(event: OrderEvent) -> None:
    """Queue the customer's SMS: one task per event (its id is derived from the event; a
    retry's submit returns it). The outbox's key (the event id) is the last line."""
    await app.submit("send_sms", service.sms_for(event), task_id=f"sms-{event.event_id}")


@app.task(queue="shop.sms", rate_limit=SMS_RATE, max_retries=5, retry_base=0.5)
async def send_sms(sms: Sms) -> bool:
    """Send one SMS (here: write it to the outbox with the time it went out)."""
    return await service.record_sms(db, sms, sent_at=time.time())


# -- audit --------------------------------------------------------------------------------


@app.subscriber(shop_events, "order.#", queue="shop.audit", retry_base=0.2)
async def audit_trail(event: OrderEvent) -> None:
    """Append the event to the order's audit trail (once per event id)."""
    await service.record_event(db, event)


# -- sweeper ------------------------------------------------------------------------------


@app.periodic("* * * * *")
async def republish_stuck_orders() -> int:
    """Publish ``order.created`` again for orders pending longer than a minute."""
    stuck = await service.stuck_orders(db, STUCK_AFTER)
    for order in stuck:
        event = service.event_of(order, "created")
        await emit(event.model_copy(update={"occurred_at": order.created_at}))
    return len(stuck)
