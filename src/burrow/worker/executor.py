"""One delivery, from receipt to ack: the worker's hot path.

    parse envelope -> (not due yet: forward to a delay tier)
      -> start attempt in Redis (lease; dedupe; run count)
      -> validate payload -> run handler under a timeout
      -> write outcome in Redis -> publish retry / dead letter if any -> ack

Event subscribers run through the same path: their consumers pass an ``EventRoute`` (the
subscriber's definition and its dedupe key), which replaces the lookup by the ``type``
property and runs the event under the task id ``{message_id}:{key}``.

The order is what makes the guarantees: the record is written before the ack (a crash in
between redelivers, and the redelivery finds the task terminal and is acked without
running); a dead letter is published before the record turns ``failed`` (so a crash
never loses it); a retry copy is published before the original is acked.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import time
import traceback
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pydantic_core
import structlog

from burrow import tracing
from burrow._clock import Clock
from burrow.broker.amqp import Delivery
from burrow.broker.topology import TIER_BASE_MS
from burrow.errors import BrokerError, PayloadInvalid, StateError
from burrow.observability import bind_attempt, bind_task, unbind_task
from burrow.tasks.context import TaskContext
from burrow.tasks.definition import TaskDefinition
from burrow.tasks.envelope import (
    BAD_MESSAGE_ID,
    HDR_ETA,
    HDR_TRACEPARENT,
    BadMessage,
    Envelope,
    parse_envelope,
    valid_traceparent,
)
from burrow.tasks.handlers import event_task_id
from burrow.tasks.ratelimit import HDR_RATE_SLOT, RATE_SLEEP_MAX
from burrow.tasks.record import TaskError, TaskEvent
from burrow.tasks.registry import TaskRegistry
from burrow.tasks.status import TaskStatus
from burrow.worker._calls import call_handler
from burrow.worker._deadlines import Deadlines
from burrow.worker._inflight import InFlight
from burrow.worker.outcomes import Reject, Retry
from burrow.worker.priority import LaneGate
from burrow.worker.publishing import Republisher

if TYPE_CHECKING:
    from burrow.metrics import WorkerMetrics
    from burrow.webhooks.notify import WebhookNotifier

log = structlog.get_logger("burrow.worker")

#: Pause before requeueing a message when Redis or the broker failed mid-way, so an outage
#: does not turn into a hot redelivery loop. It doubles with consecutive failures up to the
#: cap: on quorum queues every requeue counts toward ``x-delivery-limit``, so the pauses
#: must stretch a backlog's requeues over a long outage (20 requeues span minutes).
FAILURE_PAUSE = 0.5
FAILURE_PAUSE_CAP = 30.0
#: Cancel requests remembered for attempts not (yet) running here. Every worker hears every
#: request, so this is bounded; it covers a request that overtakes the start of its attempt.
CANCEL_MEMORY = 1024


@dataclass(slots=True)
class ExecutorStats:
    """Counters of one worker process (read through ``Worker.statistics()``)."""

    received: int = 0
    started: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    rejected_messages: int = 0
    deduplicated: int = 0
    fenced: int = 0
    requeued: int = 0
    cancelled: int = 0
    rate_limited: int = 0  # deliveries sent on to wait for their rate-limit start slot
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventRoute:
    """How a subscriber queue's deliveries run: always ``definition``, each event under the
    task id ``{message_id}:{key}`` (``event_task_id``), so every subscriber keeps its own
    record and dedupe of the same event."""

    definition: TaskDefinition
    key: str


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: TaskStatus | None  # SUCCEEDED, FAILED (dead), or None for a retry
    result: bytes | None = None
    error: TaskError | None = None
    delay: float = 0.0


class Executor:
    """Runs deliveries for one worker process."""

    def __init__(
        self,
        *,
        registry: TaskRegistry,
        state: Any,
        republisher: Republisher,
        clock: Clock,
        worker_id: str,
        pool: ThreadPoolExecutor,
        lease_ttl: float,
        default_timeout: float,
        max_message_bytes: int,
        on_dead: Any,
        rate_sleepers: int = 1,
        slots: int = 0,
        lanes: Mapping[str, int] | None = None,
        webhooks: WebhookNotifier | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._registry = registry
        self._state = state
        self._out = republisher
        self._clock = clock
        self._worker_id = worker_id
        self._pool = pool
        self._lease_ms = int(lease_ttl * 1000)
        self._default_timeout = default_timeout
        self._max_bytes = max_message_bytes
        self._on_dead = on_dead
        self.stats = ExecutorStats()
        #: task id -> lease token of the attempts running here (renewed in the background).
        self.leases: dict[str, str] = {}
        #: task id -> (the asyncio task running its attempt, whether the handler is async).
        self._tasks: dict[str, tuple[asyncio.Task[Any], bool]] = {}
        #: task id -> lease token of an attempt cancelled on request (Burrow.cancel).
        self._cancelled: dict[str, str] = {}
        self._work = InFlight()
        self._deadlines = Deadlines()  # the attempts' timeouts
        #: Run slots per queue (0: no limit here; the prefetch bounds the attempts), in a
        #: ``LaneGate`` with the queue's number of priority lanes (``lanes``; default 1).
        self._slot_count = slots
        self._lane_counts = dict(lanes or {})
        self._gates: dict[str, LaneGate] = {}
        self.closing = False
        self._failures = 0  # consecutive deliveries that hit a Redis or broker failure
        #: Deliveries sleeping for a near rate-limit slot now, and how many may.
        self._rate_sleeping = 0
        self._rate_sleepers = rate_sleepers
        #: Enqueues the webhook of a task that ended (None: webhooks not wired in).
        self._webhooks = webhooks
        #: Prometheus series (None: this process exports none).
        self._metrics = metrics

    @property
    def in_flight(self) -> int:
        return self._work.count

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no delivery is being handled; False when ``timeout`` ran out."""
        return await self._work.wait_idle(timeout)

    def cancel_running(self) -> None:
        """Cancel the handlers still running (shutdown after the grace period)."""
        for task, _ in list(self._tasks.values()):
            task.cancel()

    def cancel(self, task_id: str, lease: str) -> bool:
        """Stop the attempt of ``task_id`` holding ``lease``: its record is already
        ``cancelled`` (``Burrow.cancel``). Returns True when that attempt runs here.

        An async handler is cancelled at once (it sees ``CancelledError``) and its delivery
        is acked with no further outcome. A sync handler cannot be interrupted: its thread
        runs on, and whatever it returns or raises is discarded (no result, retry or dead
        letter), then the delivery is acked.
        """
        if not lease:
            return False
        self._cancelled[task_id] = lease
        while len(self._cancelled) > CANCEL_MEMORY:
            del self._cancelled[next(iter(self._cancelled))]
        entry = self._tasks.get(task_id)
        if entry is None or self.leases.get(task_id) != lease:
            return False
        task, is_async = entry
        if is_async:
            task.cancel()
        return True

    def _was_cancelled(self, task_id: str, token: str) -> bool:
        """True (once) when the attempt ``token`` of ``task_id`` was cancelled on request."""
        if self._cancelled.get(task_id) != token:
            return False
        del self._cancelled[task_id]
        self.stats.cancelled += 1
        return True

    async def handle(
        self, delivery: Delivery, queue: str, route: EventRoute | None = None, lane: int = 0
    ) -> None:
        """Handle one delivery from work queue ``queue`` (unprefixed name); ``route`` is
        given for a subscriber's queue (events), None for a task queue; ``lane`` is the
        rank of the priority lane it came from (0 = the highest, or the only one)."""
        if self.closing:
            await _quietly(delivery.nack(requeue=True))
            return
        self.stats.received += 1
        self._work.enter()
        try:
            await self._handle(delivery, queue, route, lane)
        except (StateError, BrokerError) as exc:
            if delivery.settled:
                # It failed after its ack: the outcome is recorded and the broker has
                # forgotten the message; there is nothing to give back.
                log.warning("error after the delivery was settled", queue=queue, error=str(exc))
                return
            # Redis or the broker failed mid-way: nothing was acked, so the message comes
            # back; pause first so an outage is not a hot loop.
            self._failures += 1
            pause = min(FAILURE_PAUSE_CAP, FAILURE_PAUSE * 2 ** min(self._failures, 10))
            log.warning("delivery requeued", queue=queue, error=str(exc), pause=pause)
            self.stats.requeued += 1
            await asyncio.sleep(pause)
            await _quietly(delivery.nack(requeue=True))
        else:
            self._failures = 0
        finally:
            self._work.leave()
            unbind_task()

    async def _handle(
        self, delivery: Delivery, queue: str, route: EventRoute | None, lane: int
    ) -> None:
        if route is None:
            message_id, type_ = delivery.message_id, delivery.type
        else:
            message_id = event_task_id(delivery.message_id, route.key)
            type_ = route.definition.name
        try:
            env = parse_envelope(
                message_id=message_id,
                type_=type_,
                content_type=delivery.content_type,
                content_encoding=delivery.content_encoding,
                headers=delivery.headers,
                body=delivery.body,
                max_bytes=self._max_bytes,
            )
        except BadMessage as bad:
            # A refused id is no task id: no record is touched, and the dead letter keeps
            # the message_id it came with.
            record_id = None if bad.reason == BAD_MESSAGE_ID else message_id
            await self._park(delivery, queue, bad.reason, bad.detail, record_id)
            return
        bind_task(env.task_id, env.name, env.attempt, env.trace_id)  # unbound in handle
        if env.eta is not None:
            remaining = env.eta - self._clock.time()
            if remaining > TIER_BASE_MS / 1000:
                await self._out.delay(
                    delivery, queue, env.eta, task_id=env.task_id, rate_slot=_holds_slot(delivery)
                )
                await delivery.ack()
                return
            if remaining > 0:  # less than the smallest tier: cheaper to wait here
                await asyncio.sleep(remaining)
        definition = self._registry.find(env.name) if route is None else route.definition
        if definition is None:
            detail = f"no task named {env.name!r}"
            await self._park(delivery, queue, "unknown_task", detail, message_id)
            return
        await self._attempt(delivery, queue, env, definition, lane)

    async def _attempt(
        self, delivery: Delivery, queue: str, env: Envelope, definition: TaskDefinition, lane: int
    ) -> None:
        if definition.rate_limit is not None and await self._await_slot(
            delivery, queue, env, definition.name, definition.rate_limit.spacing
        ):
            return
        slot = _Slot(self._gate_for(queue), lane)
        await slot.take()
        try:
            if self.closing:  # stopped while this delivery waited for a run slot
                await _quietly(delivery.nack(requeue=True))
                return
            await self._start_attempt(delivery, queue, env, definition, slot)
        finally:
            slot.give_back()

    def _gate_for(self, queue: str) -> LaneGate | None:
        if not self._slot_count:
            return None
        gate = self._gates.get(queue)
        if gate is None:
            lanes = self._lane_counts.get(queue, 1)
            gate = self._gates[queue] = LaneGate(self._slot_count, lanes)
        return gate

    async def _start_attempt(
        self,
        delivery: Delivery,
        queue: str,
        env: Envelope,
        definition: TaskDefinition,
        slot: _Slot,
    ) -> None:
        token = _lease_token()
        start = await self._state.start(
            task_id=env.task_id,
            token=token,
            lease_ms=self._lease_ms,
            worker=self._worker_id,
            max_runs=definition.retry.max_runs,
            name=definition.name,
            queue=queue,
            payload=env.body,
            trace_id=env.trace_id,
        )
        if start.code == "terminal":
            self.stats.deduplicated += 1  # a redelivery or duplicate of a finished task
            if self._metrics is not None:
                self._metrics.deduplicated.inc()
            # Its webhook and on_dead hooks too, unless done before (a crash may have come
            # between the terminal record and the ack).
            await self._webhook(env.task_id, delivery)
            if start.extra == TaskStatus.FAILED.value:  # the status, from the start script
                await self._on_dead(definition.name, env.task_id)
            await delivery.ack()
            return
        if start.code == "busy":
            # Another attempt holds a live lease (a duplicate message, or a redelivery while
            # the first worker is paused): look again when that lease would have expired.
            eta = self._clock.time() + int(start.extra or "0") / 1000 + 0.1
            await self._out.delay(delivery, queue, eta, task_id=env.task_id)
            await delivery.ack()
            return
        if start.code == "exhausted":
            error = TaskError(
                type="DeliveryLimit",
                reason="delivery_limit",
                message=f"gave up: {start.attempts} runs started and none finished",
            )
            await self._dead(delivery, queue, env, definition, token="", error=error)
            return
        self.stats.started += 1
        if self._metrics is not None:
            self._count_start(definition, env, start.extra)
        if start.attempts != env.attempt:
            bind_attempt(start.attempts)
        with tracing.run_span(
            env.traceparent,
            name=definition.name,
            queue=queue,
            task_id=env.task_id,
            attempt=start.attempts,
        ):
            await self._run_attempt(delivery, queue, env, definition, token, start.attempts, slot)

    async def _await_slot(
        self, delivery: Delivery, queue: str, env: Envelope, name: str, interval: float
    ) -> bool:
        """Rate limit: reserve this run's start slot (shared by all workers in Redis).
        Returns True when the delivery was handed off to wait for it (then acked).

        A slot within ``RATE_SLEEP_MAX`` is slept here (by at most ``rate_sleepers``
        deliveries at once); a later one is waited for in the delay tiers, so a limited
        backlog holds no concurrency slot and a restart loses nothing. The copy carries the
        slot (``x-burrow-rate-slot``) and starts without reserving again when it is due.
        """
        if _holds_slot(delivery):
            return False  # back from waiting for the slot reserved for it
        wait = await self._state.reserve_start(name, env.task_id, interval)
        if wait <= 0:
            return False
        if wait <= RATE_SLEEP_MAX and self._rate_sleeping < self._rate_sleepers:
            self._rate_sleeping += 1
            try:
                await asyncio.sleep(wait)
            finally:
                self._rate_sleeping -= 1
            return False
        await self._out.delay(
            delivery, queue, self._clock.time() + wait, task_id=env.task_id, rate_slot=True
        )
        await delivery.ack()
        self.stats.rate_limited += 1
        return True

    async def _run_attempt(
        self,
        delivery: Delivery,
        queue: str,
        env: Envelope,
        definition: TaskDefinition,
        token: str,
        attempt: int,
        slot: _Slot,
    ) -> None:
        if self._cancelled and self._was_cancelled(env.task_id, token):
            await self._webhook(env.task_id, delivery)  # if Burrow.cancel could not
            await delivery.ack()  # cancelled before its start reached us
            return
        self.leases[env.task_id] = token
        current = asyncio.current_task()
        if current is not None:
            self._tasks[env.task_id] = (current, definition.is_async)
        begun = time.perf_counter()
        try:
            outcome = await self._invoke(definition, env, queue, attempt, delivery.headers)
        except asyncio.CancelledError:
            if (
                self._was_cancelled(env.task_id, token)
                and current is not None
                and current.uncancel() == 0
            ):
                # Cancelled on request: the record is already terminal; nothing to write.
                await delivery.ack()
                return
            # Shutdown ran out of grace: give the attempt back so it runs elsewhere.
            await _quietly(self._state.release(env.task_id, token=token, note="worker stopped"))
            await _quietly(delivery.nack(requeue=True))
            raise
        finally:
            self.leases.pop(env.task_id, None)
            self._tasks.pop(env.task_id, None)
            slot.give_back()  # the handler is done: its outcome is written outside the slot
        if self._metrics is not None:
            series = self._metrics.series(definition.name, definition.queue)
            series.duration.observe(time.perf_counter() - begun)
        if outcome.error is not None:
            tracing.record_failure(outcome.error.type, outcome.error.message)
        if self._cancelled and self._was_cancelled(env.task_id, token):
            # Cancelled while a sync handler (or one that swallowed the cancellation) ran
            # on: its outcome is discarded.
            await self._webhook(env.task_id, delivery)
            await delivery.ack()
            return
        await self._settle(delivery, queue, env, definition, token, attempt, outcome)

    async def _settle(
        self,
        delivery: Delivery,
        queue: str,
        env: Envelope,
        definition: TaskDefinition,
        token: str,
        attempt: int,
        outcome: _Outcome,
    ) -> None:
        if outcome.status is TaskStatus.SUCCEEDED:
            written = await self._state.finish(
                env.task_id, token=token, status=TaskStatus.SUCCEEDED, result=outcome.result
            )
            self.stats.succeeded += written
            self.stats.fenced += not written
            if self._metrics is not None:
                self._count_end(definition, succeeded=written)
            if written:
                await self._webhook(env.task_id, delivery)
            await delivery.ack()
            return
        if outcome.error is None:  # pragma: no cover - every failure outcome carries one
            raise RuntimeError("a failed outcome without an error")
        if outcome.status is None and attempt < definition.retry.max_runs:
            eta = self._clock.time() + outcome.delay
            if await self._state.retry(env.task_id, token=token, error=outcome.error, eta=eta):
                await self._out.retry(delivery, queue, attempt + 1, eta, task_id=env.task_id)
                log.warning(
                    "task failed, retrying",
                    error_type=outcome.error.type,
                    error=outcome.error.message[:500],
                    retry_in=round(outcome.delay, 3),
                    payload=env.body,  # hidden unless BURROW_LOG_PAYLOADS
                )
                self.stats.retried += 1
                if self._metrics is not None:
                    self._metrics.series(definition.name, definition.queue).retried.inc()
            else:
                self.stats.fenced += 1
                if self._metrics is not None:
                    self._metrics.fenced.inc()
            await delivery.ack()
            return
        error = outcome.error
        if outcome.status is None:  # wanted a retry, but none is left
            error = error.model_copy(update={"reason": "max_retries"})
        log.error(
            "task failed for good",
            reason=error.reason,
            error_type=error.type,
            error=error.message[:500],
            payload=env.body,  # hidden unless BURROW_LOG_PAYLOADS
        )
        await self._dead(delivery, queue, env, definition, token=token, error=error)

    async def _invoke(
        self,
        definition: TaskDefinition,
        env: Envelope,
        queue: str,
        attempt: int,
        headers: dict[str, Any],
    ) -> _Outcome:
        try:
            payload = definition.validate_json(env.body)
        except PayloadInvalid as exc:
            return _dead(exc, "validation_error", with_traceback=False)
        ctx: TaskContext | None = None
        if definition.wants_context:  # built only for handlers that take one
            ctx = TaskContext(
                task_id=env.task_id,
                name=definition.name,
                queue=queue,
                attempt=attempt,
                max_retries=definition.max_retries,
                trace_id=env.trace_id,
                logger=log.bind(
                    task_id=env.task_id,
                    task=definition.name,
                    attempt=attempt,
                    trace_id=env.trace_id,
                ),
                headers=dict(headers),
            )
        timeout = definition.timeout or self._default_timeout
        scope = self._deadlines.scope(timeout)
        try:
            with scope:
                value = await call_handler(
                    definition, definition.call_args(payload, ctx), self._pool
                )
            return _Outcome(TaskStatus.SUCCEEDED, result=pydantic_core.to_json(value))
        except Retry as exc:
            delay = exc.delay if exc.delay is not None else definition.retry.delay(attempt)
            return _Outcome(None, error=_error(exc, "retry_requested", False), delay=delay)
        except Reject as exc:
            return _dead(exc, "rejected", with_traceback=False)
        except pydantic_core.PydanticSerializationError as exc:
            return _dead(exc, "result_not_serializable", with_traceback=False)
        except TimeoutError as exc:
            if scope.expired():
                err = TaskError(
                    type="TaskTimeout",
                    reason="timeout",
                    message=f"the handler ran longer than {timeout} s",
                )
                return _Outcome(None, error=err, delay=definition.retry.delay(attempt))
            return _Outcome(
                None, error=_error(exc, "error", True), delay=definition.retry.delay(attempt)
            )
        except Exception as exc:
            return _Outcome(
                None, error=_error(exc, "error", True), delay=definition.retry.delay(attempt)
            )

    async def _dead(
        self,
        delivery: Delivery,
        queue: str,
        env: Envelope,
        definition: TaskDefinition,
        *,
        token: str,
        error: TaskError,
    ) -> None:
        record = await self._state.get(env.task_id)
        if record is not None and record.status is TaskStatus.CANCELLED:
            await delivery.ack()  # cancelled meanwhile: no dead letter for it
            return
        attempts = (record or _NoRecord).attempts
        history = _failures(await self._state.history(env.task_id), error, attempts)
        await self._out.dead_letter(
            delivery, queue, error=error, runs=attempts, task_id=env.task_id, history=history
        )
        written = await self._state.finish(
            env.task_id,
            token=token,
            status=TaskStatus.FAILED,
            error=error,
            note=error.reason or "",
        )
        if written:
            await self._webhook(env.task_id, delivery)
            # Before the ack: a crash in between redelivers the message, and the terminal
            # path below runs the hooks that were not claimed yet.
            await self._on_dead(definition.name, env.task_id)
        await delivery.ack()
        self.stats.dead += 1
        self._count_reason(error.reason or "error")
        if self._metrics is not None:
            self._metrics.dead_lettered(definition.name, definition.queue, error.reason or "error")

    async def _webhook(self, task_id: str, delivery: Delivery) -> None:
        """Enqueue the webhook of ``task_id`` (terminal) if it has a callback URL; before
        the ack, so a crash makes the redelivery enqueue it (``WebhookNotifier.notify``)."""
        if self._webhooks is None:
            return
        url = self._webhooks.url_for(delivery.headers)
        if url is not None:
            # The run's span (when tracing) is the parent of the webhook delivery's; else the
            # message's traceparent, when it is valid.
            traceparent = tracing.current_traceparent() or valid_traceparent(
                delivery.headers.get(HDR_TRACEPARENT)
            )
            await self._webhooks.notify(task_id, url, traceparent=traceparent)

    async def _park(
        self, delivery: Delivery, queue: str, reason: str, detail: str, task_id: str | None
    ) -> None:
        """Dead-letter a message that cannot run at all (foreign, broken, unknown task);
        ``task_id`` is the id its record has (when it has one)."""
        log.warning(
            "message dead-lettered",
            queue=queue,
            reason=reason,
            detail=detail,
            message_id=delivery.message_id,
        )
        error = TaskError(type="BadMessage", reason=reason, message=detail)
        await self._out.dead_letter(delivery, queue, error=error, runs=0, task_id=task_id)
        if task_id:
            await self._state.finish(
                task_id, token="", status=TaskStatus.FAILED, error=error, note=reason
            )
        await delivery.ack()
        self.stats.rejected_messages += 1
        self._count_reason(reason)
        if self._metrics is not None:
            self._metrics.rejected(queue, reason)

    def _count_reason(self, reason: str) -> None:
        self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1

    def _count_start(self, definition: TaskDefinition, env: Envelope, created: str) -> None:
        """Count a run's start and how long it waited: since its ETA (delayed tasks and
        retries), else since its record was created (``start.lua`` returns ``created_at``)."""
        if self._metrics is None:  # pragma: no cover - the caller checks
            return
        series = self._metrics.series(definition.name, definition.queue)
        series.started.inc()
        since = env.eta
        if since is None:
            try:
                since = float(created)
            except ValueError:
                return
        series.wait.observe(max(0.0, self._clock.time() - since))

    def _count_end(self, definition: TaskDefinition, *, succeeded: bool) -> None:
        """Count a success, or an outcome refused by the lease fence."""
        if self._metrics is None:  # pragma: no cover - the caller checks
            return
        if succeeded:
            self._metrics.series(definition.name, definition.queue).succeeded.inc()
        else:
            self._metrics.fenced.inc()


class _Slot:
    """A run slot of a queue, held from the start of an attempt until its handler returns,
    so at most ``concurrency`` handlers of a queue run at once while more deliveries
    (the prefetch, of every priority lane) wait here, a freed slot going to the highest
    lane waiting, and finished attempts write their outcome and ack outside it.
    ``give_back`` is idempotent; without a gate the slot is a no-op."""

    __slots__ = ("_gate", "_held", "_lane")

    def __init__(self, gate: LaneGate | None, lane: int) -> None:
        self._gate = gate
        self._lane = lane
        self._held = False

    async def take(self) -> None:
        if self._gate is not None:
            await self._gate.acquire(self._lane)
            self._held = True

    def give_back(self) -> None:
        if self._held and self._gate is not None:
            self._held = False
            self._gate.release()


class _LeaseTokens:
    """Lease tokens: a random prefix per process and a counter. They fence attempts of a task
    against each other (unique across processes and hosts), nothing secret; one
    ``secrets.token_hex`` call per attempt cost a syscall on the hot path. A forked child
    draws its own prefix."""

    prefix = secrets.token_hex(8)
    counter = itertools.count()

    @classmethod
    def reseed(cls) -> None:
        cls.prefix, cls.counter = secrets.token_hex(8), itertools.count()


os.register_at_fork(after_in_child=_LeaseTokens.reseed)


def _lease_token() -> str:
    return f"{_LeaseTokens.prefix}{next(_LeaseTokens.counter):x}"


def _holds_slot(delivery: Delivery) -> bool:
    """True for a copy waiting for (or back from waiting for) its reserved start slot."""
    headers = delivery.headers
    slot = headers.get(HDR_RATE_SLOT)
    return slot is not None and slot == headers.get(HDR_ETA)


class _NoRecord:
    attempts = 0


#: At most this many failed runs travel in a dead letter's ``x-burrow-history`` (the
#: newest; the record keeps them all), each message cut to ``HISTORY_MESSAGE`` characters.
HISTORY_RUNS = 20
HISTORY_MESSAGE = 500


def _failures(events: list[TaskEvent], last: TaskError, attempts: int) -> list[dict[str, Any]]:
    """The failed runs of a task, oldest first, for its dead letter: each earlier retry
    from the history, then the last error."""
    runs = [
        {"attempt": e.attempt, "at": e.at, **_brief(e.error)}
        for e in events
        if e.status == TaskStatus.RETRYING.value and e.error is not None
    ]
    runs.append({"attempt": attempts, "at": time.time(), **_brief(last)})
    return runs[-HISTORY_RUNS:]


def _brief(error: TaskError) -> dict[str, Any]:
    return {
        "type": error.type,
        "message": error.message[:HISTORY_MESSAGE],
        "reason": error.reason or "error",
    }


def _error(exc: BaseException, reason: str, with_traceback: bool) -> TaskError:
    tb = "".join(traceback.format_exception(exc)) if with_traceback else None
    message = str(exc) or type(exc).__name__
    return TaskError(type=type(exc).__name__, message=message[:4000], traceback=tb, reason=reason)


def _dead(exc: BaseException, reason: str, *, with_traceback: bool) -> _Outcome:
    return _Outcome(TaskStatus.FAILED, error=_error(exc, reason, with_traceback))


async def _quietly(awaitable: Any) -> None:
    """Best effort on a path that is already failing or shutting down."""
    try:
        await awaitable
    except (StateError, BrokerError) as exc:
        log.debug("best-effort step failed", error=str(exc))


__all__ = ["EventRoute", "Executor", "ExecutorStats"]
