"""``GET /api/v1/events/stream`` (live updates as server-sent events) and
``GET /api/v1/tasks/{id}/history`` (a task's timeline): what the dashboard reads besides
the other routes.

One ``StreamHub`` per API process feeds every open stream. It starts with the first
subscriber and runs until the app shuts down:

* a ``TaskFeed`` poll every second (sooner after a terminal notification) sends a ``task``
  event for each task that was created or changed status;
* every two seconds a ``stats`` event carries each queue's depth and consumers (from the
  broker), the statuses of the newest tasks, and the rates since the previous one
  (records created, and terminal notifications counted by status);
* a comment line every 15 s keeps proxies from closing an idle stream.

A new stream first gets a ``hello`` event with the rate history (five minutes), so a chart
starts full: the hub's own points, after those of the minutes before it started, read once
from the per-second counters the workers keep in Redis (``state.rates``; submissions from
the listing index), so a dashboard opened after work ran unwatched shows that work.

A client too slow to take its events gets ``resync`` (reload your lists) instead of an
unbounded buffer. The stream needs the ``read`` scope with the usual
``Authorization`` header; browsers read it with ``fetch`` (``EventSource`` cannot send
headers, and the API refuses keys in URLs, which end up in logs).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response, StreamingResponse

from burrow._background import Background
from burrow.api.deps import ApiState, Read, State
from burrow.api.envelope import Envelope, error_responses, ok
from burrow.api.routes.tasks import PREFIX, TaskId
from burrow.app import Burrow
from burrow.errors import BurrowError, TaskNotFound
from burrow.state.feed import TaskFeed
from burrow.state.rates import RateCounters
from burrow.tasks.record import TaskEvent

log = structlog.get_logger("burrow.api.stream")

router = APIRouter(prefix=PREFIX, tags=["dashboard"])

POLL_SECONDS = 1.0
STATS_SECONDS = 2.0
HEARTBEAT_SECONDS = 15.0
HISTORY_POINTS = 150  # five minutes of STATS_SECONDS points
HISTORY_SECONDS = int(HISTORY_POINTS * STATS_SECONDS)
COUNT_SAMPLE = 1000  # statuses counted over the newest this many tasks
CLIENT_BUFFER = 2000  # events queued for one client before it must resync
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_ERRORS = (BurrowError, TimeoutError, OSError)
#: Put in a client's queue to end its stream (the server is shutting down).
_END = b""


def sse(event: str, data: Any) -> bytes:
    """One server-sent event (``data`` as one line of JSON)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class StreamHub:
    """Shared state and loops behind every open stream of one API process."""

    def __init__(self, burrow: Burrow, timeout: float) -> None:
        self._burrow = burrow
        self._timeout = timeout
        self._feed = TaskFeed(burrow.state)
        self._clients: set[asyncio.Queue[bytes]] = set()
        self._background = Background("stream")
        self._started = False
        self._wake = asyncio.Event()
        self._created = 0
        self._finished: Counter[str] = Counter()
        self._queue_in: Counter[str] = Counter()  # per queue, from the feed's changes
        self._queue_done: Counter[str] = Counter()
        self._queue_failed: Counter[str] = Counter()
        self._last_stats_at = burrow.clock.monotonic()
        self._history: deque[dict[str, float]] = deque(maxlen=HISTORY_POINTS)
        #: The points before the hub started come from Redis, once (``_backfill``).
        self._counters = RateCounters(burrow.state)
        self._opened_at = int(burrow.clock.time())
        self._backfilled = False
        self._backfill_lock = asyncio.Lock()
        self._stats: dict[str, Any] | None = None
        self._failing: set[str] = set()  # loops whose last round failed (logged once)

    def subscribe(self) -> asyncio.Queue[bytes]:
        """A queue of encoded events for one client (starts the loops on first use)."""
        if not self._started:
            self._started = True
            self._background.start(self._tasks_loop(), name="tasks")
            self._background.start(self._terminal_loop(), name="terminal")
            self._background.start(self._stats_loop(), name="stats")
        queue: asyncio.Queue[bytes] = asyncio.Queue(CLIENT_BUFFER)
        self._clients.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes]) -> None:
        self._clients.discard(queue)

    def end_streams(self) -> None:
        """End every open stream now (the server is shutting down): an endless response
        would otherwise hold the shutdown for uvicorn's whole grace period and then be
        cancelled with an error. Browsers reconnect to whichever server comes back."""
        for queue in list(self._clients):
            while True:
                try:
                    queue.put_nowait(_END)
                    break
                except asyncio.QueueFull:
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()  # a lagging client loses an event, not the end

    async def hello(self) -> bytes:
        """The ``hello`` event: the rate history (see ``_backfill``) and the latest stats."""
        await self._backfill()
        return sse("hello", {"history": list(self._history), "stats": self._stats})

    async def _backfill(self) -> None:
        """Put the rates of the ``HISTORY_SECONDS`` before the hub started in front of its
        own points, read once from Redis; while Redis fails, each new stream tries again
        (and gets what the hub has)."""
        if self._backfilled:
            return
        async with self._backfill_lock:
            if self._backfilled:
                return
            try:
                async with asyncio.timeout(self._timeout):
                    await self._burrow.state.open()
                    past = await self._counters.history(
                        end=self._opened_at, seconds=HISTORY_SECONDS, step=int(STATS_SECONDS)
                    )
            except _ERRORS as exc:
                self._trouble("history", exc)
                return
            self._trouble("history", None)
            self._history = deque([*past, *self._history], maxlen=HISTORY_POINTS)
            self._backfilled = True

    async def aclose(self) -> None:
        await self._background.aclose()

    def _broadcast(self, message: bytes) -> None:
        for queue in self._clients:
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                # Too slow: drop what it has not read and tell it to reload instead.
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(sse("resync", {}))

    def _trouble(self, loop: str, exc: BaseException | None) -> None:
        """Log a loop's failure once, and its recovery."""
        if exc is None:
            if loop in self._failing:
                self._failing.discard(loop)
                log.info("live stream source is back", source=loop)
        elif loop not in self._failing:
            self._failing.add(loop)
            expected = isinstance(exc, _ERRORS)
            log.warning(
                "live stream source failing; retrying",
                source=loop,
                error=str(exc),
                exc_info=None if expected else exc,  # a bug: show where
            )

    async def _tasks_loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._timeout * 2):
                    await self._burrow.state.open()
                    tick = await self._feed.poll()
                self._created += tick.created
                self._queue_in.update(tick.created_by_queue)
                for change in tick.changes:
                    if change.terminal:
                        self._queue_done[change.queue] += 1
                        if change.status == "failed":
                            self._queue_failed[change.queue] += 1
                    self._broadcast(sse("task", change.as_dict()))
                self._trouble("tasks", None)
            except Exception as exc:  # a failed round must not end live updates
                self._trouble("tasks", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()
                await asyncio.sleep(0.1)  # gather a burst of notifications into one poll
            self._wake.clear()

    async def _terminal_loop(self) -> None:
        while True:
            try:
                await self._burrow.state.open()
                async for task_id, status in self._feed.terminal():
                    self._feed.touch(task_id)
                    self._finished[status] += 1
                    self._wake.set()
            except Exception as exc:
                self._trouble("terminal", exc)
                await asyncio.sleep(STATS_SECONDS)

    async def _stats_loop(self) -> None:
        while True:
            stats = await self._read_stats()
            self._stats = stats
            self._broadcast(sse("stats", stats))
            await asyncio.sleep(STATS_SECONDS)

    def _rates(self, queues: list[dict[str, Any]]) -> dict[str, float]:
        """Rates per second since the previous call, overall (appended to the history)
        and per queue (written into ``queues``); the counters start again."""
        clock = self._burrow.clock
        now = clock.monotonic()
        elapsed = max(now - self._last_stats_at, 1e-3)
        point = {"t": round(clock.time(), 3), "submitted": self._created / elapsed}
        for status in ("succeeded", "failed", "cancelled"):
            point[status] = self._finished[status] / elapsed
        for queue in queues:
            name = queue["name"]
            queue["in_rate"] = self._queue_in[name] / elapsed
            queue["done_rate"] = self._queue_done[name] / elapsed
            queue["failed_rate"] = self._queue_failed[name] / elapsed
        self._last_stats_at, self._created, self._finished = now, 0, Counter()
        self._queue_in, self._queue_done, self._queue_failed = Counter(), Counter(), Counter()
        self._history.append(point)
        return point

    async def _read_stats(self) -> dict[str, Any]:
        app = self._burrow
        queues: list[dict[str, Any]] = []
        broker_ok = redis_ok = True
        try:
            async with asyncio.timeout(self._timeout * 2):
                for queue in app.all_queues():
                    work, dead = await app.queue_stats(queue)
                    queues.append(
                        {
                            "name": queue,
                            "depth": work.messages if work else None,
                            "consumers": work.consumers if work else None,
                            "dead_letters": dead.messages if dead else None,
                        }
                    )
            self._trouble("queues", None)
        except _ERRORS as exc:
            broker_ok = False
            self._trouble("queues", exc)
        counts: dict[str, int] = {}
        try:
            async with asyncio.timeout(self._timeout):
                await app.state.open()
                counts = await self._feed.status_counts(COUNT_SAMPLE)
        except _ERRORS:
            redis_ok = False
        return {
            "queues": queues,
            "counts": counts,
            "sample": COUNT_SAMPLE,
            "rates": self._rates(queues),
            "broker": broker_ok,
            "redis": redis_ok,
        }


def hub_of(api: FastAPI, state: ApiState) -> StreamHub:
    """The app's hub, made on first use."""
    hub: StreamHub | None = getattr(api.state, "burrow_stream", None)
    if hub is None:
        hub = StreamHub(state.burrow, state.timeout)
        api.state.burrow_stream = hub
    return hub


def end_streams_on_exit_signals(api: FastAPI) -> Callable[[], None]:
    """Chain SIGINT and SIGTERM so that, before the handler already installed (uvicorn's)
    runs, the app's open streams end. Returns the function that restores the handlers.
    A no-op outside the main thread, where signal handlers cannot be set."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(sig: int, frame: FrameType | None) -> None:
        hub: StreamHub | None = getattr(api.state, "burrow_stream", None)
        if hub is not None:
            loop.call_soon_threadsafe(hub.end_streams)
        before = previous.get(sig)
        if callable(before):
            before(sig, frame)
        elif before == signal.SIG_DFL:
            signal.signal(sig, before)
            signal.raise_signal(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, before in previous.items():
            if signal.getsignal(sig) is handler and before is not None:
                signal.signal(sig, before)

    return restore


async def close_hub(api: FastAPI) -> None:
    """Stop the hub's loops (the app's lifespan calls this at shutdown)."""
    hub: StreamHub | None = getattr(api.state, "burrow_stream", None)
    if hub is not None:
        await hub.aclose()


async def _events(request: Request, hub: StreamHub) -> AsyncIterator[bytes]:
    queue = hub.subscribe()
    try:
        yield b"retry: 2000\n\n" + await hub.hello()
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT_SECONDS):
                    message = await queue.get()
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": keep-alive\n\n"
                continue
            if message is _END:
                return
            yield message
    finally:
        hub.unsubscribe(queue)


@router.get(
    "/events/stream",
    # Left out of /openapi.json: the answer never ends, which schema-driven clients and
    # fuzzers cannot handle (they wait for a body). Documented in docs/api.md.
    include_in_schema=False,
)
async def event_stream(request: Request, state: ApiState = State, _who: str = Read) -> Response:
    """Events: ``hello`` (rate history and the latest stats), ``task`` (a task was created
    or changed status: id, name, queue, status, attempts, timestamps, worker), ``stats``
    (queues, status counts of the newest tasks, rates per second) every 2 s, and
    ``resync`` (events were dropped: reload). Comment lines keep the connection open."""
    hub = hub_of(request.app, state)
    return StreamingResponse(
        _events(request, hub), media_type="text/event-stream", headers=_SSE_HEADERS
    )


@router.get(
    "/tasks/{task_id}/history",
    response_model=Envelope[list[TaskEvent]],
    responses=error_responses(401, 403, 404, 422, 429, 503),
    summary="A task's events, oldest first (its timeline)",
)
async def task_history(task_id: TaskId, state: ApiState = State, _who: str = Read) -> Response:
    app = state.burrow
    async with asyncio.timeout(state.timeout):
        await app.state.open()
        events = await app.history(task_id)
        if not events and await app.state.get(task_id) is None:
            raise TaskNotFound(task_id)
    return ok(events)
