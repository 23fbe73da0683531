"""Prometheus metrics of the API process, on a registry of its own (never the global one,
so two apps in one process, as in tests, never share or clash).

The API counts what it does: submissions (``burrow_tasks_submitted_total{task,queue}``),
events published (``burrow_events_published_total{exchange}``), RPC calls by outcome,
HTTP requests by route template and status, their latency, requests refused by a limit,
publish-confirm latency, and the queue depths (read again on a scrape, at most every
``DEPTH_MAX_AGE`` seconds). Workers serve their own run counters (each process serves
what it counts). The series are declared in ``burrow.metrics.CATALOGUE``.

With ``burrow api --workers N`` the uvicorn processes share a multi-process directory
(``PROMETHEUS_MULTIPROC_DIR``), and a scrape of any of them answers the sum of all.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from starlette.types import Scope

from burrow.errors import BurrowError
from burrow.metrics import CATALOGUE, PublishMetrics, build, scrape_registry

if TYPE_CHECKING:
    from burrow.app import Burrow

#: A scrape reads the queue depths again when they are older than this (seconds).
DEPTH_MAX_AGE = 5.0
#: Bound of one depth refresh (seconds); a slow broker leaves the last values.
DEPTH_TIMEOUT = 2.0


class ApiMetrics:
    """The API's collectors, on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        own = registry or CollectorRegistry(auto_describe=True)
        made = {s.name: build(s, own) for s in CATALOGUE if s.process != "worker"}
        #: What ``/metrics`` answers: ``own``, or in multi-process mode the sum over the
        #: directory of every process of this API.
        self.registry = scrape_registry(own)
        self.submitted = made["burrow_tasks_submitted_total"]
        self.requests = made["burrow_http_requests_total"]
        self.latency = made["burrow_http_request_duration_seconds"]
        self.queue_depth = made["burrow_queue_depth"]
        self.rejected = made["burrow_api_rejected_total"]
        self.events = made["burrow_events_published_total"]
        self.rpc_calls = made["burrow_rpc_calls_total"]
        self.publish = PublishMetrics(
            made["burrow_publish_confirm_seconds"], made["burrow_broker_reconnects_total"]
        )
        self._submitted: dict[tuple[str, str], Any] = {}
        self._depth_read = 0.0
        self._depth_lock = asyncio.Lock()

    def count_submitted(self, task: str, queue: str, n: int) -> None:
        """Add ``n`` to ``burrow_tasks_submitted_total{task,queue}`` (the labelled child is
        looked up once per pair, not per request)."""
        child = self._submitted.get((task, queue))
        if child is None:
            child = self._submitted[task, queue] = self.submitted.labels(task, queue)
        child.inc(n)

    def count_event(self, exchange: str) -> None:
        """Count one event published (only for exchanges that exist: bounded labels)."""
        self.events.labels(exchange).inc()

    def count_rpc(self, name: str, outcome: str) -> None:
        """Count one RPC call that reached a server (replied, error or timeout); calls to
        names no server declared are not counted (the name comes from the URL)."""
        self.rpc_calls.labels(name, outcome).inc()

    async def refresh_depths(self, app: Burrow) -> None:
        """Read every queue's depth again when the last read is older than
        ``DEPTH_MAX_AGE`` (called before a scrape; best effort, bounded)."""
        if time.monotonic() - self._depth_read < DEPTH_MAX_AGE or not app.broker.connected:
            return
        async with self._depth_lock:
            if time.monotonic() - self._depth_read < DEPTH_MAX_AGE:
                return
            self._depth_read = time.monotonic()
            try:
                async with asyncio.timeout(DEPTH_TIMEOUT):
                    for queue in app.all_queues():
                        work = await app.work_queue_stats(queue)
                        if work is not None:
                            self.queue_depth.labels(queue).set(work.messages)
            except (BurrowError, TimeoutError):
                return  # the last values stay; /readyz says what is down


def route_of(scope: Scope) -> str:
    """The matched route's path template (bounded label values), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
