"""Copies of a delivery that the worker publishes: delayed, retried, dead-lettered.

Every copy keeps the original's ``message_id``, ``type`` and body, and the headers that
``tasks.headers.republishable`` lets through (burrow's own, the trace context and the
application's plain headers; never ``CC``/``BCC`` or another header the broker acts on, so
a copy is never routed anywhere but where burrow sends it). Each copy is confirmed by the
broker before the original is acked.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from burrow.broker.amqp import AmqpBroker, Delivery
from burrow.broker.topology import LANES, Names, delay_exchange, delay_tier, lane_of, tier_for
from burrow.tasks.envelope import (
    HDR_ATTEMPT,
    HDR_DEAD_AT,
    HDR_ERROR,
    HDR_ETA,
    HDR_HISTORY,
    HDR_ORIGIN,
    HDR_REASON,
    HDR_RUNS,
    HDR_TIER,
    eta_header,
)
from burrow.tasks.headers import republishable
from burrow.tasks.ratelimit import HDR_RATE_SLOT
from burrow.tasks.record import TaskError


class Republisher:
    """Publishes the worker's copies; declares delay tiers on first use."""

    def __init__(self, broker: AmqpBroker, names: Names) -> None:
        self._broker = broker
        self._names = names
        #: Unprefixed queue -> the queue whose ``.dlq`` takes its dead letters, for queues
        #: that do not have their own (a broadcast subscriber's per-worker queues).
        self._dead_letters_of: dict[str, str] = {}
        #: Unprefixed queue -> the names of its priority lanes (queues with priorities).
        self._lanes: dict[str, frozenset[str]] = {}

    def route_dead_letters(self, queue: str, *, to: str) -> None:
        """Send the dead letters of ``queue`` to ``to``'s dead-letter queue (unprefixed)."""
        self._dead_letters_of[queue] = to

    def use_lanes(self, queue: str) -> None:
        """``queue`` has priority lanes: copies go back to the lane they came from."""
        self._lanes[queue] = frozenset(self._names.lane(queue, lane) for lane in LANES)

    def _target(self, delivery: Delivery, queue: str) -> str:
        """The work queue a copy of ``delivery`` (from ``queue``) goes back to: for a queue
        with lanes, the lane it was delivered from (else the lane of its priority)."""
        lanes = self._lanes.get(queue)
        if lanes is None:
            return self._names.queue(queue)
        if delivery.routing_key in lanes:
            return str(delivery.routing_key)
        return self._names.lane(queue, lane_of(delivery.priority))

    async def delay(
        self,
        delivery: Delivery,
        queue: str,
        eta: float,
        *,
        task_id: str,
        attempt: int | None = None,
        rate_slot: bool = False,
    ) -> None:
        """Send ``delivery`` on toward ``queue`` so it arrives at ``eta`` (Unix time).

        ``task_id`` is the envelope's id: a foreign message without ``message_id`` gets one
        on first receipt, and every copy must keep it (or each retry would be a new task).
        ``attempt``, when given, is the attempt the copy carries (a retry). ``rate_slot``
        marks a copy waiting for the start slot reserved for it at ``eta`` (rate limits);
        every other copy drops that mark and reserves again when it comes back.
        """
        headers = republishable(delivery.headers)
        if attempt is not None:
            headers[HDR_ATTEMPT] = attempt
        headers[HDR_ETA] = eta_header(eta)
        headers.pop(HDR_RATE_SLOT, None)
        if rate_slot:
            headers[HDR_RATE_SLOT] = headers[HDR_ETA]
        await self.publish_delayed(
            self._target(delivery, queue),
            delivery.body,
            headers,
            eta,
            delivery=delivery,
            message_id=task_id,
        )

    async def retry(
        self, delivery: Delivery, queue: str, attempt: int, eta: float, *, task_id: str
    ) -> None:
        """Schedule attempt ``attempt`` of ``delivery`` (task ``task_id``) at ``eta``."""
        await self.delay(delivery, queue, eta, task_id=task_id, attempt=attempt)

    async def dead_letter(
        self,
        delivery: Delivery,
        queue: str,
        *,
        error: TaskError,
        runs: int,
        task_id: str | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        """Put a copy of ``delivery`` in ``queue``'s dead-letter queue with why it died
        and, for tasks that ran, the errors of their failed runs (``history``)."""
        queue = self._dead_letters_of.get(queue, queue)
        headers = republishable(delivery.headers)
        for stale in (HDR_ETA, HDR_RATE_SLOT, HDR_HISTORY):
            headers.pop(stale, None)
        headers[HDR_REASON] = error.reason or "error"
        headers[HDR_ERROR] = error.model_dump_json(exclude={"traceback"}, exclude_none=True)
        headers[HDR_RUNS] = runs
        headers[HDR_ORIGIN] = queue
        headers[HDR_DEAD_AT] = int(time.time() * 1000)
        if history:
            headers[HDR_HISTORY] = orjson.dumps(history).decode()
        await self._broker.publish(
            self._names.dlq(queue),
            delivery.body,
            message_id=task_id or delivery.message_id,
            type_=delivery.type,
            headers=headers,
            content_type=delivery.content_type,
            timestamp=delivery.timestamp,
            priority=delivery.priority,
        )

    async def publish_delayed(
        self,
        routing_key: str,
        body: bytes,
        headers: dict[str, Any],
        eta: float,
        *,
        delivery: Delivery | None = None,
        message_id: str | None = None,
        type_: str | None = None,
        priority: int | None = None,
    ) -> None:
        """Publish to ``routing_key`` (a work queue) through the delay tier that fits
        the time left until ``eta``, or straight to the queue when it is (nearly) due.

        ``headers`` must already be filtered (``republishable``) when they come from a
        delivery; the delay tier header is set here, and dropped when the copy goes
        straight to the queue."""
        tier = tier_for((eta - time.time()) * 1000)
        if delivery is not None:
            message_id = message_id or delivery.message_id
            type_, priority = delivery.type, delivery.priority
        if tier is None:
            headers.pop(HDR_TIER, None)
            await self._broker.publish(
                routing_key,
                body,
                message_id=message_id,
                type_=type_,
                headers=headers,
                priority=priority,
            )
            return
        await self._ensure_tier(tier)
        headers[HDR_TIER] = str(tier)
        await self._broker.publish(
            routing_key,
            body,
            exchange=self._names.delay_exchange,
            message_id=message_id,
            type_=type_,
            headers=headers,
            priority=priority,
        )

    async def _ensure_tier(self, tier: int) -> None:
        queue, binding = delay_tier(self._names, tier)
        # Ready only once bound: a concurrent caller that saw the queue declared but not yet
        # bound would publish to the delay exchange before any queue matched (unroutable).
        if self._broker.is_declared(f"binding:{binding.queue}:{binding.exchange}"):
            return
        exchange = delay_exchange(self._names)
        if not self._broker.is_declared(f"exchange:{exchange.name}"):
            await self._broker.declare_exchange(exchange)
        await self._broker.declare_queue(queue)
        await self._broker.bind(binding)
