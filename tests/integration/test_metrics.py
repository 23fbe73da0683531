"""Prometheus metrics from real processes: ``burrow api --workers 2`` and ``burrow worker
--metrics-port`` (one process, and ``--processes 2`` behind one endpoint), scraped over
HTTP while tasks succeed, fail to the dead-letter queue and retry."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from burrow import Burrow, Unroutable
from burrow.api import create_app
from burrow.errors import BurrowError
from tests.conftest import eventually
from tests.integration.metrics_app import QUEUE, register

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.metrics_app:app"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Procs:
    """Subprocesses of one test, each in its own process group, logs in ``tmp``."""

    def __init__(self, namespace: str, tmp: Path) -> None:
        self.env = {
            **os.environ,
            "BURROW_NAMESPACE": namespace,
            "BURROW_API_KEYS": "",
            "BURROW_GRACE": "3",
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"proc-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "burrow", *args, "--log-format", "json"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def output(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.tmp.glob("proc-*.log"))
        )

    def stop_all(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@pytest.fixture
def procs(namespace: str, tmp_path: Path) -> Iterator[Procs]:
    running = Procs(namespace, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
async def producer(make_app: Callable[..., Burrow]) -> AsyncIterator[Burrow]:
    app = register(make_app())
    yield app
    await app.close()


async def scrape(client: httpx.AsyncClient, url: str) -> Samples:
    """Every sample of ``url``'s Prometheus text, by (name, sorted labels)."""
    response = await client.get(url, timeout=5)
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, /, **labels: str) -> float:
    """The sample ``name{labels}`` (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, /, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


async def reachable(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url, timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False


async def test_api_and_worker_metrics_count_a_run_of_tasks(procs: Procs, producer: Burrow) -> None:
    """Five tasks succeed, one is dead-lettered, one retries once then succeeds: the
    worker's counters, histograms and gauges and the API's counters (summed over its two
    uvicorn processes) say exactly that."""
    api_port, metrics_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    worker_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    procs.start("api", APP, "--port", str(api_port), "--workers", "2")
    procs.start("worker", APP, "--concurrency", "4", "--metrics-port", str(metrics_port))
    async with httpx.AsyncClient() as client:
        await eventually(
            lambda: reachable(client, api + "/readyz"), timeout=60, what="API", pool=procs
        )
        await eventually(
            lambda: reachable(client, worker_metrics), timeout=60, what="worker", pool=procs
        )
        before = await scrape(client, worker_metrics)
        assert value(before, "burrow_tasks_in_flight") == 0
        assert total(before, "burrow_tasks_started_total") == 0

        ids = []
        for body, name in [({"ms": 30}, "nap")] * 5 + [({}, "boom"), ({}, "flaky")]:
            response = await client.post(
                f"{api}/api/v1/tasks/{name}", json={"payload": body}, timeout=10
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["data"]["id"])
        records = [await producer.wait(i, timeout=60) for i in ids]
        assert [r.status.value for r in records] == ["succeeded"] * 5 + ["failed", "succeeded"]

        async def worker_counted() -> Samples | None:
            s = await scrape(client, worker_metrics)
            done = total(s, "burrow_tasks_completed_total") == 7
            return s if done and value(s, "burrow_tasks_in_flight") == 0 else None

        w = await eventually(worker_counted, timeout=30, what="worker counts", pool=procs)
        tq = {"queue": QUEUE}
        assert value(w, "burrow_tasks_started_total", task="nap", **tq) == 5
        assert value(w, "burrow_tasks_completed_total", task="nap", status="succeeded", **tq) == 5
        assert value(w, "burrow_tasks_completed_total", task="boom", status="failed", **tq) == 1
        assert value(w, "burrow_tasks_dead_lettered_total", task="boom", reason="rejected", **tq)
        assert value(w, "burrow_task_retries_total", task="flaky", **tq) == 1
        assert value(w, "burrow_tasks_started_total", task="flaky", **tq) == 2
        assert value(w, "burrow_tasks_completed_total", task="flaky", status="succeeded", **tq) == 1
        assert total(w, "burrow_tasks_completed_total", status="failed") == 1
        # Histograms: one observation per run, the naps' run time about their sleep (5 x
        # 30 ms; the loop's timers have millisecond resolution and may fire a little early).
        assert value(w, "burrow_task_duration_seconds_count", task="nap", **tq) == 5
        assert value(w, "burrow_task_duration_seconds_sum", task="nap", **tq) >= 0.14
        assert value(w, "burrow_task_duration_seconds_count", task="flaky", **tq) == 2
        assert value(w, "burrow_task_queue_wait_seconds_count", task="nap", **tq) == 5
        assert value(w, "burrow_task_queue_wait_seconds_bucket", task="nap", le="+Inf", **tq) == 5
        # The worker published the retry copy and the dead letter, each confirmed.
        assert value(w, "burrow_publish_confirm_seconds_count", mode="single") >= 2

        depth = await eventually(
            lambda: _depth(client, worker_metrics), timeout=30, what="depth", pool=procs
        )
        assert depth == [0.0, 1.0]  # nothing ready; one dead letter
        # The subscriber's queue is sampled too: its dead letters are where failed events go.
        subscriber = producer.handlers.subscriber("metered_audit")
        assert subscriber is not None
        labels = (("queue", subscriber.queue),)

        async def subscriber_sampled() -> list[float | None] | None:
            s = await scrape(client, worker_metrics)
            found = [
                s.get((name, labels)) for name in ("burrow_queue_depth", "burrow_dead_letters")
            ]
            return found if None not in found else None

        sampled = await eventually(subscriber_sampled, timeout=30, what="subscriber", pool=procs)
        assert sampled == [0.0, 0.0]

        # Any scrape of the API answers the sum over its two processes.
        for _ in range(4):
            a = await scrape(client, f"{api}/metrics")
            assert value(a, "burrow_tasks_submitted_total", task="nap", **tq) == 5
            assert value(a, "burrow_tasks_submitted_total", task="boom", **tq) == 1
            assert value(a, "burrow_tasks_submitted_total", task="flaky", **tq) == 1
            assert total(a, "burrow_http_requests_total", method="POST", status="202") == 7
            assert total(a, "burrow_publish_confirm_seconds_count") >= 7
            assert value(a, "burrow_queue_depth", queue=QUEUE) == 0


async def _depth(client: httpx.AsyncClient, url: str) -> list[float] | None:
    s = await scrape(client, url)
    found = [
        s.get(("burrow_queue_depth", (("queue", QUEUE),))),
        value(s, "burrow_dead_letters", queue=QUEUE),
    ]
    return None if found[0] is None or found[1] != 1 else [float(found[0]), found[1]]


async def test_worker_processes_share_one_endpoint(procs: Procs, producer: Burrow) -> None:
    """``--processes 2 --metrics-port P``: one endpoint, the sum over both children."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    procs.start(
        "worker", APP, "--processes", "2", "--concurrency", "2", "--metrics-port", str(port)
    )

    async def consumers() -> bool:
        try:
            work, _ = await producer.queue_stats(QUEUE)
        except BurrowError:  # not connected or declared yet
            return False
        return work is not None and work.consumers == 2

    await eventually(consumers, timeout=60, what="two consuming children", pool=procs)
    ids = [(await producer.submit("nap", {"ms": 60})).id for _ in range(24)]
    records = [await producer.wait(i, timeout=60) for i in ids]
    assert {r.status.value for r in records} == {"succeeded"}
    assert len({r.worker for r in records}) == 2, "both children ran tasks"

    async with httpx.AsyncClient() as client:

        async def summed() -> Samples | None:
            s = await scrape(client, url)
            done = value(
                s, "burrow_tasks_completed_total", task="nap", queue=QUEUE, status="succeeded"
            )
            return s if done == 24 and value(s, "burrow_tasks_in_flight") == 0 else None

        s = await eventually(summed, timeout=30, what="summed counts", pool=procs)
    assert value(s, "burrow_tasks_started_total", task="nap", queue=QUEUE) == 24
    assert value(s, "burrow_task_duration_seconds_count", task="nap", queue=QUEUE) == 24


async def test_worker_counts_rpc_requests_and_the_api_counts_calls_and_events(
    procs: Procs, producer: Burrow
) -> None:
    """Four RPC calls reach a worker (three replied, one raising), two of them through the
    API, and one event is published through the API to a subscriber the worker runs: the
    worker's RPC and subscriber series and the API's call and event counters say exactly
    that (a subscriber's runs are counted like a task's, under its name)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    procs.start("worker", APP, "--concurrency", "2", "--metrics-port", str(port))

    async def served() -> bool:
        try:
            return await producer.call("metered_square", {"ms": 3}, timeout=10) == 9
        except Unroutable:  # the worker has not declared its request queue yet
            return False

    await eventually(served, timeout=60, what="the worker serving RPC", pool=procs)
    assert await producer.call("metered_square", {"ms": 4}, timeout=10) == 16
    api = create_app(producer)
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            ok = await client.post("/api/v1/rpc/metered_square", json={"payload": {"ms": 5}})
            assert ok.status_code == 200, ok.text
            assert ok.json()["data"] == 25
            failed = await client.post("/api/v1/rpc/metered_fail", json={"payload": {"ms": 1}})
            assert failed.status_code == 502, failed.text
            published = await client.post(
                "/api/v1/events/metered_events", json={"payload": {"n": 1}}
            )
            assert published.status_code == 202, published.text
            a = await scrape(client, "http://test/metrics")
    assert value(a, "burrow_rpc_calls_total", name="metered_square", outcome="replied") == 1
    assert value(a, "burrow_rpc_calls_total", name="metered_fail", outcome="error") == 1
    assert value(a, "burrow_events_published_total", exchange="metered_events") == 1

    async with httpx.AsyncClient() as client:

        async def counted() -> Samples | None:
            s = await scrape(client, url)
            rpc_done = total(s, "burrow_rpc_requests_total") == 4
            event_done = total(s, "burrow_tasks_completed_total", task="metered_audit") == 1
            return s if rpc_done and event_done else None

        w = await eventually(counted, timeout=30, what="the worker's counts", pool=procs)
    sub = {"task": "metered_audit"}
    assert total(w, "burrow_tasks_started_total", **sub) == 1
    assert total(w, "burrow_tasks_completed_total", status="succeeded", **sub) == 1
    assert total(w, "burrow_task_duration_seconds_count", **sub) == 1
    assert value(w, "burrow_rpc_requests_total", name="metered_square", outcome="replied") == 3
    assert value(w, "burrow_rpc_requests_total", name="metered_fail", outcome="error") == 1
    assert value(w, "burrow_rpc_duration_seconds_count", name="metered_square") == 3
    assert value(w, "burrow_rpc_duration_seconds_count", name="metered_fail") == 1
    assert value(w, "burrow_rpc_duration_seconds_bucket", name="metered_square", le="+Inf") == 3
