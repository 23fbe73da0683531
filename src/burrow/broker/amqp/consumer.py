"""Consuming: ``Delivery`` (one received message), batched acks, and ``Consumer``.

The worker's hot path starts here, so it is built for it (see docs/performance.md):

* Consumers subscribe on the *underlying* aiormq channel of a robust aio-pika channel. That
  skips aio-pika's ``IncomingMessage`` (a dozen attribute copies per message) and its second
  task per message; the robust channel still reopens itself (and its QoS) after a
  reconnect, and ``Consumer`` subscribes again from the channel's reopen callback.
* Acks are batched. ``Delivery.ack`` only marks the delivery settled; once per loop
  iteration ``_Acker`` sends one ``basic.ack(multiple=True)`` for the longest run of settled
  tags that no unsettled delivery interrupts, and single acks for the settled tags above
  such a gap. An ack still follows the state write that made it safe; what batching
  adds is that a crash may lose a few acks of finished tasks, whose redeliveries the worker
  recognises as terminal and acks without running them again.
* A delivery is acked on the channel it came on. After a reconnect its tag means nothing
  on the new channel (acking it there would close the channel with PRECONDITION_FAILED),
  so settling a delivery of a dead channel is a no-op: the broker redelivers it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiormq
import aiormq.abc
import structlog
from aio_pika.abc import AbstractRobustChannel

from burrow.broker.amqp._errors import map_amqp_errors

log = structlog.get_logger("burrow.broker")


class _Acker:
    """Batches the acks of one aiormq channel (see the module docstring)."""

    __slots__ = ("_channel", "_flush_scheduled", "_settled", "_unsettled")

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self._channel = channel
        self._unsettled: set[int] = set()  # delivered, not yet acked or nacked
        self._settled: list[int] = []  # acked by the worker, not yet sent
        self._flush_scheduled = False

    @property
    def alive(self) -> bool:
        return not self._channel.is_closed

    def received(self, tag: int) -> None:
        self._unsettled.add(tag)

    def ack(self, tag: int) -> None:
        self._unsettled.discard(tag)
        if self._channel.is_closed:
            return  # the broker redelivers it; acking on another channel would be wrong
        self._settled.append(tag)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._schedule_flush)

    def _schedule_flush(self) -> None:
        task = asyncio.ensure_future(self.flush())
        task.add_done_callback(_log_failure)

    async def flush(self) -> None:
        """Send the acks gathered so far (also called before a channel closes)."""
        self._flush_scheduled = False
        settled, self._settled = self._settled, []
        if not settled or self._channel.is_closed:
            return
        floor = min(self._unsettled) if self._unsettled else None
        below = [t for t in settled if floor is None or t < floor]
        with map_amqp_errors(what="ack"):
            if below:
                await self._channel.basic_ack(max(below), multiple=True, wait=False)
            if len(below) < len(settled):
                for tag in settled:
                    if floor is not None and tag > floor:
                        await self._channel.basic_ack(tag, wait=False)

    async def nack(self, tag: int, *, requeue: bool) -> None:
        self._unsettled.discard(tag)
        if self._channel.is_closed:
            return
        with map_amqp_errors(what="nack"):
            await self._channel.basic_nack(tag, requeue=requeue, wait=False)


def _log_failure(task: asyncio.Future[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:  # the channel went away: the broker redelivers the messages
        log.debug("ack flush failed", error=str(exc))


class Delivery:
    """One received message, settled (acked or nacked) exactly once.

    Only the first ``ack``/``nack`` reaches the broker; later ones are ignored. A second
    settle of one delivery tag would make RabbitMQ close the whole channel
    (PRECONDITION_FAILED, unknown delivery tag), taking every other in-flight delivery on
    it along, so a path that fails after its ack (and falls into a generic nack) must not
    send it.

    Properties are read straight from the AMQP frame. Deliveries read by ``peek`` and
    ``drain`` have no acker; the code that fetched them settles them.
    """

    __slots__ = ("_acker", "_msg", "_props", "_settled")

    def __init__(self, message: aiormq.abc.DeliveredMessage, acker: _Acker | None = None) -> None:
        self._msg = message
        self._props = message.header.properties
        self._acker = acker
        self._settled = False

    @property
    def settled(self) -> bool:
        """True once ``ack`` or ``nack`` was called."""
        return self._settled

    @property
    def message_id(self) -> str | None:
        return self._props.message_id

    @property
    def type(self) -> str | None:
        return self._props.message_type

    @property
    def content_type(self) -> str | None:
        return self._props.content_type

    @property
    def content_encoding(self) -> str | None:
        return self._props.content_encoding

    @property
    def headers(self) -> dict[str, Any]:
        return self._props.headers or {}

    @property
    def body(self) -> bytes:
        return self._msg.body

    @property
    def redelivered(self) -> bool:
        return bool(getattr(self._msg.delivery, "redelivered", False))

    @property
    def priority(self) -> int | None:
        return self._props.priority

    @property
    def timestamp(self) -> datetime | None:
        return self._props.timestamp

    @property
    def routing_key(self) -> str | None:
        return self._msg.routing_key

    @property
    def correlation_id(self) -> str | None:
        return self._props.correlation_id

    @property
    def reply_to(self) -> str | None:
        return self._props.reply_to

    @property
    def delivery_tag(self) -> int | None:
        return self._msg.delivery_tag

    async def ack(self) -> None:
        """Acknowledge: the broker forgets the message (sent batched, see module doc).

        Raises:
            BrokerUnavailable: the channel is gone (only for unbatched deliveries; the
                broker redelivers anyway).
        """
        tag = self._msg.delivery_tag
        if tag is None or self._settled:
            return
        self._settled = True
        if self._acker is not None:
            self._acker.ack(tag)
            return
        with map_amqp_errors(what="ack"):
            await self._msg.channel.basic_ack(tag)

    async def nack(self, *, requeue: bool) -> None:
        """Negative-acknowledge; with ``requeue`` the broker delivers it again.

        Raises:
            BrokerUnavailable: the channel is gone (the broker redelivers anyway).
        """
        tag = self._msg.delivery_tag
        if tag is None or self._settled:
            return
        self._settled = True
        if self._acker is not None:
            await self._acker.nack(tag, requeue=requeue)
            return
        with map_amqp_errors(what="nack"):
            await self._msg.channel.basic_nack(tag, requeue=requeue)


Handler = Callable[[Delivery], Awaitable[None]]


class Consumer:
    """A running consumer on one queue, on its own robust channel with its own prefetch."""

    def __init__(self, channel: AbstractRobustChannel, queue: str, handler: Handler) -> None:
        self._channel = channel
        self._queue = queue
        self._handler = handler
        self._tag: str | None = None
        self._acker: _Acker | None = None
        self._cancelled = False

    @property
    def queue_name(self) -> str:
        return self._queue

    async def start(self) -> None:
        """Subscribe now and again each time the robust channel reopens."""
        await self._subscribe()
        self._channel.reopen_callbacks.add(self._on_reopen)

    async def _on_reopen(self, *_: Any) -> None:
        if self._cancelled:
            return
        try:
            await self._subscribe()
        except Exception as exc:  # the next reopen tries again
            log.warning("could not resubscribe after reconnect", queue=self._queue, error=str(exc))

    async def _subscribe(self) -> None:
        with map_amqp_errors(queue=self._queue, what=f"consume {self._queue}"):
            channel = await self._channel.get_underlay_channel()
            acker = _Acker(channel)
            handler = self._handler

            async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
                tag = message.delivery_tag
                if tag is not None:
                    acker.received(tag)
                await handler(Delivery(message, acker))

            ok = await channel.basic_consume(self._queue, on_message, no_ack=False)
        self._acker, self._tag = acker, ok.consumer_tag

    async def cancel(self) -> None:
        """Stop receiving new messages (``basic.cancel``); unacked ones stay with us."""
        self._cancelled = True
        self._channel.reopen_callbacks.discard(self._on_reopen)
        if self._tag is None or self._channel.is_closed:
            return
        with map_amqp_errors(what="cancel consumer"):
            channel = await self._channel.get_underlay_channel()
            await channel.basic_cancel(self._tag)

    async def close(self) -> None:
        """Send pending acks, then close the channel (the broker requeues the rest)."""
        self._cancelled = True
        self._channel.reopen_callbacks.discard(self._on_reopen)
        if self._acker is not None:
            with contextlib.suppress(Exception):
                await self._acker.flush()
        if not self._channel.is_closed:
            with map_amqp_errors(what="close consumer channel"):
                await self._channel.close()


__all__ = ["Consumer", "Delivery", "Handler"]
