"""``RpcClient``: request/reply over Direct Reply-To, many calls in flight on one channel.

https://www.rabbitmq.com/docs/direct-reply-to: the client consumes the pseudo-queue
``amq.rabbitmq.reply-to`` in no-ack mode and publishes its requests *on the same channel*
with ``reply_to = amq.rabbitmq.reply-to``; the broker rewrites that into an address that
routes replies straight back to this channel. No reply queue is declared, so none can leak
(a caller that dies leaves nothing behind on the broker).

Each call gets a fresh ``correlation_id`` and a future; the consumer resolves the future of
the reply's correlation id. A reply whose call already timed out is dropped and counted as
late; one whose id this client never sent is dropped and counted as unknown. Replies are
at-most-once: when the connection drops, the replies of calls in flight can no longer
arrive (the reply address belonged to the old channel), so those calls fail at once with
``BrokerUnavailable`` instead of waiting out their timeout.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiormq.abc
import structlog
from aio_pika.abc import AbstractRobustChannel
from pamqp.commands import Basic

from burrow.broker.amqp._errors import map_amqp_errors
from burrow.broker.amqp.publisher import FRAME_OVERHEAD, encode_message
from burrow.errors import BrokerUnavailable
from burrow.tasks.envelope import JSON

log = structlog.get_logger("burrow.rpc")

REPLY_TO = "amq.rabbitmq.reply-to"
#: Correlation ids of calls that timed out, remembered to tell a late reply from an unknown one.
LATE_MEMORY = 10_000


@dataclass(frozen=True, slots=True)
class RpcReply:
    """A reply as it arrived: body and headers (the caller decides what they mean)."""

    body: bytes
    headers: dict[str, Any]


@dataclass(slots=True)
class RpcClientStats:
    """Counters of one client (read through ``statistics()``)."""

    calls: int = 0
    replies: int = 0
    timeouts: int = 0
    late_replies: int = 0
    unknown_replies: int = 0
    lost: int = 0


class RpcClient:
    """Calls RPC handlers; one per process, on its own robust channel."""

    def __init__(self, channel: AbstractRobustChannel, *, publish_timeout: float) -> None:
        self._channel = channel
        self._publish_timeout = publish_timeout
        self._underlay: aiormq.abc.AbstractChannel | None = None
        self._pending: dict[str, asyncio.Future[RpcReply]] = {}
        self._timed_out: OrderedDict[str, None] = OrderedDict()
        self.stats = RpcClientStats()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def statistics(self) -> RpcClientStats:
        s = self.stats
        return RpcClientStats(
            s.calls, s.replies, s.timeouts, s.late_replies, s.unknown_replies, s.lost
        )

    async def start(self) -> None:
        """Consume replies now and again each time the robust channel reopens."""
        await self._subscribe()
        self._channel.reopen_callbacks.add(self._on_reopen)

    async def _subscribe(self) -> None:
        channel = await self._channel.get_underlay_channel()
        await channel.basic_consume(REPLY_TO, self._on_reply, no_ack=True)
        self._underlay = channel

    async def _on_reopen(self, *_: Any) -> None:
        self._fail_pending(BrokerUnavailable("the broker connection was lost during the call"))
        try:
            with map_amqp_errors(what="consume rpc replies"):
                await self._subscribe()
        except BrokerUnavailable as exc:  # the next reopen tries again
            log.warning("could not consume rpc replies after reconnect", error=str(exc))

    def _fail_pending(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                self.stats.lost += 1
                future.set_exception(exc)

    async def _on_reply(self, message: aiormq.abc.DeliveredMessage) -> None:
        props = message.header.properties
        corr = props.correlation_id or ""
        future = self._pending.pop(corr, None)
        if future is None or future.done():
            if corr in self._timed_out:
                self.stats.late_replies += 1
                log.info("late rpc reply dropped", correlation_id=corr)
            else:
                self.stats.unknown_replies += 1
                log.warning("rpc reply with an unknown correlation id dropped", correlation_id=corr)
            return
        self.stats.replies += 1
        future.set_result(RpcReply(message.body, dict(props.headers or {})))

    async def call(
        self,
        routing_key: str,
        body: bytes,
        *,
        timeout: float,
        headers: dict[str, Any] | None = None,
        type_: str | None = None,
    ) -> RpcReply:
        """Publish a request to ``routing_key`` (default exchange) and wait for its reply.

        The request expires in the queue after ``timeout`` (AMQP ``expiration``), so a
        server that starts late never works on a call nobody waits for.

        Raises:
            TimeoutError: no reply within ``timeout`` seconds (the reply, if it comes, is
                dropped as late).
            Unroutable: no queue ``routing_key`` exists (no server ever declared it).
            BrokerUnavailable: not connected, or the connection dropped during the call.
            ConfigurationError: the request cannot be sent safely (``encode_message``: a
                ``CC``/``BCC`` header, which would make the broker close the channel every
                call in flight shares, or a request AMQP cannot encode).
        """
        channel = self._underlay
        if channel is None or channel.is_closed:
            raise BrokerUnavailable("the rpc channel is not open (reconnecting)")
        corr = uuid.uuid4().hex
        properties = Basic.Properties(
            content_type=JSON,
            delivery_mode=1,  # a request is worth nothing after its caller gave up
            correlation_id=corr,
            reply_to=REPLY_TO,
            message_id=corr,
            message_type=type_,
            headers=headers,
            timestamp=datetime.now(tz=UTC),
            expiration=str(max(1, int(timeout * 1000))),
        )
        limit = int(getattr(channel, "max_content_size", 0) or 0)
        encode_message(  # only to check it: basic_publish encodes it again
            channel_number=channel.number,
            exchange="",
            routing_key=routing_key,
            properties=properties,
            mandatory=True,
            body_size=len(body),
            frame_max=limit + FRAME_OVERHEAD if limit else 0,
        )
        future: asyncio.Future[RpcReply] = asyncio.get_running_loop().create_future()
        self._pending[corr] = future
        self.stats.calls += 1
        try:
            async with asyncio.timeout(timeout):
                with map_amqp_errors(queue=routing_key, what=f"rpc call to {routing_key!r}"):
                    await channel.basic_publish(
                        body, routing_key=routing_key, properties=properties, mandatory=True
                    )
                return await future
        except TimeoutError:
            self.stats.timeouts += 1
            self._remember_timeout(corr)
            raise
        finally:
            self._pending.pop(corr, None)

    def _remember_timeout(self, corr: str) -> None:
        self._timed_out[corr] = None
        while len(self._timed_out) > LATE_MEMORY:
            self._timed_out.popitem(last=False)

    async def close(self) -> None:
        """Fail the calls in flight and close the channel."""
        self._channel.reopen_callbacks.discard(self._on_reopen)
        self._fail_pending(BrokerUnavailable("the rpc client was closed"))
        if not self._channel.is_closed:
            with map_amqp_errors(what="close the rpc channel"):
                await self._channel.close()


__all__ = ["REPLY_TO", "RpcClient", "RpcClientStats", "RpcReply"]
