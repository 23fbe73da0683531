"""Enqueue the webhook of a task that reached a terminal state.

The webhook is a message on the internal queue ``{ns}.webhooks`` (published with a
confirm), so a restart of any process loses no delivery; every worker consumes that queue
(``burrow.webhooks.delivery``). Callers enqueue *before* they ack the task's delivery, and
``notify`` first looks at the record's ``webhook`` field: a redelivery of a task that is
already terminal (a crash between "record terminal" and "webhook published") enqueues the
webhook unless a worker has tried it already. The field is marked ``pending`` just before
the publish, so a crash in between leaves a mark with 0 attempts, which the redelivery
publishes again. Duplicates are possible that way; they carry the same ``webhook-id``
(at-least-once), and a duplicate met after the webhook was delivered is dropped unsent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import structlog

from burrow.broker.amqp import AmqpBroker
from burrow.broker.topology import Names, webhook_queue
from burrow.config import Settings
from burrow.state.redis import RedisStateStore
from burrow.tasks.callbacks import callback_header
from burrow.tasks.envelope import HDR_ATTEMPT, HDR_TRACEPARENT
from burrow.tasks.record import WebhookOutcome
from burrow.webhooks.events import (
    FAILED,
    HDR_WEBHOOK_TASK,
    HDR_WEBHOOK_URL,
    PENDING,
    WEBHOOK_MESSAGE_TYPE,
    event_body,
    webhook_id,
)

log = structlog.get_logger("burrow.webhooks")


class WebhookNotifier:
    """Enqueues webhooks for one app's processes (workers, and ``Burrow.cancel``)."""

    def __init__(
        self, *, broker: AmqpBroker, state: RedisStateStore, names: Names, settings: Settings
    ) -> None:
        self._broker = broker
        self._state = state
        self._spec = webhook_queue(
            names, queue_type=settings.queue_type, delivery_limit=settings.delivery_limit
        )
        self._default_url = settings.callback_url or None
        #: Webhooks are signed, always: without a secret nothing is enqueued.
        self.enabled = bool(settings.webhook_secret.strip())
        self._warned = False

    def url_for(self, headers: Mapping[str, Any] | None) -> str | None:
        """The callback URL of a task message: its own, else the app-wide default."""
        return callback_header(headers) or self._default_url

    async def notify(self, task_id: str, url: str, *, traceparent: str | None = None) -> bool:
        """Enqueue the webhook of ``task_id``'s terminal state to ``url`` unless it was
        enqueued already; True when enqueued now. ``traceparent`` (the run's) travels in
        the webhook message, so its delivery joins the task's trace.

        Raises:
            BrokerError, StateError: nothing was marked; the caller must not ack the task's
                delivery (its redelivery tries again).
        """
        record = await self._state.get(task_id)
        if record is None or not record.terminal:
            return False
        wid = webhook_id(record)
        seen = record.webhook
        if seen is not None and seen.id == wid and (seen.status != PENDING or seen.attempts):
            return False  # enqueued before, and a worker has tried it since
        now = time.time()
        if not self.enabled:
            self._warn_once()
            outcome = WebhookOutcome(
                id=wid,
                status=FAILED,
                last_error="no_secret",
                detail="BURROW_WEBHOOK_SECRET is not set in the worker; webhooks are signed",
                updated_at=now,
            )
            await self._state.record_webhook(task_id, outcome, enqueue=True)
            return False
        # Marked before the publish, so an attempt that overtakes this call finds the mark
        # to update. A crash in between leaves "pending, 0 attempts", which a redelivery
        # (or a repeated cancel) publishes again.
        pending = WebhookOutcome(id=wid, status=PENDING, attempts=0, updated_at=now)
        await self._state.record_webhook(task_id, pending, enqueue=True)
        await self._ensure_queue()
        await self._broker.publish(
            self._spec.name,
            event_body(record),
            message_id=wid,
            type_=WEBHOOK_MESSAGE_TYPE,
            headers={
                HDR_WEBHOOK_URL: url,
                HDR_WEBHOOK_TASK: task_id,
                HDR_ATTEMPT: 1,
                **({HDR_TRACEPARENT: traceparent} if traceparent else {}),
            },
        )
        return True

    async def _ensure_queue(self) -> None:
        if not self._broker.is_declared(self._spec.name):
            await self._broker.declare_queue(self._spec)

    def _warn_once(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "a finished task has a callback_url, but BURROW_WEBHOOK_SECRET is not set "
                "here: its webhook is recorded as failed (no_secret), not sent unsigned"
            )


__all__ = ["WebhookNotifier"]
