"""``AmqpBroker``: the process's connection, publish channels, topology, consumers.

Guarantees kept here:

* Publisher confirms are always on, every publish is ``mandatory`` on a channel opened with
  ``on_return_raises`` (without it aio-pika returns a returned message as if it were a
  success), every message is persistent, and every publish has a timeout (a paused
  broker would otherwise hang it forever).
* Publishes are spread over a small pool of confirm channels; a channel pipelines many
  unconfirmed publishes, so the pool exists to spread frame handling, not to serialise.
  Each channel's ``CoalescingPublisher`` writes the publishes queued in one loop
  iteration as one batch (one lock hold, one write, one timer), each with its own confirm.
* Topology goes through robust channels, so aio-pika re-declares it after a reconnect, and
  consumers are restored with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

import aiormq
from aio_pika.abc import AbstractRobustChannel
from pamqp.commands import Basic

from burrow.broker.amqp._errors import amqp_error, map_amqp_errors
from burrow.broker.amqp.connection import JitteredRobustConnection, make_connection
from burrow.broker.amqp.consumer import Consumer, Delivery, Handler
from burrow.broker.amqp.publisher import CoalescingPublisher
from burrow.broker.amqp.rpc import RpcClient
from burrow.broker.topology import BindingSpec, ExchangeSpec, QueueSpec
from burrow.config import AmqpSettings
from burrow.errors import BrokerUnavailable
from burrow.tasks.envelope import JSON

PERSISTENT = 2
#: Declare-and-bind attempts of a consumer whose auto-delete exchange vanished mid-way.
BIND_RACE_TRIES = 3


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message of a ``publish_many`` batch."""

    body: bytes
    message_id: str
    headers: dict[str, Any]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A queue's depth (ready messages) and consumer count, from a passive declare."""

    name: str
    messages: int
    consumers: int


class AmqpBroker:
    """The RabbitMQ side of one process."""

    def __init__(self, settings: AmqpSettings, *, connection_name: str = "burrow") -> None:
        self._settings = settings
        self._name = connection_name
        self._conn: JitteredRobustConnection | None = None
        self._publish_channels: list[aiormq.abc.AbstractChannel] = []
        self._robust_publish: list[AbstractRobustChannel] = []
        self._rr = itertools.count()
        self._publishers: dict[int, CoalescingPublisher] = {}
        self._topology: AbstractRobustChannel | None = None
        self._declared: set[str] = set()
        self._lock = asyncio.Lock()
        #: Metrics hooks (``burrow.metrics.PublishMetrics``; None: off): called with the
        #: seconds to the confirm of each publish (or ``publish_many`` batch), and on each
        #: reconnect.
        self.on_confirmed: Callable[[float, bool], None] | None = None
        self.on_reconnected: Callable[[], None] | None = None

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
            conn.reconnect_callbacks.add(self._reconnected)
            self._conn = conn

    def _reconnected(self, *_args: Any) -> None:
        if self.on_reconnected is not None:
            self.on_reconnected()

    async def close(self) -> None:
        """Close every channel and the connection."""
        conn, self._conn = self._conn, None
        self._robust_publish.clear()
        self._publishers.clear()
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
            await channel.declare_exchange(
                spec.name, spec.type, durable=spec.durable, auto_delete=spec.auto_delete
            )
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
        publisher = await self._next_publisher()
        begun = perf_counter()
        with map_amqp_errors(queue=routing_key, what=f"publish to {exchange or routing_key!r}"):
            await publisher.publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
            )
        if self.on_confirmed is not None:
            self.on_confirmed(perf_counter() - begun, False)

    async def publish_many(
        self,
        routing_key: str,
        messages: Sequence[OutgoingMessage],
        *,
        type_: str | None,
        priority: int | None = None,
    ) -> list[BaseException | None]:
        """Publish ``messages`` to ``routing_key`` on one confirm channel, pipelined.

        The messages go out in one write (``CoalescingPublisher``) and one timeout
        (``publish_timeout``) covers the whole batch. Returns, per message, None when the
        broker confirmed it, or the error (``PublishTimeout`` for those unconfirmed when the
        time ran out).
        """
        if not messages:
            return []
        publisher = await self._next_publisher()
        now = datetime.now(tz=UTC)
        what = f"publish to {routing_key!r}"
        publish = publisher.publish
        futures = [
            publish(
                m.body,
                exchange="",
                routing_key=routing_key,
                properties=Basic.Properties(
                    content_type=JSON,
                    delivery_mode=PERSISTENT,
                    message_id=m.message_id,
                    message_type=type_,
                    headers=m.headers,
                    priority=priority,
                    timestamp=now,
                ),
                mandatory=True,
            )
            for m in messages
        ]
        begun = perf_counter()
        try:
            await asyncio.wait(futures)
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        if self.on_confirmed is not None:
            self.on_confirmed(perf_counter() - begun, True)
        return [_result(f, routing_key, what) for f in futures]

    async def _next_publisher(self) -> CoalescingPublisher:
        """The coalescing publisher of the next confirm channel (round robin), made anew
        when the robust channel has a new underlying channel after a reconnect."""
        self._require()
        channels = self._robust_publish
        if not channels:
            raise BrokerUnavailable("no publish channel is open")
        index = next(self._rr) % len(channels)
        robust = channels[index]
        with map_amqp_errors(what="publish channel"):
            if robust.is_closed:
                raise BrokerUnavailable("the publish channel is closed (reconnecting)")
            channel = await robust.get_underlay_channel()
        publisher = self._publishers.get(index)
        if publisher is None or publisher.channel is not channel:
            publisher = CoalescingPublisher(channel, timeout=self._settings.publish_timeout)
            self._publishers[index] = publisher
        return publisher

    # -- consuming --------------------------------------------------------------------

    async def consume(
        self,
        spec: QueueSpec,
        *,
        prefetch: int,
        handler: Handler,
        bind_to: ExchangeSpec | None = None,
        bindings: Sequence[BindingSpec] = (),
    ) -> Consumer:
        """Start consuming ``spec`` (declared first) with manual acks.

        ``handler`` runs in the task aiormq starts for each delivery; it must settle it.
        With ``bind_to`` the exchange is declared and the queue bound to it on the
        consumer's own robust channel, so after a reconnect aio-pika declares both again
        (exchange, queue, bindings, in that order) before the consumer resubscribes.
        ``bindings`` give the routing keys and arguments (default: one binding, key "").
        """
        conn = self._require()
        with map_amqp_errors(queue=spec.name, what=f"consume {spec.name}"):
            for tries_left in reversed(range(BIND_RACE_TRIES)):
                channel = await conn.channel(publisher_confirms=False)
                await channel.set_qos(prefetch_count=prefetch)
                try:
                    name = await _declare_and_bind(channel, spec, bind_to, bindings)
                    break
                except aiormq.exceptions.ChannelNotFoundEntity:
                    # An auto-delete exchange (the workers' control exchange) goes when its
                    # last queue does: another worker stopped between our declare and our
                    # bind. The broker closed this channel; declare again on a new one.
                    with contextlib.suppress(Exception):
                        await channel.close()
                    if bind_to is None or not bind_to.auto_delete or not tries_left:
                        raise
            consumer = Consumer(channel, name, handler)
            await consumer.start()
        return consumer

    async def broadcast(self, exchange: ExchangeSpec, body: bytes, *, type_: str) -> None:
        """Publish a transient message to ``exchange`` (declared first), e.g. a control
        message to the workers. Not ``mandatory``: with nobody bound it is dropped.

        A short-lived plain channel, not the publish pool: the auto-delete exchange can
        vanish between the declare and the publish (the last worker stopped), and the
        broker then closes the channel (404), which must not hit the shared channels.

        Raises:
            BrokerError: the broker refused or could not be reached.
        """
        conn = self._require()
        with map_amqp_errors(what=f"publish to {exchange.name}"):
            transport = conn.transport
            if transport is None:
                raise BrokerUnavailable("the broker connection is reconnecting")
            channel = await transport.connection.channel(publisher_confirms=True)
            try:
                async with asyncio.timeout(self._settings.publish_timeout):
                    await channel.exchange_declare(
                        exchange.name,
                        exchange_type=exchange.type,
                        durable=exchange.durable,
                        auto_delete=exchange.auto_delete,
                    )
                    await channel.basic_publish(
                        body,
                        exchange=exchange.name,
                        routing_key="",
                        properties=Basic.Properties(content_type=JSON, message_type=type_),
                    )
            finally:
                if not channel.is_closed:
                    await channel.close()

    async def exchange_exists(self, name: str) -> bool:
        """True when exchange ``name`` exists (a passive declare on a scratch channel, which
        the broker closes when it does not)."""
        conn = self._require()
        with map_amqp_errors(what=f"inspect exchange {name}"):
            transport = conn.transport
            if transport is None:
                raise BrokerUnavailable("the broker connection is reconnecting")
            channel = await transport.connection.channel()
            try:
                await channel.exchange_declare(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return False
            finally:
                if not channel.is_closed:
                    await channel.close()
        return True

    async def open_rpc_client(self) -> RpcClient:
        """A started ``RpcClient`` on a channel of its own (see ``rpc.py``)."""
        conn = self._require()
        with map_amqp_errors(what="open the rpc reply consumer"):
            channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
            client = RpcClient(channel, publish_timeout=self._settings.publish_timeout)
            await client.start()
        return client

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
                    found.append(Delivery(raw))
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
                    if await handler(Delivery(raw)):
                        await channel.basic_ack(raw.delivery_tag)
                        done += 1
                    else:
                        await channel.basic_nack(raw.delivery_tag, requeue=True)
                        break
        return done

    async def take(
        self, name: str, handler: Callable[[Delivery], Awaitable[bool]], *, limit: int
    ) -> int:
        """Go through the messages of ``name`` once: each is removed (acked) when ``handler``
        returns True and left in the queue when it returns False. Stops after ``limit``
        removals or at the end of the queue; returns how many were removed.

        A message left is held unacked until the end, so the next ``basic.get`` reaches the
        one behind it; the broker puts every held message back (flagged ``redelivered``)
        when the channel closes. An exception from ``handler`` ends the pass the same way,
        removing nothing more.
        """
        done = 0
        async with self._scratch_channel(name, f"read {name}") as channel:
            if channel is None:
                return 0
            while done < limit:
                with map_amqp_errors(queue=name, what=f"read {name}"):
                    raw = await channel.basic_get(name, no_ack=False)
                if raw.delivery_tag is None:
                    break
                if await handler(Delivery(raw)):
                    with map_amqp_errors(queue=name, what=f"remove from {name}"):
                        await channel.basic_ack(raw.delivery_tag)
                    done += 1
        return done

    async def purge(self, name: str) -> int:
        """Delete every ready message of ``name``; returns how many."""
        async with self._scratch_channel(name, f"purge {name}") as channel:
            if channel is None:
                return 0
            with map_amqp_errors(queue=name, what=f"purge {name}"):
                result = await channel.queue_purge(name)
        return int(result.message_count or 0)


def _result(task: asyncio.Future[Any], queue: str, what: str) -> BaseException | None:
    if task.cancelled():
        return BrokerUnavailable(f"{what}: cancelled (the connection is closing)", queue=queue)
    exc = task.exception()
    return None if exc is None else amqp_error(exc, queue=queue, what=what)


async def _declare_and_bind(
    channel: AbstractRobustChannel,
    spec: QueueSpec,
    bind_to: ExchangeSpec | None,
    bindings: Sequence[BindingSpec],
) -> str:
    """Declare ``bind_to`` (if any), then the queue, then its bindings; the queue's name."""
    if bind_to is not None:
        await channel.declare_exchange(
            bind_to.name, bind_to.type, durable=bind_to.durable, auto_delete=bind_to.auto_delete
        )
    queue = await channel.declare_queue(
        spec.name,
        durable=spec.durable,
        exclusive=spec.exclusive,
        auto_delete=spec.auto_delete,
        arguments=spec.arguments,
    )
    if bind_to is not None:
        for b in bindings or (BindingSpec(spec.name, bind_to.name),):
            await queue.bind(bind_to.name, b.routing_key, arguments=b.arguments or None)
    return queue.name


__all__ = ["AmqpBroker", "Consumer", "Delivery", "OutgoingMessage", "QueueStats"]
