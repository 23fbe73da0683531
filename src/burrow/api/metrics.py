"""Prometheus metrics of the API process, on a registry of its own (never the global one,
so two apps in one process, as in tests, never share or clash).

The API counts what it does: submissions (``burrow_tasks_submitted_total{task,queue}``),
HTTP requests by route template and status, their latency, and the queue depths it reads for
the depth limit. Workers serve their own run counters (SPEC §6: each process its own series).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import Scope


class ApiMetrics:
    """The API's collectors, on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.submitted = Counter(
            "burrow_tasks_submitted_total",
            "Tasks accepted (broker-confirmed) through the API.",
            ["task", "queue"],
            registry=self.registry,
        )
        self.requests = Counter(
            "burrow_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "burrow_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
        )
        self.queue_depth = Gauge(
            "burrow_queue_depth",
            "Ready messages in a work queue, as last read by the API.",
            ["queue"],
            registry=self.registry,
        )
        self._submitted: dict[tuple[str, str], Any] = {}
        self.rejected = Counter(
            "burrow_api_rejected_total",
            "Requests refused by a limit (reason: rate, queue_depth, body_size).",
            ["reason"],
            registry=self.registry,
        )

    def count_submitted(self, task: str, queue: str, n: int) -> None:
        """Add ``n`` to ``burrow_tasks_submitted_total{task,queue}`` (the labelled child is
        looked up once per pair, not per request)."""
        child = self._submitted.get((task, queue))
        if child is None:
            child = self._submitted[task, queue] = self.submitted.labels(task, queue)
        child.inc(n)


def route_of(scope: Scope) -> str:
    """The matched route's path template (bounded label values), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
