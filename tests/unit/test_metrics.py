"""burrow.metrics: the catalogue's names and labels, the worker's cached series, and the
multi-process endpoint that adds up its children (real child processes, no broker)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from burrow.metrics import CATALOGUE, MULTIPROC_ENV, SharedEndpoint, WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "observability.md"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_catalogue_names_and_labels_are_bounded() -> None:
    """Prefixed names, counters ending in _total, and no per-task label (no ids)."""
    names = [spec.name for spec in CATALOGUE]
    assert len(names) == len(set(names))
    for spec in CATALOGUE:
        assert spec.name.startswith("burrow_"), spec.name
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
        assert not {"id", "task_id", "message_id", "worker"} & set(spec.labels), spec.name
        assert spec.help


def test_every_series_is_documented() -> None:
    text = DOCS.read_text()
    missing = [spec.name for spec in CATALOGUE if f"`{spec.name}`" not in text]
    assert missing == []


def test_worker_series_are_cached_and_counted() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    series = metrics.series("add", "math")
    assert metrics.series("add", "math") is series
    series.started.inc()
    series.succeeded.inc()
    series.wait.observe(0.02)
    metrics.dead_lettered("add", "math", "rejected")
    metrics.dead_lettered("add", "math", "rejected")
    metrics.rejected("math", "unknown_task")
    metrics.webhook("delivered")
    metrics.rpc("quote", "replied", 0.002)
    metrics.rpc("quote", "replied", 0.004)
    metrics.rpc("quote", "expired", None)
    metrics.publish.confirmed(0.003, False)
    metrics.publish.confirmed(0.01, True)
    metrics.set_depth("math", 7, None)
    s = samples(generate_latest(registry).decode())

    def v(name: str, /, **labels: str) -> float:
        return s[name, tuple(sorted(labels.items()))]

    tq = {"task": "add", "queue": "math"}
    assert v("burrow_tasks_started_total", **tq) == 1
    assert v("burrow_tasks_completed_total", status="succeeded", **tq) == 1
    assert v("burrow_tasks_completed_total", status="failed", **tq) == 2
    assert v("burrow_tasks_dead_lettered_total", reason="rejected", **tq) == 2
    assert v("burrow_task_queue_wait_seconds_count", **tq) == 1
    assert v("burrow_messages_rejected_total", queue="math", reason="unknown_task") == 1
    assert v("burrow_webhook_deliveries_total", outcome="delivered") == 1
    assert v("burrow_rpc_requests_total", name="quote", outcome="replied") == 2
    assert v("burrow_rpc_requests_total", name="quote", outcome="expired") == 1
    assert v("burrow_rpc_duration_seconds_count", name="quote") == 2  # only requests that ran
    assert v("burrow_publish_confirm_seconds_count", mode="single") == 1
    assert v("burrow_publish_confirm_seconds_count", mode="batch") == 1
    assert v("burrow_queue_depth", queue="math") == 7
    assert ("burrow_dead_letters", (("queue", "math"),)) not in s  # not read: not set


CHILD = """
import sys, time
from burrow.metrics import WorkerMetrics
m = WorkerMetrics()
m.series("add", "math").started.inc(int(sys.argv[1]))
m.in_flight.set(int(sys.argv[1]))
print("ready", flush=True)
time.sleep(60 if sys.argv[2] == "stay" else 0)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_shared_endpoint_adds_up_its_children() -> None:
    """Two processes write to the directory; the endpoint answers their sum; a dead
    child's in-flight gauge drops out while its counts stay."""
    endpoint = SharedEndpoint("127.0.0.1", free_port())
    url = f"http://127.0.0.1:{endpoint.server.port}/metrics"
    env = {**os.environ, **endpoint.env}
    procs = []
    try:
        for n, mode in ((2, "exit"), (3, "stay")):
            proc = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(n), mode],
                env=env,
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
            procs.append(proc)
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
        procs[0].wait(timeout=30)
        s = samples(httpx.get(url, timeout=5).text)
        tq = (("queue", "math"), ("task", "add"))
        assert s["burrow_tasks_started_total", tq] == 5
        assert s["burrow_tasks_in_flight", ()] == 5
        endpoint.process_exited(procs[0].pid)
        s = samples(httpx.get(url, timeout=5).text)
        assert s["burrow_tasks_started_total", tq] == 5
        assert s["burrow_tasks_in_flight", ()] == 3
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
        endpoint.close()
    assert not Path(endpoint.path).exists()
    assert MULTIPROC_ENV not in os.environ
