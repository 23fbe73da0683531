"""``burrow worker --subscribers/--rpc``: a worker runs only the handlers it is given, in
one process and under ``--processes N``, and refuses names the app does not have.

The worker subprocesses load the app below (``tests.integration.test_cli_handlers:app``),
which takes its namespace from ``BURROW_NAMESPACE``.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from burrow import Burrow, Exchange, TaskStatus
from tests.conftest import eventually
from tests.integration._procs import WorkerPool, burrow

pytestmark = pytest.mark.integration

APP = "tests.integration.test_cli_handlers:app"
ORDERS = Exchange("orders", "fanout")

app = Burrow()


@app.subscriber(ORDERS, queue="audit")
async def audit(order: dict[str, Any]) -> str:
    return f"audited {order['id']}"


@app.subscriber(ORDERS, queue="mail")
async def mail(order: dict[str, Any]) -> str:
    return f"mailed {order['id']}"


@app.rpc("quote")
async def quote(req: dict[str, Any]) -> dict[str, Any]:
    return {"total": req["qty"] * 2}


@app.rpc("ping")
async def ping(_: dict[str, Any]) -> str:
    return "pong"


@pytest.fixture
def workers(namespace: str, tmp_path: Path) -> Iterator[WorkerPool]:
    """Worker subprocesses on the test namespace; SIGTERMed (so a supervisor stops its
    children), then SIGKILLed with their process groups."""
    pool = WorkerPool(namespace, APP, tmp_path)
    try:
        yield pool
    finally:
        for proc in pool.procs:
            stop(proc)
        pool.kill_all()


def stop(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        return None


def test_unknown_handler_names_are_refused(namespace: str) -> None:
    """An unknown subscriber or RPC name fails at once with exit 2, naming it and the
    handlers the app has, also with --processes (before any child starts)."""
    bad_sub = burrow(namespace, "worker", APP, "--subscribers", "audit, nope")
    assert bad_sub.returncode == 2, bad_sub.stderr
    assert "unknown subscriber 'nope' (the app has: audit, mail)" in bad_sub.stderr
    assert "--subscribers" in bad_sub.stderr
    bad_rpc = burrow(namespace, "worker", APP, "--processes", "2", "--rpc", "quote,nosuch,nix")
    assert bad_rpc.returncode == 2, bad_rpc.stderr
    assert "unknown RPC handlers 'nosuch', 'nix' (the app has: ping, quote)" in bad_rpc.stderr
    assert "process started" not in bad_rpc.stdout + bad_rpc.stderr
    help_text = burrow(namespace, "worker", "--help")
    assert help_text.returncode == 0
    assert "--subscribers" in help_text.stdout
    assert "--rpc" in help_text.stdout


async def test_worker_runs_only_the_selected_handlers(
    make_app: Callable[..., Burrow], workers: WorkerPool
) -> None:
    """``--subscribers audit --rpc ''`` consumes only the audit queue; then
    ``--processes 2 --rpc quote --subscribers ''`` gives quote two consumers and nothing
    else, and a call gets its reply."""
    client = make_app()
    # make_app's cleanup deletes what the app registers: the same handlers as the workers'.
    client.subscriber(ORDERS, queue="audit", name="audit")(audit)
    client.subscriber(ORDERS, queue="mail", name="mail")(mail)
    client.rpc("quote")(quote)
    client.rpc("ping")(ping)
    names = client.names

    async def consumers(queue: str) -> int | None:
        stats = await client.broker.queue_stats(queue)
        return None if stats is None else stats.consumers

    await client.connect(timeout=10)
    one = workers.start("--subscribers", "audit", "--rpc", "")
    await eventually(
        lambda: _equals(consumers(names.queue("audit")), 1),
        timeout=30,
        what="the audit subscriber consumes",
        pool=workers,
    )
    assert await consumers(names.queue("mail")) is None  # never declared
    assert await consumers(names.rpc_queue("quote")) is None
    assert await consumers(names.rpc_queue("ping")) is None
    event_id = await client.publish(ORDERS, "", {"id": 7})
    record = await client.wait(f"{event_id}:audit", timeout=15)
    assert record.status is TaskStatus.SUCCEEDED
    assert record.result == "audited 7"
    assert stop(one) == 0, workers.output()

    workers.start("--processes", "2", "--rpc", "quote", "--subscribers", "")
    await eventually(
        lambda: _equals(consumers(names.rpc_queue("quote")), 2),
        timeout=30,
        what="two processes consume quote",
        pool=workers,
    )
    assert await client.call("quote", {"qty": 4}, timeout=5) == {"total": 8}
    assert await consumers(names.rpc_queue("ping")) is None
    assert await consumers(names.queue("audit")) == 0
    assert await consumers(names.queue("mail")) is None


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)
