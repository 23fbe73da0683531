"""``CoalescingPublisher`` (through ``AmqpBroker.publish``/``publish_many``) against the real
broker: many publishes share one write yet each keeps its own confirm, return, nack and
timeout, and a publish cancelled before its flush is never sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from burrow import Burrow
from burrow.broker.amqp.broker import OutgoingMessage
from burrow.broker.topology import QueueSpec
from burrow.errors import BrokerUnavailable, PublishRejected, PublishTimeout, Unroutable
from tests.conftest import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def app(make_app: Callable[..., Burrow]) -> Burrow:
    app = make_app()
    make_app.extra_queues.update({"pub", "full"})  # type: ignore[attr-defined]
    await app.broker.connect(timeout=10)
    await app.broker.declare_queue(QueueSpec(app.names.queue("pub")))
    # reject-publish: the broker nacks what does not fit (a classic queue: quorum queues
    # also nack, but classic is the quicker to set up here).
    await app.broker.declare_queue(
        QueueSpec(
            app.names.queue("full"),
            arguments={"x-max-length": 3, "x-overflow": "reject-publish"},
        )
    )
    return app


async def depth(app: Burrow, queue: str) -> int:
    stats = await app.broker.queue_stats(app.names.queue(queue))
    assert stats is not None
    return stats.messages


async def test_concurrent_publishes_are_all_confirmed_and_stored(app: Burrow) -> None:
    """500 publishes started in the same loop iteration all return confirmed and all
    500 messages are in the queue, with their own message ids."""
    queue = app.names.queue("pub")
    await asyncio.gather(
        *(app.broker.publish(queue, b"{}", message_id=f"m-{i}") for i in range(500))
    )
    assert await eventually(lambda: _equals(depth(app, "pub"), 500), timeout=10, what="500")
    seen = {d.message_id for d in await app.broker.peek(queue, 500)}
    assert seen == {f"m-{i}" for i in range(500)}


async def test_a_returned_message_fails_alone_in_its_batch(app: Burrow) -> None:
    """In one batch, the message routed nowhere fails with Unroutable and the others are
    confirmed."""
    queue = app.names.queue("pub")
    results = await asyncio.gather(
        app.broker.publish(queue, b"1", message_id="a"),
        app.broker.publish(app.names.queue("nowhere"), b"2", message_id="b"),
        app.broker.publish(queue, b"3", message_id="c"),
        return_exceptions=True,
    )
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], Unroutable)
    assert await eventually(lambda: _equals(depth(app, "pub"), 2), timeout=10, what="2 stored")


async def test_publish_many_reports_nacks_per_message(app: Burrow) -> None:
    """A queue that holds 3 and rejects the rest: publish_many confirms the first 3 and
    reports PublishRejected (a nack) for each of the other 2."""
    messages = [OutgoingMessage(b"{}", f"n-{i}", {}) for i in range(5)]
    results = await app.broker.publish_many(app.names.queue("full"), messages, type_="t")
    assert results[:3] == [None, None, None]
    assert all(isinstance(r, PublishRejected) for r in results[3:]), results


async def test_unconfirmed_publish_times_out(make_app: Callable[..., Burrow]) -> None:
    """With a publish timeout far shorter than a confirm takes, the publish fails with
    PublishTimeout naming its target instead of waiting."""
    app = make_app(publish_timeout=1e-6)
    make_app.extra_queues.add("slow")  # type: ignore[attr-defined]
    await app.broker.connect(timeout=10)
    await app.broker.declare_queue(QueueSpec(app.names.queue("slow")))
    with pytest.raises(PublishTimeout, match="slow"):
        await app.broker.publish(app.names.queue("slow"), b"{}")


async def test_cancelled_before_flush_is_not_sent(app: Burrow) -> None:
    """A publish cancelled in the same loop iteration it was queued is dropped unsent;
    its neighbour still goes out."""
    queue = app.names.queue("pub")
    dropped = asyncio.ensure_future(app.broker.publish(queue, b"x", message_id="dropped"))
    kept = asyncio.ensure_future(app.broker.publish(queue, b"y", message_id="kept"))
    await asyncio.sleep(0)  # both reach their publisher's queue
    dropped.cancel()
    await kept
    with pytest.raises(asyncio.CancelledError):
        await dropped
    await asyncio.sleep(0.3)
    assert [d.message_id for d in await app.broker.peek(queue, 10)] == ["kept"]


async def test_publish_after_close_is_a_clear_error(app: Burrow) -> None:
    await app.broker.close()
    with pytest.raises(BrokerUnavailable):
        await app.broker.publish(app.names.queue("pub"), b"{}")


async def _equals(value: object, expected: int) -> bool:
    return bool(await value == expected)  # type: ignore[misc]
