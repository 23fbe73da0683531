"""``Worker``: one worker process's consumers, executor and maintenance loops.

Lifecycle: connect (retrying until the broker and Redis answer) -> declare topology ->
consume -> on stop: cancel consumers, let in-flight tasks finish within ``grace``, give the
rest back (lease released, message requeued), close. Maintenance loops renew the leases of
running attempts, reap expired leases of dead workers, and write heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from burrow.broker.amqp import Consumer
from burrow.errors import BrokerError, StateError, StateUnavailable
from burrow.worker.executor import Executor, ExecutorStats
from burrow.worker.publishing import Republisher

if TYPE_CHECKING:
    from burrow.app import Burrow

log = structlog.get_logger("burrow.worker")


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


class Worker:
    """Runs the tasks of ``app`` on ``queues`` until ``stop`` is set."""

    def __init__(
        self,
        app: Burrow,
        *,
        queues: list[str] | None = None,
        concurrency: int | None = None,
        grace: float | None = None,
    ) -> None:
        ws = app.settings.worker
        self.app = app
        self.queues = tuple(queues or app.registry.queues() or ["default"])
        self.concurrency = concurrency or ws.concurrency
        self.prefetch = app.settings.prefetch or self.concurrency
        self.grace = ws.grace if grace is None else grace
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started_at = time.time()
        self._pool = ThreadPoolExecutor(
            max_workers=app.settings.threads or min(32, self.concurrency),
            thread_name_prefix="burrow-sync",
        )
        self._executor: Executor | None = None
        self._consumers: list[Consumer] = []

    def statistics(self) -> WorkerStatistics:
        stats = self._executor.stats if self._executor else ExecutorStats()
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
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then shut down gracefully."""
        app = self.app
        await app.broker.connect(timeout=None)  # retries with backoff until reachable
        await self._open_state(stop)
        for queue in self.queues:
            await app.declare_queue(queue)
        self._executor = executor = Executor(
            registry=app.registry,
            state=app.state,
            republisher=Republisher(app.broker, app.names),
            clock=app.clock,
            worker_id=self.worker_id,
            pool=self._pool,
            lease_ttl=app.settings.lease_ttl,
            default_timeout=app.settings.task_timeout,
            max_message_bytes=app.settings.max_message_bytes,
            on_dead=app.run_on_dead,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                maintenance = tg.create_task(self._maintain(), name="maintenance")
                await self._consume_all(executor)
                log.info(
                    "worker started",
                    worker=self.worker_id,
                    queues=list(self.queues),
                    concurrency=self.concurrency,
                )
                await stop.wait()
                await self._drain(executor)
                maintenance.cancel()
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
        for queue in self.queues:
            spec = self.app.work_queue_spec(queue)

            async def handler(delivery: Any, _queue: str = queue) -> None:
                await executor.handle(delivery, _queue)

            self._consumers.append(
                await self.app.broker.consume(spec, prefetch=self.prefetch, handler=handler)
            )

    async def _drain(self, executor: Executor) -> None:
        """Graceful stop (RELIABILITY G6): no new starts, finish or give back in-flight."""
        for consumer in self._consumers:
            try:
                await consumer.cancel()
            except BrokerError as exc:
                log.warning("could not cancel consumer", error=str(exc))
        executor.closing = True
        log.info("worker stopping", in_flight=executor.in_flight, grace=self.grace)
        if not await executor.wait_idle(self.grace):
            log.warning(
                "grace period over; returning unfinished tasks to the queue",
                in_flight=executor.in_flight,
            )
            executor.cancel_running()
            await executor.wait_idle(5.0)

    async def _close(self) -> None:
        for consumer in self._consumers:
            try:
                await consumer.close()
            except BrokerError as exc:
                log.debug("consumer close failed", error=str(exc))
        self._consumers.clear()
        with contextlib.suppress(StateError):  # the heartbeat expires by itself
            await self.app.state.forget_worker(self.worker_id)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _maintain(self) -> None:
        """Renew leases, reap expired ones, and write heartbeats, forever."""
        s = self.app.settings
        tick = min(s.lease_ttl / 3, s.reaper_interval, s.worker_heartbeat)
        last_reap = last_beat = 0.0
        while True:
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
            except StateError as exc:
                log.warning("maintenance step failed", error=str(exc))
            await asyncio.sleep(tick)

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
            "concurrency": st.concurrency,
            "in_flight": st.in_flight,
            "processed": st.succeeded + st.dead,
            "started_at": st.started_at,
            "last_seen": time.time(),
        }
        await self.app.state.heartbeat(
            self.worker_id, info, ttl=self.app.settings.worker_heartbeat * 3
        )
