"""``RpcServer``: runs ``@app.rpc`` handlers on the requests of ``{ns}.rpc.{name}``.

Replies are at-most-once, and no Redis record is written for a call:

* a request is acked when it is taken, before the handler runs, so a request that kills
  its server is not redelivered to the next one (the caller gets its timeout);
* a request whose caller's deadline (``x-burrow-deadline``) has passed is dropped unrun;
* ``reply_to`` must be a Direct Reply-To address or a server-named ``amq.gen-`` queue
  (``reply_to_allowed``), so a request can never make the server publish into a work
  queue; other requests are dropped and counted;
* the reply is published without ``mandatory``: when the caller is gone (its channel, and
  with it the reply address, vanished), the broker drops the reply, and a failing publish
  is logged and counted; neither ever stops the server.

Each request is counted (``burrow_rpc_requests_total{name,outcome}``: replied, error,
expired, refused, reply_failed) and timed (``burrow_rpc_duration_seconds{name}``, from
the start of the run to the reply sent) when the worker has metrics, and handled in a
SERVER span, child of the caller's (when tracing).

A handler's error comes back as a reply with header ``x-burrow-rpc-status: error`` and the
JSON body ``{"type": ..., "message": ...}``; a successful reply has ``ok`` and the result as
its JSON body (docs/wire-format.md).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
import pydantic_core
import structlog

from burrow import tracing
from burrow.broker.amqp import AmqpBroker, Delivery
from burrow.errors import BrokerError, PayloadInvalid
from burrow.tasks.context import TaskContext
from burrow.tasks.definition import TaskDefinition
from burrow.tasks.envelope import HDR_TRACEPARENT, new_task_id, trace_id_of
from burrow.tasks.handlers import (
    HDR_DEADLINE,
    HDR_RPC_STATUS,
    RPC_ERROR,
    RPC_OK,
    reply_to_allowed,
)
from burrow.worker._calls import call_handler
from burrow.worker._inflight import InFlight

if TYPE_CHECKING:
    from burrow.metrics import WorkerMetrics

log = structlog.get_logger("burrow.rpc")


@dataclass(slots=True)
class RpcServerStats:
    """Counters of one worker's RPC handlers."""

    received: int = 0
    replied: int = 0
    errors: int = 0
    refused: int = 0
    expired: int = 0
    reply_failed: int = 0


class RpcServer:
    """Runs RPC requests for one worker process."""

    def __init__(
        self,
        *,
        broker: AmqpBroker,
        pool: ThreadPoolExecutor,
        default_timeout: float,
        max_message_bytes: int,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._broker = broker
        self._metrics = metrics
        self._pool = pool
        self._default_timeout = default_timeout
        self._max_bytes = max_message_bytes
        self.stats = RpcServerStats()
        self._work = InFlight()

    @property
    def in_flight(self) -> int:
        return self._work.count

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is running; False when ``timeout`` ran out."""
        return await self._work.wait_idle(timeout)

    async def handle(self, delivery: Delivery, definition: TaskDefinition) -> None:
        """Answer one request to ``definition`` (acked first: at-most-once), in a span
        that is the caller's span's child (when tracing)."""
        await delivery.ack()
        self.stats.received += 1
        name = definition.name
        # The request queue's name as delivered (``{ns}.rpc.{name}``, as the caller's span
        # has it): requests come through the default exchange, keyed by the queue.
        queue = delivery.routing_key or name
        with tracing.rpc_server_span(delivery.headers.get(HDR_TRACEPARENT), name=name, queue=queue):
            reply_to = delivery.reply_to
            if not reply_to_allowed(reply_to) or reply_to is None:
                self.stats.refused += 1
                self._count(name, "refused")
                tracing.record_failure("RpcRefused", "no valid reply_to: dropped unrun")
                log.warning("rpc request without a valid reply_to dropped", reply_to=reply_to)
                return
            deadline = delivery.headers.get(HDR_DEADLINE)
            if isinstance(deadline, int) and deadline < time.time() * 1000:
                self.stats.expired += 1
                self._count(name, "expired")
                tracing.record_failure("RpcExpired", "the caller's deadline passed: dropped unrun")
                return
            self._work.enter()
            started = time.perf_counter()
            try:
                body, status = await self._run(definition, delivery)
                outcome = await self._reply(delivery, reply_to, body, status)
            finally:
                self._work.leave()
            if self._metrics is not None:
                self._metrics.rpc(name, outcome, time.perf_counter() - started)

    def _count(self, name: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.rpc(name, outcome, None)

    async def _reply(self, delivery: Delivery, reply_to: str, body: bytes, status: str) -> str:
        """Send the reply; returns the request's outcome (replied, error, reply_failed)."""
        try:
            await self._broker.publish(
                reply_to,
                body,
                correlation_id=delivery.correlation_id,
                headers={HDR_RPC_STATUS: status},
                mandatory=False,
            )
        except BrokerError as exc:
            self.stats.reply_failed += 1
            log.warning("rpc reply not sent", reply_to=reply_to, error=str(exc))
            return "reply_failed"
        self.stats.replied += 1
        if status == RPC_ERROR:
            self.stats.errors += 1
            return "error"
        return "replied"

    async def _run(self, definition: TaskDefinition, delivery: Delivery) -> tuple[bytes, str]:
        """The reply body and status of one request."""
        if len(delivery.body) > self._max_bytes:
            return _failed("PayloadTooLarge", f"request over {self._max_bytes} bytes")
        try:
            payload = definition.validate_json(delivery.body)
        except PayloadInvalid as exc:
            return _failed("PayloadInvalid", str(exc))
        ctx = _context(definition, delivery) if definition.wants_context else None
        timeout = definition.timeout or self._default_timeout
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                value = await call_handler(
                    definition, definition.call_args(payload, ctx), self._pool
                )
            return pydantic_core.to_json(value), RPC_OK
        except TimeoutError as exc:
            if scope.expired():
                return _failed("HandlerTimeout", f"the handler ran longer than {timeout} s")
            return _failed(type(exc).__name__, str(exc))
        except Exception as exc:  # every handler error goes back to the caller
            log.info("rpc handler raised", rpc=definition.name, error=repr(exc))
            return _failed(type(exc).__name__, str(exc) or type(exc).__name__)


def _context(definition: TaskDefinition, delivery: Delivery) -> TaskContext:
    call_id = delivery.correlation_id or delivery.message_id or new_task_id()
    trace_id = trace_id_of(delivery.headers.get(HDR_TRACEPARENT)) or ""
    return TaskContext(
        task_id=call_id,
        name=definition.name,
        queue=f"rpc.{definition.name}",
        attempt=1,
        max_retries=0,
        trace_id=trace_id,
        logger=log.bind(rpc=definition.name, call_id=call_id, trace_id=trace_id),
        headers=dict(delivery.headers),
    )


def _failed(kind: str, message: str) -> tuple[bytes, str]:
    """The error reply of a request, marking the request's span failed (if tracing)."""
    tracing.record_failure(kind, message)
    return orjson.dumps({"type": kind, "message": message[:4000]}), RPC_ERROR


__all__ = ["RpcServer", "RpcServerStats"]
