"""Worker subprocesses for the crash, shutdown and scenario tests.

``WorkerPool`` starts ``python -m burrow worker`` processes whose handlers journal their
runs (``tests/integration/_journal.py``) and kills them, with their process groups, at the
end; the helpers below read the journal and wait for tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from burrow import Burrow, TaskRecord
from tests.integration._journal import JOURNAL_VARIABLE

REPO = Path(__file__).resolve().parents[2]
#: Concurrent ``app.wait`` calls at most (each holds a Redis connection while it reads).
WAITERS = 32


#: Worker settings of the fault tests: short leases, a fast reaper and heartbeat, quick
#: retries, and a 10 s grace (``FAULT_GRACE``) for graceful stops.
FAULT_LEASE_TTL = 3
FAULT_GRACE = 10
FAULT_SETTINGS = {
    "lease_ttl": str(FAULT_LEASE_TTL),
    "reaper_interval": "1",
    "grace": str(FAULT_GRACE),
    "worker_heartbeat": "1",
    "retry_base": "0.1",
    "retry_cap": "1",
}


def fault_pool(namespace: str, app: str, tmp: Path) -> Iterator[WorkerPool]:
    """A ``WorkerPool`` with ``FAULT_SETTINGS`` for a fixture: every process it started
    (supervisors' children too) is SIGKILLed afterwards."""
    pool = WorkerPool(namespace, app, tmp, FAULT_SETTINGS)
    try:
        yield pool
    finally:
        pool.kill_all()


def alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie, exited but not reaped, is not alive)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def children_of(pid: int) -> set[int]:
    """The live child processes of ``pid`` (a supervisor's workers)."""
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return set()
    return {c.pid for c in children if alive(c.pid)}


class WorkerPool:
    """Worker subprocesses of one test, running ``app`` (module:attribute) with
    ``settings`` as ``BURROW_*`` variables; each is killed with its process group at exit
    (after a SIGCONT, so a stopped one dies too)."""

    def __init__(
        self, namespace: str, app: str, tmp: Path, settings: dict[str, str] | None = None
    ) -> None:
        self.namespace = namespace
        self.app = app
        self.journal = tmp / "journal.jsonl"
        self.logs = tmp
        self.settings = settings or {}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *extra: str, concurrency: int = 8, **settings: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "BURROW_NAMESPACE": self.namespace,
            JOURNAL_VARIABLE: str(self.journal),
            **{f"BURROW_{k.upper()}": v for k, v in {**self.settings, **settings}.items()},
        }
        argv = ["worker", self.app, "--concurrency", str(concurrency), "--log-format", "json"]
        log = self.logs / f"worker-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "burrow", *argv, *extra],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: children die with it
            )
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            # A supervisor's children run in sessions of their own: note them first, kill
            # the supervisor (so it restarts nobody), then them.
            children: list[psutil.Process] = []
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(proc.pid).children(recursive=True)
            for sig in (signal.SIGCONT, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    def output(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.logs.glob("worker-*.log"))
        )


async def wait_all(
    app: Burrow, ids: list[str], *, timeout: float, pool: WorkerPool | None = None
) -> list[TaskRecord]:
    """The terminal records of ``ids`` (at most ``WAITERS`` waits at once); fails the test
    naming the tasks that did not finish."""
    gate = asyncio.Semaphore(WAITERS)
    done: dict[str, TaskRecord] = {}

    async def one(task_id: str) -> TaskRecord:
        async with gate:
            done[task_id] = await app.wait(task_id, timeout=timeout + 5)
            return done[task_id]

    try:
        async with asyncio.timeout(timeout):
            return list(await asyncio.gather(*(one(i) for i in ids)))
    except TimeoutError:
        lost = [i for i in ids if i not in done]
        logs = f"\n{pool.output()}" if pool else ""
        pytest.fail(f"{len(lost)} tasks not finished within {timeout} s: {lost[:5]}{logs}")


def exit_code_within(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def burrow(namespace: str, *args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    """Run ``python -m burrow *args`` on ``namespace`` in a terminal ``columns`` wide and
    capture its output."""
    env = {**os.environ, "BURROW_NAMESPACE": namespace, "COLUMNS": str(columns)}
    return subprocess.run(
        [sys.executable, "-m", "burrow", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
