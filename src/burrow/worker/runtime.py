"""``Worker``: one worker process's consumers, executor and maintenance loops.

Lifecycle: connect (retrying until the broker and Redis answer) -> declare topology ->
consume -> on stop: cancel consumers, let in-flight tasks finish within ``grace``, give the
rest back (lease released, message requeued), close. Maintenance loops renew the leases of
running attempts, reap expired leases of dead workers, write heartbeats, and drop entries of
expired records from the listing index. Once a second the worker adds the runs it started,
finished and failed to per-second counters in Redis (``worker._rates``), from which the
dashboard's throughput chart starts.

Besides its work queues each worker consumes its own exclusive queue bound to the
``{ns}.control`` fanout exchange: ``Burrow.cancel`` of a running task tells every worker
there, and the one running the attempt stops it. The listener costs nothing per task.

It also consumes the app's event subscribers and RPC handlers (all of them unless
``subscribers=`` / ``rpc=`` name a selection; ``queues=`` selects task queues only). A
subscriber's exchange, queue and bindings are declared on its consumer's robust channel, so
aio-pika declares them again after a reconnect before the consumer resubscribes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import structlog

from burrow import tracing
from burrow.broker.amqp import Consumer, Delivery
from burrow.broker.amqp.broker import QueueStats
from burrow.broker.topology import (
    CONTROL_CANCEL,
    QueueSpec,
    broadcast_queue,
    control_exchange,
    control_queue,
    dead_letter_queue,
    event_exchange,
    rpc_queue,
    webhook_queue,
)
from burrow.errors import BrokerError, ConfigurationError, StateError, StateUnavailable
from burrow.state.rates import RateCounters
from burrow.tasks.definition import TaskDefinition
from burrow.tasks.handlers import Subscriber
from burrow.tasks.ratelimit import rate_sleepers
from burrow.webhooks.delivery import WebhookDeliverer
from burrow.webhooks.events import WEBHOOK_QUEUE
from burrow.webhooks.notify import WebhookNotifier
from burrow.worker._rates import RateRecorder
from burrow.worker.executor import EventRoute, Executor, ExecutorStats
from burrow.worker.publishing import Republisher
from burrow.worker.rpc import RpcServer, RpcServerStats

if TYPE_CHECKING:
    from burrow.app import Burrow
    from burrow.metrics import WorkerMetrics

log = structlog.get_logger("burrow.worker")

#: Seconds between two passes over the oldest entries of the listing index.
INDEX_TRIM_INTERVAL = 60.0
#: Metrics: the in-flight gauge is sampled every ``METRICS_TICK`` seconds, the depths of
#: this worker's queues (and their dead-letter queues) read every ``DEPTH_INTERVAL``.
METRICS_TICK = 1.0
DEPTH_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """A snapshot of a worker process."""

    worker_id: str
    queues: tuple[str, ...]
    concurrency: int
    in_flight: int
    started_at: float
    received: int
    started: int
    succeeded: int
    retried: int
    dead: int
    rejected_messages: int
    deduplicated: int
    fenced: int
    cancelled: int
    rpc_received: int = 0
    rpc_replied: int = 0
    rpc_dropped: int = 0


class Worker:
    """Runs the tasks of ``app`` on ``queues`` until ``stop`` is set."""

    def __init__(
        self,
        app: Burrow,
        *,
        queues: list[str] | None = None,
        concurrency: int | None = None,
        grace: float | None = None,
        subscribers: Sequence[str] | None = None,
        rpc: Sequence[str] | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        ws = app.settings.worker_for(concurrency)
        self.app = app
        self.subscribers = _select("subscriber", app.handlers.subscribers(), subscribers)
        self.rpc_handlers = _select("rpc handler", app.handlers.rpc_handlers(), rpc)
        only_handlers = not len(app.registry) and (self.subscribers or self.rpc_handlers)
        self.queues = tuple(
            queues or app.registry.queues() or ([] if only_handlers else ["default"])
        )
        _check_queues(self.queues, self.subscribers)
        if WEBHOOK_QUEUE in self.queues:
            raise ConfigurationError(
                f"queue name {WEBHOOK_QUEUE!r} is reserved for webhook deliveries; "
                "give the task another queue"
            )
        self.concurrency = ws.concurrency
        self.prefetch = ws.prefetch
        self.grace = ws.grace if grace is None else grace
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started_at = time.time()
        self._pool = ThreadPoolExecutor(
            max_workers=ws.threads,
            thread_name_prefix="burrow-sync",
        )
        self._executor: Executor | None = None
        self._rpc: RpcServer | None = None
        #: Set once every consumer is attached (queues declared and bound).
        self.ready = asyncio.Event()
        self._consumers: list[Consumer] = []
        #: Kept apart from the work consumers: cancel requests still count while draining.
        self._control: Consumer | None = None
        #: Delivers webhooks (``{ns}.webhooks``) when a webhook secret is set.
        self._webhooks: WebhookDeliverer | None = None
        #: Prometheus series of this process (None: none exported).
        self.metrics = metrics

    def statistics(self) -> WorkerStatistics:
        stats = self._executor.stats if self._executor else ExecutorStats()
        rpc = self._rpc.stats if self._rpc else RpcServerStats()
        return WorkerStatistics(
            worker_id=self.worker_id,
            queues=self.queues,
            concurrency=self.concurrency,
            in_flight=self._executor.in_flight if self._executor else 0,
            started_at=self.started_at,
            received=stats.received,
            started=stats.started,
            succeeded=stats.succeeded,
            retried=stats.retried,
            dead=stats.dead,
            rejected_messages=stats.rejected_messages,
            deduplicated=stats.deduplicated,
            fenced=stats.fenced,
            cancelled=stats.cancelled,
            rpc_received=rpc.received,
            rpc_replied=rpc.replied,
            rpc_dropped=rpc.refused + rpc.expired + rpc.reply_failed,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then shut down gracefully."""
        app = self.app
        tracing.tracer()  # decided now: a bad OTEL_* setting fails at start, not per task
        await app.broker.connect(timeout=None)  # retries with backoff until reachable
        await self._open_state(stop)
        for queue in self.queues:
            await app.declare_queue(queue)
        republisher = Republisher(app.broker, app.names)
        for queue in self.queues:
            if len(app.lanes(queue)) > 1:
                republisher.use_lanes(queue)
        await self._declare_subscriber_queues(republisher)
        self._rpc = RpcServer(
            broker=app.broker,
            pool=self._pool,
            default_timeout=app.settings.task_timeout,
            max_message_bytes=app.settings.max_message_bytes,
            metrics=self.metrics,
        )
        self._executor = executor = Executor(
            registry=app.registry,
            state=app.state,
            republisher=republisher,
            clock=app.clock,
            worker_id=self.worker_id,
            pool=self._pool,
            lease_ttl=app.settings.lease_ttl,
            default_timeout=app.settings.task_timeout,
            max_message_bytes=app.settings.max_message_bytes,
            on_dead=app.run_on_dead,
            rate_sleepers=rate_sleepers(self.concurrency),
            slots=self.concurrency,
            lanes={queue: len(app.lanes(queue)) for queue in self.queues},
            webhooks=WebhookNotifier(
                broker=app.broker, state=app.state, names=app.names, settings=app.settings
            ),
            metrics=self.metrics,
        )
        if self.metrics is not None:
            app.broker.on_confirmed = self.metrics.publish.confirmed
            app.broker.on_reconnected = self.metrics.publish.reconnected
        try:
            async with asyncio.TaskGroup() as tg:
                done = asyncio.Event()
                tg.create_task(self._maintain(done), name="maintenance")
                # Per-second counts for the dashboard's chart: read from the executor's
                # counters, written once a second (nothing per task).
                rates = RateRecorder(RateCounters(app.state), executor.stats, app.clock)
                tg.create_task(rates.run(done), name="rates")
                if self.metrics is not None:
                    tg.create_task(self._sample(self.metrics, executor, done), name="metrics")
                await self._consume_all(executor)
                self.ready.set()
                log.info(
                    "worker started",
                    worker=self.worker_id,
                    queues=list(self.queues),
                    subscribers=[s.name for s in self.subscribers],
                    rpc=[d.name for d in self.rpc_handlers],
                    concurrency=self.concurrency,
                )
                await stop.wait()
                await self._drain(executor)
                done.set()
        finally:
            await self._close()

    async def _open_state(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await self.app.state.open()
            except StateUnavailable as exc:
                log.warning("waiting for Redis", error=str(exc), retry_in=delay)
            else:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _consume_all(self, executor: Executor) -> None:
        # The control queue first: once work arrives, cancel requests are heard.
        self._control = await self.app.broker.consume(
            control_queue(self.app.names, self.worker_id),
            prefetch=100,
            handler=self._on_control,
            bind_to=control_exchange(self.app.names),
        )
        for queue in self.queues:
            lanes = self.app.lanes(queue)
            if len(lanes) > 1:
                await self._consume_lanes(executor, queue, lanes)
                continue
            spec = self.app.work_queue_spec(queue)

            async def handler(delivery: Any, _queue: str = queue) -> None:
                await executor.handle(delivery, _queue)

            self._consumers.append(
                await self.app.broker.consume(spec, prefetch=self.prefetch, handler=handler)
            )
        for sub in self.subscribers:
            await self._consume_subscriber(executor, sub)
        for definition in self.rpc_handlers:
            await self._consume_rpc(definition)
        await self._consume_webhooks()

    async def _consume_webhooks(self) -> None:
        """Deliver webhooks: every worker consumes ``{ns}.webhooks`` once a webhook secret
        is set (without one, nothing is ever enqueued: webhooks are always signed)."""
        app = self.app
        if not app.settings.webhook_secret.strip():
            return
        self._webhooks = deliverer = WebhookDeliverer(
            settings=app.settings,
            state=app.state,
            republisher=Republisher(app.broker, app.names),
            names=app.names,
            metrics=self.metrics,
        )
        spec = webhook_queue(
            app.names,
            queue_type=app.settings.queue_type,
            delivery_limit=app.settings.delivery_limit,
        )
        self._consumers.append(
            await app.broker.consume(
                spec, prefetch=app.settings.webhook_concurrency, handler=deliverer.handle
            )
        )

    async def _consume_lanes(self, executor: Executor, queue: str, lanes: tuple[str, ...]) -> None:
        """Consume every priority lane of ``queue``, highest first (so a backlog of high
        ones is here first); the queue's run slots (``concurrency``, in the executor) go
        to the highest lane waiting."""
        for rank, lane in enumerate(lanes):

            async def handler(delivery: Any, _rank: int = rank) -> None:
                await executor.handle(delivery, queue, lane=_rank)

            self._consumers.append(
                await self.app.broker.consume(
                    self.app.work_queue_spec(queue, lane), prefetch=self.prefetch, handler=handler
                )
            )

    def _subscriber_queue(self, sub: Subscriber) -> tuple[QueueSpec, str]:
        """The queue ``sub`` consumes here (spec and unprefixed name) and its dedupe key."""
        if sub.shared:
            return self.app.work_queue_spec(sub.queue), sub.name
        return broadcast_queue(self.app.names, sub.name, self.worker_id), (
            f"{sub.name}@{self.worker_id}"
        )

    async def _declare_subscriber_queues(self, republisher: Republisher) -> None:
        """Shared queues with their dead-letter queues; for broadcast subscribers the shared
        dead-letter queue their per-worker queues send to."""
        app = self.app
        for sub in self.subscribers:
            if sub.shared:
                await app.declare_queue(sub.queue)
                continue
            kind = app.queue_type(sub.queue)
            await app.broker.declare_queue(dead_letter_queue(app.names, sub.queue, queue_type=kind))
            spec, _ = self._subscriber_queue(sub)
            republisher.route_dead_letters(app.names.unprefixed(spec.name), to=sub.queue)

    async def _consume_subscriber(self, executor: Executor, sub: Subscriber) -> None:
        spec, key = self._subscriber_queue(sub)
        queue = self.app.names.unprefixed(spec.name)
        route = EventRoute(sub.definition, key)

        async def handler(delivery: Any) -> None:
            await executor.handle(delivery, queue, route)

        self._consumers.append(
            await self.app.broker.consume(
                spec,
                prefetch=self.prefetch,
                handler=handler,
                bind_to=event_exchange(self.app.names, sub.exchange),
                bindings=sub.bindings(self.app.names, spec.name),
            )
        )

    async def _consume_rpc(self, definition: TaskDefinition) -> None:
        server = self._rpc
        if server is None:  # pragma: no cover - run() builds it before consuming
            raise RuntimeError("rpc server not built")

        async def handler(delivery: Any) -> None:
            await server.handle(delivery, definition)

        self._consumers.append(
            await self.app.broker.consume(
                rpc_queue(self.app.names, definition.name),
                prefetch=self.concurrency,  # no run slots for RPC: the prefetch limits it
                handler=handler,
            )
        )

    async def _on_control(self, delivery: Delivery) -> None:
        """A control message: cancel the attempt it names if it runs here."""
        try:
            message = orjson.loads(delivery.body)
            if delivery.type == CONTROL_CANCEL and self._executor is not None:
                task_id, lease = str(message["task_id"]), str(message["lease"])
                if self._executor.cancel(task_id, lease):
                    log.info("task cancelled on request", task_id=task_id)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("unreadable control message", type=delivery.type, error=str(exc))
        await delivery.ack()

    async def _drain(self, executor: Executor) -> None:
        """Graceful stop: no new starts, finish or give back in-flight."""
        for consumer in self._consumers:
            try:
                await consumer.cancel()
            except BrokerError as exc:
                log.warning("could not cancel consumer", error=str(exc))
        executor.closing = True
        log.info("worker stopping", in_flight=executor.in_flight, grace=self.grace)
        if self._rpc is not None:
            await self._rpc.wait_idle(self.grace)  # replies are at-most-once: nothing to give back
        if self._webhooks is not None:  # an unfinished attempt is simply delivered again
            await self._webhooks.wait_idle(min(self.grace, self.app.settings.webhook_timeout))
        if not await executor.wait_idle(self.grace):
            log.warning(
                "grace period over; returning unfinished tasks to the queue",
                in_flight=executor.in_flight,
            )
            executor.cancel_running()
            await executor.wait_idle(5.0)

    async def _close(self) -> None:
        control, self._control = self._control, None
        for consumer in [*self._consumers, *([control] if control else [])]:
            try:
                await consumer.close()
            except BrokerError as exc:
                log.debug("consumer close failed", error=str(exc))
        self._consumers.clear()
        with contextlib.suppress(StateError):  # the heartbeat expires by itself
            await self.app.state.forget_worker(self.worker_id)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._webhooks is not None:
            await self._webhooks.aclose()

    async def _maintain(self, done: asyncio.Event) -> None:
        """Renew leases, reap expired ones, and write heartbeats until ``done`` is set.

        Stopped by the event rather than by cancellation: a cancel that lands inside a
        redis-py call can be swallowed (redis/redis-py#2028), leaving the loop running.
        """
        s = self.app.settings
        tick = min(s.lease_ttl / 3, s.reaper_interval, s.worker_heartbeat)
        last_reap = last_beat = last_trim = 0.0
        while not done.is_set():
            now = time.monotonic()
            try:
                await self._renew()
                if now - last_reap >= s.reaper_interval:
                    last_reap = now
                    reaped = await self.app.state.reap()
                    if reaped:
                        log.warning("expired leases reaped", count=reaped)
                if now - last_beat >= s.worker_heartbeat:
                    last_beat = now
                    await self._heartbeat()
                if now - last_trim >= INDEX_TRIM_INTERVAL:
                    last_trim = now
                    await self.app.state.trim_index()
            except StateError as exc:
                log.warning("maintenance step failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await done.wait()

    async def _sample(
        self, metrics: WorkerMetrics, executor: Executor, done: asyncio.Event
    ) -> None:
        """Keep the gauges current until ``done``: in flight every ``METRICS_TICK``, the
        depths and dead letters of this worker's task and subscriber queues every
        ``DEPTH_INTERVAL`` (best effort; a broadcast subscriber's per-worker queues are
        exclusive, so only its dead letters are read)."""
        last_depth = 0.0
        sampled = [*self.queues, *dict.fromkeys(sub.queue for sub in self.subscribers)]
        while not done.is_set():
            metrics.in_flight.set(executor.in_flight)
            if time.monotonic() - last_depth >= DEPTH_INTERVAL:
                last_depth = time.monotonic()
                for queue in sampled:
                    try:
                        work, dead = await self.app.queue_stats(queue)
                    except (BrokerError, TimeoutError) as exc:
                        log.debug("queue depth not read", queue=queue, error=str(exc))
                        break
                    metrics.set_depth(queue, work.messages if work else None, _messages(dead))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(METRICS_TICK):
                    await done.wait()
        metrics.in_flight.set(0)

    async def _renew(self) -> None:
        if self._executor and self._executor.leases:
            await self.app.state.renew(
                dict(self._executor.leases), int(self.app.settings.lease_ttl * 1000)
            )

    async def _heartbeat(self) -> None:
        st = self.statistics()
        info = {
            "id": st.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(st.queues),
            # Named as burrow queues and the API list them: a shared queue, or sub.{name}
            # for a broadcast subscriber (its own queue here is sub.{name}.{worker id}).
            "subscriber_queues": [sub.queue for sub in self.subscribers],
            "rpc_queues": [definition.queue for definition in self.rpc_handlers],
            "concurrency": st.concurrency,
            "in_flight": st.in_flight,
            "processed": st.succeeded + st.dead,
            "started_at": st.started_at,
            "last_seen": time.time(),
        }
        await self.app.state.heartbeat(
            self.worker_id, info, ttl=self.app.settings.worker_heartbeat * 3
        )


_H = TypeVar("_H", Subscriber, TaskDefinition)


def _messages(stats: QueueStats | None) -> int | None:
    return stats.messages if stats is not None else None


def _select(kind: str, available: list[_H], names: Sequence[str] | None) -> list[_H]:
    """The handlers named in ``names`` (all when None).

    Raises:
        ConfigurationError: a name the app does not have.
    """
    if names is None:
        return available
    by_name = {h.name: h for h in available}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigurationError(f"unknown {kind}(s): {', '.join(unknown)}")
    return [by_name[n] for n in names]


def _check_queues(task_queues: Sequence[str], subscribers: list[Subscriber]) -> None:
    """A queue has one kind of consumer: a subscriber's shared queue cannot be a task queue.

    Raises:
        ConfigurationError: a subscriber's ``queue=`` is also a task queue here.
    """
    clash = sorted({s.queue for s in subscribers if s.shared} & set(task_queues))
    if clash:
        raise ConfigurationError(
            f"queue(s) {', '.join(clash)} are both task queues and subscriber queues; "
            "give the subscriber its own queue"
        )
