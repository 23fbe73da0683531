"""``burrow up`` and ``burrow api`` as a user runs them: real processes, real servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import cleanup

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.crash_app:app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited early with {proc.returncode}"
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{base} not ready within {timeout} s")


def fired_ok(base: str, *, exclude: str) -> bool:
    """A task other than ``exclude`` (so: a scheduled one) of sleep_ms succeeded."""
    params = {"name": "sleep_ms", "status": "succeeded"}
    items = httpx.get(f"{base}/api/v1/tasks", params=params, timeout=10).json()["data"]["items"]
    return any(item["id"] != exclude for item in items)


def wait_until(check: Callable[[], bool], *, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.3)


@pytest.fixture
def env(namespace: str) -> Iterator[dict[str, str]]:
    yield {
        **os.environ,
        "BURROW_NAMESPACE": namespace,
        "BURROW_GRACE": "5",
        "BURROW_API_KEYS": "",
    }
    import asyncio

    asyncio.run(cleanup(namespace, ["default"]))


def burrow(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "burrow", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_up_serves_api_and_worker_and_stops_everything_on_sigterm(env: dict[str, str]) -> None:
    """`burrow up` prints the docs URL, runs a submitted task to success, and on SIGTERM
    stops the API and the worker and exits 0, leaving no child process behind."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = burrow("up", APP, "--port", str(port), "--log-format", "json", env=env)
    try:
        wait_ready(base, proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # the API, one worker and the scheduler
        assert any("scheduler" in c.cmdline() for c in children)
        r = httpx.post(f"{base}/api/v1/tasks/sleep_ms", json={"payload": {"ms": 10}}, timeout=10)
        assert r.status_code == 202, r.text
        task_id = r.json()["data"]["id"]
        r = httpx.get(f"{base}/api/v1/tasks/{task_id}", params={"wait": 20}, timeout=30)
        assert r.json()["data"]["status"] == "succeeded", r.text
        # The scheduler fires a schedule created over HTTP (every second) to success.
        schedule = {"task": "sleep_ms", "cron": "* * * * * *", "payload": {"ms": 1}}
        r = httpx.post(f"{base}/api/v1/schedules", json=schedule, timeout=10)
        assert r.status_code == 201, r.text
        wait_until(lambda: fired_ok(base, exclude=task_id), what="a scheduled task succeeded")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert code == 0, output
        assert f"{base}/docs" in output
        assert not [c for c in children if c.is_running() and c.status() != "zombie"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_api_refuses_a_public_address_without_keys(env: dict[str, str]) -> None:
    """Without BURROW_API_KEYS, binding anything but loopback is refused with a clear
    error unless --insecure is given."""
    proc = burrow("api", APP, "--host", "0.0.0.0", "--port", str(free_port()), env=env)  # noqa: S104
    code = proc.wait(timeout=30)
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert code != 0
    assert "BURROW_API_KEYS" in output
    assert "--insecure" in output


def test_api_with_an_open_stream_stops_at_once_on_sigterm(env: dict[str, str]) -> None:
    """A dashboard's open event stream ends when `burrow api` gets SIGTERM, so the server
    stops in well under uvicorn's 5 s grace, with no task cancelled at its end."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = burrow("api", APP, "--port", str(port), "--log-format", "json", env=env)
    try:
        wait_ready(base, proc)
        with (
            httpx.Client(base_url=base, timeout=10) as client,
            client.stream("GET", "/api/v1/events/stream") as stream,
        ):
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: hello"
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            remaining = list(lines)  # returns when the server ends the stream
            ended = time.monotonic() - started
            assert proc.wait(timeout=10) == 0
            stopped = time.monotonic() - started
        output = proc.stdout.read().decode() if proc.stdout else ""
        # Ended by the server itself, not cancelled at the end of uvicorn's 5 s grace.
        assert "Cancel" not in output, output
        assert ended < 4.5, (ended, remaining[-3:])
        assert stopped < 4.5, (stopped, output)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
