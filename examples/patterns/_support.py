"""What every example needs and none is about: its namespace, quiet logs, workers in the
same process, waiting until they are idle, a routing report, and cleaning up on exit.

Read an example first; come here when you wonder how it runs its workers. In production a
worker is its own process (``burrow worker module:app``); an example starts ``Worker``s in
its own event loop so that one command shows both sides.

Every example deletes what it declared when it ends: its queues and their dead-letter
queues, its exchanges, the delay queues, and the Redis keys of its namespace. So it runs on
``BURROW_NAMESPACE`` when that is set (the tests give each run its own) and otherwise on
``examples.<name>``; never point it at a namespace that holds anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

import redis.asyncio as aioredis
from rich.console import Console

from burrow import Burrow
from burrow.broker.topology import TIERS_MS
from burrow.observability import configure_logging
from burrow.worker.runtime import Worker

#: Where the examples print (no colours when the output is not a terminal, no wrapping).
console = Console(highlight=False, soft_wrap=True)


def make_app(example: str) -> Burrow:
    """A ``Burrow`` app on ``BURROW_NAMESPACE``, or on ``examples.<example>``."""
    configure_logging("console", level=logging.WARNING)  # burrow's own logs: problems only
    namespace = os.environ.get("BURROW_NAMESPACE") or f"examples.{example}"
    return Burrow(namespace=namespace)


@contextlib.asynccontextmanager
async def running(*apps: Burrow, concurrency: int | None = None) -> AsyncIterator[list[Worker]]:
    """Run one worker per app in this event loop; when the block ends, stop them (each
    finishes what it is running), close the apps and delete what they declared."""
    if not apps[0].names.namespace:
        raise SystemExit("the examples delete their namespace at the end: set one")
    stop = asyncio.Event()
    workers = [Worker(app, concurrency=concurrency) for app in apps]
    runs = [asyncio.create_task(worker.run(stop)) for worker in workers]
    outcomes: list[BaseException | None] = []
    try:
        deadline = time.monotonic() + 20
        # Ready: every queue declared and bound, every consumer attached.
        while not all(w.ready.is_set() for w in workers):
            crashed = [run for run in runs if run.done()]
            if crashed:
                crashed[0].result()  # raises the worker's error
            if time.monotonic() > deadline:
                raise TimeoutError("the workers did not start within 20 s")
            await asyncio.sleep(0.02)
        yield workers
    finally:
        stop.set()
        outcomes = await asyncio.gather(*runs, return_exceptions=True)
        for app in apps:
            await app.close()
        await delete_everything(apps)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def until_quiet(workers: Sequence[Worker], *, idle: float = 0.3, timeout: float = 10) -> None:
    """Wait until the workers run nothing and have received nothing new for ``idle``
    seconds (a demo's way to know that every message that will arrive has arrived)."""
    deadline = time.monotonic() + timeout
    last: list[tuple[int, int]] = []
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        now = [(s.received, s.in_flight) for s in (w.statistics() for w in workers)]
        if now != last or any(in_flight for _, in_flight in now):
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= idle:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"the workers were still busy after {timeout} s")


def show_routes(published: Iterable[str], got: Mapping[str, Sequence[str]]) -> None:
    """One line per published message: ``message → the subscribers that got it``.

    ``got`` maps each subscriber to the messages it received; one that received a message
    twice shows as ``name (2 times)`` (it never should).
    """
    for message in published:
        who = [
            name if n == 1 else f"{name} ({n} times)"
            for name, messages in sorted(got.items())
            if (n := list(messages).count(message))
        ]
        receivers = ", ".join(who) if who else "[dim]nobody: no binding matches, dropped[/]"
        console.print(f"  {message:<26} → {receivers}")


async def delete_everything(apps: Sequence[Burrow]) -> None:
    """Delete the queues (with their dead-letter queues), exchanges, delay queues and Redis
    keys of the apps' namespace."""
    names, settings = apps[0].names, apps[0].settings
    queues = {q for app in apps for q in app.registry.queues()}
    queues |= {s.queue for app in apps for s in app.handlers.subscribers()}
    admin = Burrow(settings=settings)
    try:
        broker = admin.broker
        await broker.connect(timeout=10)
        for queue in sorted(queues):
            await broker.delete_queue(names.queue(queue))
            await broker.delete_queue(names.dlq(queue))
        for rpc in {d.name for app in apps for d in app.handlers.rpc_handlers()}:
            await broker.delete_queue(names.rpc_queue(rpc))
        for exchange in {e for app in apps for e in app.handlers.exchanges()}:
            await broker.delete_exchange(names.exchange(exchange))
        for tier in TIERS_MS:
            await broker.delete_queue(names.delay_queue(tier))
        await broker.delete_exchange(names.delay_exchange)
    finally:
        await admin.close()
    redis = aioredis.Redis.from_url(settings.redis.url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{names.namespace}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()
