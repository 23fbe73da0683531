"""``CoalescingPublisher``: confirmed publishes on one aiormq channel, written in batches.

``aiormq``'s ``basic_publish`` takes the channel lock, starts a timeout, queues one write
and waits for its drain, per message. Under load (many HTTP submits at once, or a
``submit_many`` batch) that bookkeeping costs more than the publish itself. Here a publish
only encodes its frames and queues them; one flush task per channel then takes the lock
once for everything queued so far, gives each message its delivery tag and confirm future
exactly as ``basic_publish`` does, and hands the broker a single write. While that write
drains, new publishes queue up for the next flush, so batches grow with the load and a
lone publish still goes out at once (in the next loop iteration).

Each message keeps its own confirm: a nack, a return (``mandatory``) or a closed channel
fails only the messages it concerns, with the same exceptions ``basic_publish`` raises,
so ``map_amqp_errors`` maps them as before. One timer per flush enforces the publish
timeout instead of one per message.

A message is encoded (``encode_message``) when it is queued, not in the batch: a message
AMQP cannot carry (a routing key over 255 bytes, an exchange name over 127 characters, a
header value of an unknown type, a header frame larger than the connection's ``frame_max``)
or one the broker would answer by closing the channel (a ``CC``/``BCC`` header) fails its own
publish with a ``ConfigurationError``, before it is written, and never the batch or the
shared channel it would have gone out with.

It relies on the documented attributes of ``aiormq.Channel`` that ``basic_publish``
itself uses (``lock``, ``delivery_tag``, ``confirmations``, ``message_id_delivery_tag``,
``write_queue``, ``create_future``); ``tests/integration/test_publisher.py`` covers
confirms, returns, nacks, timeouts and a closed channel against the real broker.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import Callable
from typing import Any

import aiormq
import pamqp.frame
from aiormq.abc import ChannelFrame
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from burrow.errors import ConfigurationError
from burrow.tasks.headers import HeaderRefused

#: One message, encoded: its method, content header and body frames.
Frames = bytes
#: Bytes a frame adds around its payload (type, channel, size, end marker): a frame of
#: ``max_content_size`` payload bytes is ``frame_max`` bytes long.
FRAME_OVERHEAD = 8
#: The headers RabbitMQ routes on (sender-selected distribution). burrow never sends them,
#: and one that is not an array makes the broker close the channel (PRECONDITION_FAILED,
#: ``unacceptable_type_in_header``), failing every publish in flight on it.
ROUTING_HEADERS = ("CC", "BCC")


def encode_message(
    *,
    channel_number: int,
    exchange: str,
    routing_key: str,
    properties: Basic.Properties,
    mandatory: bool,
    body_size: int,
    frame_max: int,
) -> bytes:
    """The method and content header frames of one publish, checked so that sending them
    cannot break the channel or the connection.

    Raises:
        HeaderRefused: a ``CC`` or ``BCC`` header.
        ConfigurationError: AMQP cannot encode the message (an exchange name over 127
            characters, a routing key or property over 255 bytes, a header value of an
            unsupported type or range), or its header frame is larger than ``frame_max``
            (RabbitMQ would close the whole connection: ``FRAME_ERROR``).
    """
    headers = properties.headers
    if headers:
        for name in ROUTING_HEADERS:
            if name in headers:
                raise HeaderRefused(
                    name, "RabbitMQ sends a copy of the message to every queue it names"
                )
    target = f"exchange {exchange!r}, routing key {routing_key[:300]!r}"
    try:
        method = Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory)
        encoded = pamqp.frame.marshal(method, channel_number)
        header = pamqp.frame.marshal(
            ContentHeader(properties=properties, body_size=body_size), channel_number
        )
    except (ValueError, TypeError, AttributeError, struct.error) as exc:
        # pamqp's refusals: ValueError (a name too long or malformed), TypeError (a string
        # over 255 bytes, a value it cannot encode), struct.error (a number out of range),
        # AttributeError (a header name that is not text).
        raise ConfigurationError(
            f"cannot publish to {target}: AMQP cannot encode it ({exc})"
        ) from exc
    if frame_max and len(header) > frame_max:
        raise ConfigurationError(
            f"cannot publish to {target}: its properties and headers take {len(header)} "
            f"bytes, more than the connection's frame size ({frame_max})"
        )
    return encoded + header


class _Generation:
    """The messages queued between two flushes, with the one timer that bounds them: it
    starts when the first of them is queued, so a flush stuck behind a blocked connection
    cannot hold later publishes forever."""

    __slots__ = ("items", "pending", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.items: list[tuple[Frames, str, asyncio.Future[None]]] = []
        self.pending = 0
        self.timer = loop.call_later(timeout, self.expire)

    def add(self, item: tuple[Frames, str, asyncio.Future[None]]) -> None:
        self.items.append(item)
        self.pending += 1
        item[2].add_done_callback(self._settled)

    def _settled(self, _: asyncio.Future[None]) -> None:
        self.pending -= 1
        if not self.pending:
            self.timer.cancel()

    def expire(self) -> None:
        """The publish timeout ran out: fail what is still unconfirmed (``map_amqp_errors``
        turns the ``TimeoutError`` into a ``PublishTimeout`` that names the target)."""
        for _, _, future in self.items:
            if not future.done():
                future.set_exception(TimeoutError())


class CoalescingPublisher:
    """Batches the publishes handed to one confirm channel (see the module docstring)."""

    def __init__(self, channel: aiormq.abc.AbstractChannel, *, timeout: float) -> None:
        self.channel = channel
        self._timeout = timeout
        self._queued: _Generation | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._max_body = int(getattr(channel, "max_content_size", 0) or 0)

    def publish(
        self,
        body: bytes,
        *,
        exchange: str,
        routing_key: str,
        properties: Basic.Properties,
        mandatory: bool,
    ) -> asyncio.Future[None]:
        """Queue one message; the future resolves on the broker's ack.

        The future fails with ``aiormq``'s ``PublishError`` (returned), ``DeliveryError``
        (nacked), a channel-closed error, or ``TimeoutError`` (no confirm in time).
        Cancelling it before its flush drops the message unsent. A message that cannot be
        sent safely (``encode_message``) gets a future failed with its
        ``ConfigurationError`` at once, and nothing is queued.
        """
        if not properties.message_id:
            # Returns are matched to their publish by message id, as in basic_publish.
            properties.message_id = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        try:
            frames = self._encode(body, exchange, routing_key, properties, mandatory)
        except ConfigurationError as exc:
            future.set_exception(exc)  # this message only: nothing was queued
            return future
        if self._queued is None:
            self._queued = _Generation(loop, self._timeout)
        self._queued.add((frames, properties.message_id, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return future

    def _encode(
        self,
        body: bytes,
        exchange: str,
        routing_key: str,
        properties: Basic.Properties,
        mandatory: bool,
    ) -> Frames:
        """Every frame of one message, encoded (see ``encode_message``)."""
        number = self.channel.number
        limit = self._max_body
        parts = [
            encode_message(
                channel_number=number,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                body_size=len(body),
                frame_max=limit + FRAME_OVERHEAD if limit else 0,
            )
        ]
        if body:
            step = limit if limit and len(body) >= limit else len(body)
            parts.extend(
                pamqp.frame.marshal(ContentBody(body[i : i + step]), number)
                for i in range(0, len(body), step)
            )
        return b"".join(parts)

    async def _flush(self) -> None:
        try:
            while self._queued is not None:
                generation, self._queued = self._queued, None
                batch = [item for item in generation.items if not item[2].done()]
                if batch:
                    await self._write(batch)
        finally:
            self._flusher = None

    async def _write(self, batch: list[tuple[Frames, str, asyncio.Future[None]]]) -> None:
        channel: Any = self.channel
        try:
            async with channel.lock:
                first = channel.delivery_tag + 1
                for _, message_id, future in batch:
                    channel.delivery_tag += 1
                    tag = channel.delivery_tag
                    confirmation = channel.create_future()
                    channel.confirmations[tag] = confirmation
                    channel.message_id_delivery_tag[message_id] = tag
                    confirmation.add_done_callback(_relay(channel, future, message_id, tag))
                drain = channel.create_future()
                try:
                    # Encoded when queued (``publish``): nothing here can fail to encode.
                    payload = b"".join(item[0] for item in batch)
                    await channel.write_queue.put(
                        ChannelFrame(payload=payload, should_close=False, drain_future=drain)
                    )
                except BaseException:
                    # The broker has not seen these publishes: give their sequence numbers
                    # back while still holding the lock, as basic_publish does.
                    _forget(channel, batch, first)
                    drain.cancel()
                    raise
                await drain
        except asyncio.CancelledError:
            for _, _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)


_Batch = list[tuple[Frames, str, asyncio.Future[None]]]


def _forget(channel: Any, batch: _Batch, first: int) -> None:
    for offset, (_, message_id, _future) in enumerate(batch):
        tag = first + offset
        confirmation = channel.confirmations.pop(tag, None)
        if channel.message_id_delivery_tag.get(message_id) == tag:
            del channel.message_id_delivery_tag[message_id]
        if confirmation is not None:
            confirmation.cancel()
    channel.delivery_tag = first - 1


def _relay(
    channel: Any, future: asyncio.Future[None], message_id: str, tag: int
) -> Callable[[asyncio.Future[Any]], None]:
    def relay(confirmation: asyncio.Future[Any]) -> None:
        if channel.message_id_delivery_tag.get(message_id) == tag:
            del channel.message_id_delivery_tag[message_id]
        if future.done():
            return
        if confirmation.cancelled():
            future.set_exception(aiormq.exceptions.ChannelInvalidStateError("channel closed"))
            return
        exc = confirmation.exception()
        if exc is not None:
            future.set_exception(exc)
        elif isinstance(confirmation.result(), Basic.Ack):
            future.set_result(None)
        else:  # a Basic.Nack or Basic.Reject resolves the confirmation as a result
            future.set_exception(aiormq.exceptions.DeliveryError(None, confirmation.result()))

    return relay
