"""``Delivery`` on the real broker: it is settled once. A second ack or a nack after the
ack (an error path that runs after the ack) never reaches RabbitMQ, which would close
the channel for an unknown delivery tag and drop every other in-flight delivery on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from burrow import Burrow
from burrow.broker.amqp import Delivery
from burrow.broker.amqp import broker as broker_module
from burrow.broker.topology import ExchangeSpec, QueueSpec
from tests.conftest import eventually

pytestmark = pytest.mark.integration


async def test_a_delivery_is_settled_once(make_app: Callable[..., Burrow]) -> None:
    app = make_app()
    make_app.extra_queues.add("settle")  # type: ignore[attr-defined]
    await app.broker.connect(timeout=10)
    queue = app.names.queue("settle")
    seen: list[str | None] = []

    async def handler(delivery: Delivery) -> None:
        seen.append(delivery.message_id)
        assert not delivery.settled
        await delivery.ack()
        await delivery.ack()
        await delivery.nack(requeue=True)
        assert delivery.settled

    consumer = await app.broker.consume(QueueSpec(queue), prefetch=10, handler=handler)
    try:
        await app.broker.publish(queue, b"{}", message_id="first")
        await eventually(lambda: seen == ["first"], timeout=10, what="first delivery")
        await asyncio.sleep(0.3)  # the acks are flushed; a bad one would close the channel
        await app.broker.publish(queue, b"{}", message_id="second")
        # Still consuming on the same channel, and "first" was not requeued by the nack.
        await eventually(lambda: seen == ["first", "second"], timeout=10, what="second")
        await asyncio.sleep(0.3)
        stats = await app.broker.queue_stats(queue)
        assert stats is not None
        assert stats.messages == 0
        assert stats.consumers == 1
        assert seen == ["first", "second"]
    finally:
        await consumer.cancel()


async def test_consume_declares_again_when_its_auto_delete_exchange_vanishes_before_the_bind(
    make_app: Callable[..., Burrow], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers' control exchange is auto-delete: when the last other worker stops
    between a starting worker's exchange declare and its bind, the bind fails with
    NOT_FOUND. ``consume`` then declares and binds again on a new channel (it used to
    fail, and the worker process exited). The vanishing is injected at that exact step:
    the first attempt deletes the exchange after declaring it, then binds."""
    app = make_app()
    await app.broker.connect(timeout=10)
    spec_x = ExchangeSpec(
        app.names.prefixed("vanishing"), "fanout", durable=False, auto_delete=True
    )
    queue = app.names.queue("vanishing-q")
    spec_q = QueueSpec(queue, durable=False, exclusive=True, auto_delete=True)
    real = broker_module._declare_and_bind
    attempts: list[int] = []

    async def first_loses_the_race(
        channel: Any, spec: QueueSpec, bind_to: ExchangeSpec | None, bindings: Any
    ) -> str:
        attempts.append(1)
        if len(attempts) > 1:
            return await real(channel, spec, bind_to, bindings)
        assert bind_to is not None
        await channel.declare_exchange(bind_to.name, bind_to.type, durable=False, auto_delete=True)
        declared = await channel.declare_queue(spec.name, exclusive=True, auto_delete=True)
        await app.broker.delete_exchange(bind_to.name)  # the last other worker left
        await declared.bind(bind_to.name, "")  # NOT_FOUND: the broker closes the channel
        raise AssertionError("the bind should have failed")

    monkeypatch.setattr(broker_module, "_declare_and_bind", first_loses_the_race)
    seen: list[str | None] = []

    async def handler(delivery: Delivery) -> None:
        seen.append(delivery.message_id)
        await delivery.ack()

    consumer = await app.broker.consume(spec_q, prefetch=5, handler=handler, bind_to=spec_x)
    try:
        assert len(attempts) == 2
        await app.broker.broadcast(spec_x, b"{}", type_="ping")
        await eventually(lambda: len(seen) == 1, timeout=10, what="the broadcast delivered")
    finally:
        await consumer.close()
        await app.broker.delete_exchange(spec_x.name)
