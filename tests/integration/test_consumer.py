"""``Delivery`` on the real broker: it is settled once. A second ack or a nack after the
ack (an error path that runs after the ack) never reaches RabbitMQ, which would close
the channel for an unknown delivery tag and drop every other in-flight delivery on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from burrow import Burrow
from burrow.broker.amqp import Delivery
from burrow.broker.topology import QueueSpec
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
