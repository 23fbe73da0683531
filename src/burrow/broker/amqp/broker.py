"""``AmqpBroker``: the process's connection, publish channels, topology, consumers.

Guarantees kept here (SPEC §4, RELIABILITY §1):

* Publisher confirms are always on, every publish is ``mandatory`` on a channel opened with
  ``on_return_raises`` (without it aio-pika returns a returned message as if it were a
  success, M6), every message is persistent, and every publish has a timeout (a paused
  broker would otherwise hang it forever, M9).
* Publishes are spread over a small pool of confirm channels; a channel pipelines many
  unconfirmed publishes, so the pool exists to spread frame handling, not to serialise.
* Topology goes through robust channels, so aio-pika re-declares it after a reconnect, and
  consumers are restored with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustQueue
from pamqp.commands import Basic

from burrow.broker.amqp._errors import map_amqp_errors
from burrow.broker.amqp.connection import JitteredRobustConnection, make_connection
from burrow.broker.topology import BindingSpec, ExchangeSpec, QueueSpec
from burrow.config import AmqpSettings
from burrow.errors import BrokerUnavailable
from burrow.tasks.envelope import JSON

PERSISTENT = 2


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A queue's depth (ready messages) and consumer count, from a passive declare."""

    name: str
    messages: int
    consumers: int


class Delivery:
    """One received message; ack or nack it exactly once."""

    __slots__ = ("_msg",)

    def __init__(self, message: AbstractIncomingMessage) -> None:
        self._msg = message

    @property
    def message_id(self) -> str | None:
        return self._msg.message_id

    @property
    def type(self) -> str | None:
        return self._msg.type

    @property
    def content_type(self) -> str | None:
        return self._msg.content_type

    @property
    def content_encoding(self) -> str | None:
        return self._msg.content_encoding

    @property
    def headers(self) -> dict[str, Any]:
        return self._msg.headers

    @property
    def body(self) -> bytes:
        return self._msg.body

    @property
    def redelivered(self) -> bool:
        return bool(self._msg.redelivered)

    @property
    def priority(self) -> int | None:
        return self._msg.priority

    @property
    def timestamp(self) -> datetime | None:
        return self._msg.timestamp

    @property
    def routing_key(self) -> str | None:
        return self._msg.routing_key

    @property
    def correlation_id(self) -> str | None:
        return self._msg.correlation_id

    @property
    def reply_to(self) -> str | None:
        return self._msg.reply_to

    async def ack(self) -> None:
        """Acknowledge; the broker forgets the message.

        Raises:
            BrokerUnavailable: the channel is gone (the broker will redeliver).
        """
        with map_amqp_errors(what="ack"):
            await self._msg.ack()

    async def nack(self, *, requeue: bool) -> None:
        """Negative-acknowledge; with ``requeue`` the broker delivers it again.

        Raises:
            BrokerUnavailable: the channel is gone (the broker will redeliver anyway).
        """
        with map_amqp_errors(what="nack"):
            await self._msg.nack(requeue=requeue)


Handler = Callable[[Delivery], Awaitable[None]]


class Consumer:
    """A running consumer on one queue, on its own channel with its own prefetch."""

    def __init__(self, channel: AbstractRobustChannel, queue: AbstractRobustQueue, tag: str):
        self._channel = channel
        self._queue = queue
        self._tag = tag

    @property
    def queue_name(self) -> str:
        return self._queue.name

    async def cancel(self) -> None:
        """Stop receiving new messages (``basic.cancel``); unacked ones stay with us."""
        with map_amqp_errors(what="cancel consumer"):
            await self._queue.cancel(self._tag)

    async def close(self) -> None:
        """Close the channel; the broker requeues whatever is still unacked."""
        if not self._channel.is_closed:
            with map_amqp_errors(what="close consumer channel"):
                await self._channel.close()


class AmqpBroker:
    """The RabbitMQ side of one process."""

    def __init__(self, settings: AmqpSettings, *, connection_name: str = "burrow") -> None:
        self._settings = settings
        self._name = connection_name
        self._conn: JitteredRobustConnection | None = None
        self._publish_channels: list[aiormq.abc.AbstractChannel] = []
        self._robust_publish: list[AbstractRobustChannel] = []
        self._rr = itertools.count()
        self._topology: AbstractRobustChannel | None = None
        self._declared: set[str] = set()
        self._lock = asyncio.Lock()

    @property
    def settings(self) -> AmqpSettings:
        return self._settings

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.is_closed and conn.connected.is_set()

    async def connect(self, *, timeout: float | None = None) -> None:
        """Open the connection and channels; idempotent.

        Args:
            timeout: give up after this many seconds (None: keep retrying with backoff,
                as a worker started before the broker should).

        Raises:
            BrokerUnavailable: not connected within ``timeout``.
        """
        async with self._lock:
            if self._conn is not None:
                return
            conn = make_connection(self._settings, name=self._name)
            try:
                async with asyncio.timeout(timeout):
                    await conn.connect()
                    self._topology = await conn.channel(publisher_confirms=False)
                    for _ in range(self._settings.publish_channels):
                        self._robust_publish.append(
                            await conn.channel(publisher_confirms=True, on_return_raises=True)
                        )
            except TimeoutError as exc:
                await conn.close()
                self._robust_publish.clear()
                raise BrokerUnavailable(
                    f"could not connect to the broker within {timeout} s"
                ) from exc
            self._conn = conn

    async def close(self) -> None:
        """Close every channel and the connection."""
        conn, self._conn = self._conn, None
        self._robust_publish.clear()
        self._topology = None
        self._declared.clear()
        if conn is not None:
            await conn.close()

    def _require(self) -> JitteredRobustConnection:
        if self._conn is None:
            raise BrokerUnavailable("the broker connection is not open")
        return self._conn

    # -- topology ---------------------------------------------------------------------

    async def declare_queue(self, spec: QueueSpec) -> None:
        """Declare ``spec`` (idempotent; replayed after reconnects).

        Raises:
            BrokerError: the queue exists with other arguments (PRECONDITION_FAILED).
        """
        channel = self._topology_channel()
        with map_amqp_errors(queue=spec.name, what=f"declare queue {spec.name}"):
            await channel.declare_queue(
                spec.name,
                durable=spec.durable,
                exclusive=spec.exclusive,
                auto_delete=spec.auto_delete,
                arguments=spec.arguments,
            )
        self._declared.add(spec.name)

    async def declare_exchange(self, spec: ExchangeSpec) -> None:
        channel = self._topology_channel()
        with map_amqp_errors(what=f"declare exchange {spec.name}"):
            await channel.declare_exchange(spec.name, spec.type, durable=spec.durable)
        self._declared.add(f"exchange:{spec.name}")

    async def bind(self, spec: BindingSpec) -> None:
        channel = self._topology_channel()
        with map_amqp_errors(queue=spec.queue, what=f"bind {spec.queue}"):
            queue = await channel.get_queue(spec.queue, ensure=False)
            await queue.bind(spec.exchange, spec.routing_key, arguments=spec.arguments)
        self._declared.add(f"binding:{spec.queue}:{spec.exchange}")

    def is_declared(self, name: str) -> bool:
        return name in self._declared

    async def delete_queue(self, name: str) -> None:
        channel = self._topology_channel()
        with map_amqp_errors(queue=name, what=f"delete queue {name}"):
            await channel.queue_delete(name)
        self._declared.discard(name)
        self._declared -= {d for d in self._declared if d.startswith(f"binding:{name}:")}

    async def delete_exchange(self, name: str) -> None:
        channel = self._topology_channel()
        with map_amqp_errors(what=f"delete exchange {name}"):
            await channel.exchange_delete(name)
        self._declared.discard(f"exchange:{name}")
        self._declared -= {
            d for d in self._declared if d.startswith("binding:") and d.endswith(f":{name}")
        }

    def _topology_channel(self) -> AbstractRobustChannel:
        self._require()
        if self._topology is None:
            raise BrokerUnavailable("the topology channel is not open")
        return self._topology

    # -- publishing -------------------------------------------------------------------

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        exchange: str = "",
        message_id: str | None = None,
        type_: str | None = None,
        headers: dict[str, Any] | None = None,
        priority: int | None = None,
        timestamp: datetime | None = None,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        content_type: str | None = JSON,
        mandatory: bool = True,
    ) -> None:
        """Publish one persistent message and wait for the broker's confirm.

        Raises:
            Unroutable: no queue is bound for it.
            PublishRejected: the broker nacked it.
            PublishTimeout: no confirm within ``publish_timeout`` (it may still be stored).
            BrokerUnavailable: not connected.
        """
        properties = Basic.Properties(
            content_type=content_type,
            delivery_mode=PERSISTENT,
            message_id=message_id,
            message_type=type_,
            headers=headers,
            priority=priority,
            timestamp=timestamp or datetime.now(tz=UTC),
            correlation_id=correlation_id,
            reply_to=reply_to,
        )
        channel = await self._next_channel()
        with map_amqp_errors(queue=routing_key, what=f"publish to {exchange or routing_key!r}"):
            await channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                timeout=self._settings.publish_timeout,
            )

    async def _next_channel(self) -> aiormq.abc.AbstractChannel:
        self._require()
        channels = self._robust_publish
        if not channels:
            raise BrokerUnavailable("no publish channel is open")
        robust = channels[next(self._rr) % len(channels)]
        with map_amqp_errors(what="publish channel"):
            if robust.is_closed:
                raise BrokerUnavailable("the publish channel is closed (reconnecting)")
            return await robust.get_underlay_channel()

    # -- consuming --------------------------------------------------------------------

    async def consume(self, spec: QueueSpec, *, prefetch: int, handler: Handler) -> Consumer:
        """Start consuming ``spec`` (declared first) with manual acks.

        ``handler`` runs in the task aiormq starts for each delivery; it must ack or nack.
        """
        conn = self._require()
        with map_amqp_errors(queue=spec.name, what=f"consume {spec.name}"):
            channel = await conn.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=prefetch)
            queue = await channel.declare_queue(
                spec.name,
                durable=spec.durable,
                exclusive=spec.exclusive,
                auto_delete=spec.auto_delete,
                arguments=spec.arguments,
            )

            async def on_message(message: AbstractIncomingMessage) -> None:
                await handler(Delivery(message))

            tag = await queue.consume(on_message, no_ack=False)
        return Consumer(channel, queue, tag)

    # -- inspection and administration ------------------------------------------------

    @contextlib.asynccontextmanager
    async def _scratch_channel(
        self, name: str, what: str
    ) -> AsyncIterator[aiormq.abc.AbstractChannel | None]:
        """A short-lived plain channel with ``name`` checked to exist (None when it does not).

        Plain aiormq, not a robust channel: a passive declare of a missing queue closes the
        channel (404), and a robust channel would then try to reopen it.
        """
        conn = self._require()
        with map_amqp_errors(queue=name, what=what):
            transport = conn.transport
            if transport is None:
                raise BrokerUnavailable("the broker connection is reconnecting")
            channel = await transport.connection.channel()
            try:
                try:
                    await channel.queue_declare(name, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    yield None
                    return
                yield channel
            finally:
                if not channel.is_closed:
                    await channel.close()

    async def queue_stats(self, name: str) -> QueueStats | None:
        """Depth and consumers of ``name``, or None when the queue does not exist."""
        async with self._scratch_channel(name, f"inspect {name}") as channel:
            if channel is None:
                return None
            with map_amqp_errors(queue=name, what=f"inspect {name}"):
                result = await channel.queue_declare(name, passive=True)
        return QueueStats(name, result.message_count or 0, result.consumer_count or 0)

    async def peek(self, name: str, limit: int) -> list[Delivery]:
        """Up to ``limit`` messages of ``name``, left in the queue (for listing).

        Messages are fetched unacked and go back when the channel closes; the broker puts
        them back at their positions (flagged ``redelivered``).
        """
        found: list[Delivery] = []
        async with self._scratch_channel(name, f"read {name}") as channel:
            if channel is None:
                return []
            with map_amqp_errors(queue=name, what=f"read {name}"):
                for _ in range(limit):
                    raw = await channel.basic_get(name, no_ack=False)
                    if raw.delivery_tag is None:
                        break
                    found.append(Delivery(aio_pika.IncomingMessage(raw, no_ack=False)))
        return found

    async def drain(
        self, name: str, limit: int, handler: Callable[[Delivery], Awaitable[bool]]
    ) -> int:
        """Take up to ``limit`` messages from ``name``: each is acked when ``handler``
        returns True and requeued otherwise. Returns how many were acked."""
        done = 0
        async with self._scratch_channel(name, f"read {name}") as channel:
            if channel is None:
                return 0
            with map_amqp_errors(queue=name, what=f"read {name}"):
                for _ in range(limit):
                    raw = await channel.basic_get(name, no_ack=False)
                    if raw.delivery_tag is None:
                        break
                    if await handler(Delivery(aio_pika.IncomingMessage(raw, no_ack=False))):
                        await channel.basic_ack(raw.delivery_tag)
                        done += 1
                    else:
                        await channel.basic_nack(raw.delivery_tag, requeue=True)
                        break
        return done

    async def purge(self, name: str) -> int:
        """Delete every ready message of ``name``; returns how many."""
        async with self._scratch_channel(name, f"purge {name}") as channel:
            if channel is None:
                return 0
            with map_amqp_errors(queue=name, what=f"purge {name}"):
                result = await channel.queue_purge(name)
        return int(result.message_count or 0)


def message_timestamp(ts: float) -> datetime:
    """A Unix time as the AMQP ``timestamp`` property."""
    return datetime.fromtimestamp(ts, tz=UTC)


__all__ = ["AmqpBroker", "Consumer", "Delivery", "QueueStats"]
