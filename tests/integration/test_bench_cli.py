"""``burrow bench`` against a running worker: it submits N tasks, follows them to the end
and reports rates and latency percentiles; it refuses an unknown task and a bad payload."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from burrow import Burrow
from tests.integration._procs import WorkerPool, burrow

pytestmark = pytest.mark.integration

APP = "bench.noop_app:app"


@pytest.fixture
def worker(namespace: str, tmp_path: Path, make_app: Callable[..., Burrow]) -> Iterator[None]:
    make_app.extra_queues.add("bench")  # type: ignore[attr-defined]
    pool = WorkerPool(namespace, APP, tmp_path)
    pool.start()
    try:
        yield
    finally:
        pool.kill_all()


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("mode", [[], ["--batch", "40"]], ids=["single", "batch"])
def test_bench_submits_follows_and_reports(namespace: str, tmp_path: Path, mode: list[str]) -> None:
    out = tmp_path / "bench.json"
    done = burrow(
        namespace, "bench", APP, "noop", "--n", "200", "--concurrency", "8", *mode,
        "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "200 of 200" in done.stdout
    assert "200 (200 succeeded, 0 failed)" in done.stdout
    result = json.loads(out.read_text())
    assert result["submitted"] == result["finished"] == result["succeeded"] == 200
    assert result["submit_rate"] > 0
    waits = result["queue_wait_ms"]
    assert 0 <= waits["p50"] <= waits["p90"] <= waits["p99"] <= waits["max"]
    assert result["end_to_end_ms"]["p50"] >= waits["p50"]


def test_bench_refuses_unknown_task_and_bad_payload(namespace: str) -> None:
    unknown = burrow(namespace, "bench", APP, "nope", "--n", "1")
    assert unknown.returncode == 2
    assert "unknown task 'nope' (the app has: noop)" in unknown.stderr
    bad = burrow(namespace, "bench", APP, "noop", "--payload", "{oops")
    assert bad.returncode == 2
    assert "--payload is not valid JSON" in bad.stderr


def test_bench_without_workers_reports_unfinished(
    namespace: str, make_app: Callable[..., Burrow]
) -> None:
    """No worker: the submits succeed, following gives up at --timeout, the report says
    how many did not finish, and the exit code is 1."""
    make_app.extra_queues.add("bench")  # type: ignore[attr-defined]
    done = burrow(namespace, "bench", APP, "noop", "--n", "20", "--timeout", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "20 of 20" in done.stdout
    assert "not finished" in done.stdout
