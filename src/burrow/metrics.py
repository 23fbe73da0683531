"""Prometheus metrics of burrow's processes: the catalogue of every series, the collectors of
a worker process, and prometheus-client's multi-process mode.

Every series burrow exports is declared once in ``CATALOGUE`` (name, type, labels, help),
so the docs, the Grafana dashboard and the tests check against one list. Label values are
bounded: task names, queue names, outcomes and reasons, never task ids.

Collectors live on a registry passed in (or one of their own), never the global one, so
two apps in one process (as in tests) never share series.

**Multi-process mode.** When ``PROMETHEUS_MULTIPROC_DIR`` is set (prometheus-client reads it
when it is first imported), every process writes its values to files in that directory,
and one scrape adds them up (``exposition``). ``burrow worker --processes N`` and
``burrow up`` give their worker children a fresh directory and serve the sum on one port
(``SharedEndpoint``); ``burrow api --workers N`` does the same for its uvicorn processes.

The hot path stays cheap: labelled children are looked up once per (task, queue) and
kept (``TaskSeries``); the in-flight and queue-depth gauges are sampled by the worker's
metrics loop, not updated per task.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

#: prometheus-client's switch to multi-process mode (read at its import).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DURATION_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
WAIT_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    1800.0,
)  # fmt: skip
CONFIRM_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
)  # fmt: skip
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)
RPC_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)  # fmt: skip

Kind = Literal["counter", "gauge", "histogram"]
Process = Literal["api", "worker", "both"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported series family.

    ``name`` is the name Prometheus sees (counters end in ``_total``); ``process`` says who
    exports it; ``mode`` is how a gauge adds up over processes in multi-process mode.
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    process: Process = "worker"
    buckets: tuple[float, ...] = ()
    mode: Literal["livesum", "mostrecent"] = "mostrecent"


TQ = ("task", "queue")

CATALOGUE: tuple[MetricSpec, ...] = (
    # -- the API --------------------------------------------------------------------------
    MetricSpec(
        "burrow_tasks_submitted_total",
        "counter",
        "Tasks accepted (broker-confirmed) through the HTTP API.",
        TQ,
        "api",
    ),
    MetricSpec(
        "burrow_http_requests_total",
        "counter",
        "HTTP requests by method, route template and status.",
        ("method", "route", "status"),
        "api",
    ),
    MetricSpec(
        "burrow_http_request_duration_seconds",
        "histogram",
        "HTTP request latency by method and route template.",
        ("method", "route"),
        "api",
        HTTP_BUCKETS,
    ),
    MetricSpec(
        "burrow_events_published_total",
        "counter",
        "Events published (broker-confirmed) through the HTTP API, by exchange.",
        ("exchange",),
        "api",
    ),
    MetricSpec(
        "burrow_rpc_calls_total",
        "counter",
        "RPC calls made through the HTTP API by outcome (replied, error, timeout).",
        ("name", "outcome"),
        "api",
    ),
    MetricSpec(
        "burrow_api_rejected_total",
        "counter",
        "Requests refused by a limit (reason: rate, queue_depth).",
        ("reason",),
        "api",
    ),
    # -- both ------------------------------------------------------------------------------
    MetricSpec(
        "burrow_queue_depth",
        "gauge",
        "Ready messages in a work queue (priority lanes added up), as last read.",
        ("queue",),
        "both",
    ),
    MetricSpec(
        "burrow_publish_confirm_seconds",
        "histogram",
        "Time from a publish to the broker's confirm (mode: single, or batch for one "
        "confirmed batch of a submit_many).",
        ("mode",),
        "both",
        CONFIRM_BUCKETS,
    ),
    MetricSpec(
        "burrow_broker_reconnects_total",
        "counter",
        "Times the broker connection was re-established after a loss.",
        (),
        "both",
    ),
    # -- workers ---------------------------------------------------------------------------
    MetricSpec(
        "burrow_tasks_started_total",
        "counter",
        "Runs started (a retry is a new run).",
        TQ,
    ),
    MetricSpec(
        "burrow_tasks_completed_total",
        "counter",
        "Tasks that reached a terminal state here (status: succeeded, failed).",
        (*TQ, "status"),
    ),
    MetricSpec(
        "burrow_task_retries_total",
        "counter",
        "Failed runs sent back for another run (Retry, an error or a timeout with runs left).",
        TQ,
    ),
    MetricSpec(
        "burrow_tasks_dead_lettered_total",
        "counter",
        "Tasks sent to their dead-letter queue, by reason (error, max_retries, timeout, "
        "rejected, validation_error, result_not_serializable, delivery_limit).",
        (*TQ, "reason"),
    ),
    MetricSpec(
        "burrow_task_duration_seconds",
        "histogram",
        "Handler run time of one run, whatever its outcome.",
        TQ,
        buckets=DURATION_BUCKETS,
    ),
    MetricSpec(
        "burrow_task_queue_wait_seconds",
        "histogram",
        "Time from when a run was due (submitted, or its ETA for delayed tasks and retries) "
        "to its start.",
        TQ,
        buckets=WAIT_BUCKETS,
    ),
    MetricSpec(
        "burrow_tasks_in_flight",
        "gauge",
        "Deliveries being handled by worker processes now (sampled every second).",
        mode="livesum",
    ),
    MetricSpec(
        "burrow_dead_letters",
        "gauge",
        "Messages in a queue's dead-letter queue, as last read.",
        ("queue",),
    ),
    MetricSpec(
        "burrow_messages_rejected_total",
        "counter",
        "Messages dead-lettered without running: foreign or broken messages and unknown "
        "tasks (reason: bad_content_type, no_type, unknown_task, ...).",
        ("queue", "reason"),
    ),
    MetricSpec(
        "burrow_tasks_deduplicated_total",
        "counter",
        "Deliveries of tasks already finished (duplicates, redeliveries), acked unrun.",
    ),
    MetricSpec(
        "burrow_fenced_writes_total",
        "counter",
        "Outcomes refused because the run's lease had passed to another attempt.",
    ),
    MetricSpec(
        "burrow_rpc_requests_total",
        "counter",
        "RPC requests taken by a worker, by outcome (replied, error: an error reply, "
        "expired: the caller's deadline had passed, refused: no valid reply_to, "
        "reply_failed: the reply could not be published).",
        ("name", "outcome"),
    ),
    MetricSpec(
        "burrow_rpc_duration_seconds",
        "histogram",
        "Time from the start of an RPC request's run to its reply sent (requests that ran).",
        ("name",),
        buckets=RPC_BUCKETS,
    ),
    MetricSpec(
        "burrow_webhook_deliveries_total",
        "counter",
        "Webhook delivery attempts by outcome (delivered, retried, failed).",
        ("outcome",),
    ),
)

SPECS: dict[str, MetricSpec] = {spec.name: spec for spec in CATALOGUE}


def multiprocess_dir() -> str | None:
    """The multi-process directory of this process, or None (values kept in memory)."""
    return os.environ.get(MULTIPROC_ENV) or None


def build(spec: MetricSpec, registry: CollectorRegistry | None) -> Any:
    """The collector of ``spec`` on ``registry`` (None: registered nowhere)."""
    name = spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name
    if spec.kind == "counter":
        return Counter(name, spec.help, spec.labels, registry=registry)
    if spec.kind == "histogram":
        return Histogram(name, spec.help, spec.labels, registry=registry, buckets=spec.buckets)
    return Gauge(name, spec.help, spec.labels, registry=registry, multiprocess_mode=spec.mode)


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text of this process's metrics (see ``scrape_registry``)."""
    return generate_latest(scrape_registry(registry))


def scrape_registry(registry: CollectorRegistry) -> CollectorRegistry:
    """What a scrape of this process reads: ``registry``, or in multi-process mode the
    sum over every process writing to the directory."""
    path = multiprocess_dir()
    return registry if path is None else _shared_registry(path)


def _shared_registry(path: str) -> CollectorRegistry:
    shared = CollectorRegistry()
    MultiProcessCollector(shared, path=path)  # type: ignore[no-untyped-call]
    return shared


@dataclass(slots=True)
class TaskSeries:
    """The labelled children of one (task, queue), looked up once."""

    started: Any
    succeeded: Any
    failed: Any
    retried: Any
    duration: Any
    wait: Any
    dead: dict[str, Any] = field(default_factory=dict)


class WorkerMetrics:
    """The collectors of one worker process (``Worker(metrics=...)``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        made = {s.name: build(s, self.registry) for s in CATALOGUE if s.process != "api"}
        self._started = made["burrow_tasks_started_total"]
        self._completed = made["burrow_tasks_completed_total"]
        self._retries = made["burrow_task_retries_total"]
        self._dead = made["burrow_tasks_dead_lettered_total"]
        self._duration = made["burrow_task_duration_seconds"]
        self._wait = made["burrow_task_queue_wait_seconds"]
        self.in_flight = made["burrow_tasks_in_flight"]
        self._depth = made["burrow_queue_depth"]
        self._dead_letters = made["burrow_dead_letters"]
        self._rejected = made["burrow_messages_rejected_total"]
        self.deduplicated = made["burrow_tasks_deduplicated_total"]
        self.fenced = made["burrow_fenced_writes_total"]
        self._webhooks = made["burrow_webhook_deliveries_total"]
        # Labelled children made once per label values (the names are the app's handlers).
        self._rpc_requests = functools.cache(made["burrow_rpc_requests_total"].labels)
        self._rpc_duration = functools.cache(made["burrow_rpc_duration_seconds"].labels)
        self.publish = PublishMetrics(
            made["burrow_publish_confirm_seconds"], made["burrow_broker_reconnects_total"]
        )
        self._series: dict[tuple[str, str], TaskSeries] = {}

    def series(self, task: str, queue: str) -> TaskSeries:
        """The children of (``task``, ``queue``), made on first use."""
        found = self._series.get((task, queue))
        if found is None:
            found = self._series[task, queue] = TaskSeries(
                started=self._started.labels(task, queue),
                succeeded=self._completed.labels(task, queue, "succeeded"),
                failed=self._completed.labels(task, queue, "failed"),
                retried=self._retries.labels(task, queue),
                duration=self._duration.labels(task, queue),
                wait=self._wait.labels(task, queue),
            )
        return found

    def dead_lettered(self, task: str, queue: str, reason: str) -> None:
        """Count a task that failed for good (``completed{status=failed}`` and its reason)."""
        series = self.series(task, queue)
        series.failed.inc()
        child = series.dead.get(reason)
        if child is None:
            child = series.dead[reason] = self._dead.labels(task, queue, reason)
        child.inc()

    def rejected(self, queue: str, reason: str) -> None:
        """Count a message dead-lettered without running (rare: no cache)."""
        self._rejected.labels(queue, reason).inc()

    def webhook(self, outcome: str) -> None:
        """Count one webhook attempt's outcome: delivered, retried or failed."""
        self._webhooks.labels(outcome).inc()

    def rpc(self, name: str, outcome: str, seconds: float | None) -> None:
        """Count one RPC request's ``outcome``, and its time when it ran (``seconds``)."""
        self._rpc_requests(name, outcome).inc()
        if seconds is not None:
            self._rpc_duration(name).observe(seconds)

    def set_depth(self, queue: str, ready: int | None, dead: int | None) -> None:
        """Record what was just read of ``queue`` (None: the queue does not exist)."""
        if ready is not None:
            self._depth.labels(queue).set(ready)
        if dead is not None:
            self._dead_letters.labels(queue).set(dead)


class PublishMetrics:
    """Publish-confirm latency and reconnects, for the broker's hooks (``AmqpBroker``
    calls ``confirmed`` once per confirmed publish or batch)."""

    def __init__(self, histogram: Any, reconnects: Any) -> None:
        self._single = histogram.labels("single").observe
        self._batch = histogram.labels("batch").observe
        self._reconnects = reconnects

    def confirmed(self, seconds: float, batch: bool) -> None:
        (self._batch if batch else self._single)(seconds)

    def reconnected(self) -> None:
        self._reconnects.inc()


class MetricsServer:
    """prometheus-client's HTTP server for ``registry`` at ``http://host:port/metrics``
    (any path answers), in a daemon thread until ``close``.

    Raises:
        OSError: the port cannot be bound (in use, or not allowed).
    """

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class SharedEndpoint:
    """One endpoint for supervised child processes: they write to a fresh multi-process
    directory (``env`` is what each child needs), this process serves the sum, and
    ``process_exited`` drops a dead child's live gauges (its counters stay in the sum).
    ``close`` stops serving and removes the directory.

    Raises:
        OSError: the port cannot be bound.
    """

    def __init__(self, host: str, port: int) -> None:
        self.path = tempfile.mkdtemp(prefix="burrow-metrics-")
        try:
            self.server = MetricsServer(_shared_registry(self.path), host, port)
        except OSError:
            shutil.rmtree(self.path, ignore_errors=True)
            raise
        self.env = {MULTIPROC_ENV: self.path}

    def process_exited(self, pid: int) -> None:
        mark_process_dead(pid, self.path)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.server.close()
        shutil.rmtree(self.path, ignore_errors=True)


__all__ = [
    "CATALOGUE",
    "MULTIPROC_ENV",
    "SPECS",
    "MetricSpec",
    "MetricsServer",
    "PublishMetrics",
    "SharedEndpoint",
    "TaskSeries",
    "WorkerMetrics",
    "build",
    "exposition",
    "multiprocess_dir",
    "scrape_registry",
]
