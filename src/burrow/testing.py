"""Helpers for testing code that uses burrow (public: ``burrow.testing``).

burrow's own integration tests run against the real RabbitMQ and Redis, and we suggest
yours do too: a namespace per test keeps runs apart, a worker runs in the test's event
loop, and ``purge`` deletes what the test declared. There is no in-memory broker or state
store yet (``docs/architecture.md``, "Not built yet").

    from burrow.testing import purge, running_worker, unique_namespace

    async def test_add() -> None:
        app = Burrow(namespace=unique_namespace())
        app.task(add)
        try:
            async with running_worker(app):
                handle = await app.submit("add", {"a": 1, "b": 2})
                assert (await app.wait(handle.id, timeout=10)).result == 3
        finally:
            await purge(app)

Also here: ``FakeClock`` (time you move by hand, for code that takes a ``Clock``),
``capture_logs`` (structlog's, to assert on burrow's log events) and ``capture_spans``
(burrow's OpenTelemetry spans in memory).

Logs keep task data out as ``burrow worker``'s do, whatever structlog set-up the test runs
under: ``running_worker`` and ``capture_logs`` add burrow's redaction to it when it lacks
it (``burrow.observability.redacting``), so payloads and results show as hidden unless
``BURROW_LOG_PAYLOADS`` (``Settings.log_payloads``) or ``capture_logs(log_payloads=True)``
asks for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import structlog.testing
from structlog.typing import EventDict

from burrow import tracing
from burrow.app import Burrow
from burrow.broker.topology import LANES, TIERS_MS
from burrow.errors import BurrowError
from burrow.observability import redacting
from burrow.webhooks.events import WEBHOOK_QUEUE
from burrow.worker.runtime import Worker


class FakeClock:
    """A ``Clock`` that stands still until moved: ``advance(seconds)`` or ``set(t)``."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._time = start
        self._monotonic = 0.0

    def time(self) -> float:
        return self._time

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        if seconds < 0:
            raise ValueError("a clock never goes backwards")
        self._time += seconds
        self._monotonic += seconds

    def set(self, t: float) -> None:
        """Jump the wall clock to ``t`` (the monotonic one moves by the same amount)."""
        self.advance(max(0.0, t - self._time))


def unique_namespace(prefix: str = "test") -> str:
    """A namespace no other test or run uses (``{prefix}{12 hex digits}``)."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def running_worker(
    app: Burrow, *, ready_timeout: float = 10.0, stop_timeout: float = 30.0, **options: Any
) -> AsyncIterator[Worker]:
    """Run a worker for ``app`` in this event loop for the block: it is consuming every
    queue when the block starts, and stopped gracefully (in-flight tasks finish within
    ``BURROW_GRACE``) when it ends. ``options`` go to ``Worker`` (``concurrency``,
    ``queues``, ...). Its log lines hide payloads and secrets as ``burrow worker``'s do,
    unless ``app.settings.log_payloads`` (``BURROW_LOG_PAYLOADS``) is on.

    Raises:
        TimeoutError: not consuming within ``ready_timeout`` seconds.
        The worker's own error, if it stopped on one before it was ready.
    """
    with redacting(log_payloads=app.settings.log_payloads):
        async with _worker(app, ready_timeout, stop_timeout, options) as worker:
            yield worker


@contextlib.asynccontextmanager
async def _worker(
    app: Burrow, ready_timeout: float, stop_timeout: float, options: dict[str, Any]
) -> AsyncIterator[Worker]:
    stop = asyncio.Event()
    worker = Worker(app, **options)
    task = asyncio.create_task(worker.run(stop))
    try:
        ready = asyncio.create_task(worker.ready.wait())
        try:
            done, _ = await asyncio.wait(
                {task, ready}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if task in done:
            task.result()  # raises the error it stopped on
            raise RuntimeError("the worker stopped before it was ready")
        if not done:
            raise TimeoutError(f"the worker was not consuming within {ready_timeout} s")
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=stop_timeout)


async def purge(
    app: Burrow,
    *,
    queues: Iterable[str] = (),
    rpc: Iterable[str] = (),
    exchanges: Iterable[str] = (),
) -> None:
    """Delete what ``app``'s namespace holds: the queues of its tasks (with their
    priority lanes and dead-letter queues), subscribers and RPC handlers, its event
    exchanges, the delay tiers and webhook queue, and every Redis key of the namespace.
    Then close the app. Meant for the end of a test; it cannot be undone.

    ``queues`` (with their priority lanes, if they have any, and dead-letter queues),
    ``rpc`` and ``exchanges`` name more of them (unprefixed) that ``app`` does not
    register, e.g. those of another process: this app cannot know whether another
    declared such a queue with lanes, so every lane name is deleted (deleting a queue that
    does not exist does nothing).
    """
    names = app.names
    found: set[str] = set()
    for queue in {*app.registry.queues(), *(s.queue for s in app.handlers.subscribers())}:
        found |= {names.lane(queue, lane) for lane in app.lanes(queue)}
        found.add(names.dlq(queue))
    for queue in queues:
        found |= {names.lane(queue, lane) for lane in LANES}
        found |= {names.queue(queue), names.dlq(queue)}
    found |= {
        names.rpc_queue(name) for name in (*rpc, *(d.name for d in app.handlers.rpc_handlers()))
    }
    found |= {names.delay_queue(tier) for tier in TIERS_MS}
    found |= {names.queue(WEBHOOK_QUEUE), names.dlq(WEBHOOK_QUEUE)}
    gone = {names.exchange(e) for e in (*exchanges, *app.handlers.exchanges())}
    gone.add(names.delay_exchange)
    try:
        await app.connect(timeout=10)
        for queue in sorted(found):
            await app.broker.delete_queue(queue)
        for exchange in sorted(gone):
            await app.broker.delete_exchange(exchange)
        await app.state.purge_namespace()
    finally:
        with contextlib.suppress(BurrowError):
            await app.close()


@contextlib.contextmanager
def capture_logs(*, log_payloads: bool = False) -> Iterator[list[EventDict]]:
    """Collect the log events of the block (structlog's ``capture_logs``) as burrow's logs
    carry them: with the task context and with payloads and secrets redacted (payloads shown
    when ``log_payloads``). Each event is a dict, ``event`` and ``log_level`` included."""
    with structlog.testing.capture_logs() as events, redacting(log_payloads=log_payloads):
        yield events


@contextlib.contextmanager
def capture_spans() -> Iterator[Any]:
    """Collect burrow's OpenTelemetry spans in memory for the block; yields the
    ``InMemorySpanExporter`` (``get_finished_spans()``). Tracing goes back to what the
    environment says afterwards."""
    with tracing.in_memory_spans() as exporter:
        yield exporter


__all__ = [
    "FakeClock",
    "capture_logs",
    "capture_spans",
    "purge",
    "running_worker",
    "unique_namespace",
]
