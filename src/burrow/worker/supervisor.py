"""Supervised child processes: ``burrow worker --processes N`` and ``burrow up``.

Each child is ``python -m burrow <command> ...`` (a fresh interpreter: no forked event loop
or connection state), started in its own session so a terminal's Ctrl-C reaches only the
supervisor, which then stops the children in order. A child that exits unexpectedly is
restarted after a backoff that grows with its restarts; on SIGTERM/SIGINT every child gets
SIGTERM and runs its own graceful shutdown, and the supervisor waits for all of them.

A child asks the kernel for SIGTERM when its supervisor dies (``follow_supervisor``,
Linux), so a supervisor killed with SIGKILL (or by the OOM killer) leaves no orphaned
workers behind: each one shuts down gracefully instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("burrow.supervisor")

RESTART_BACKOFF_CAP = 10.0
#: In a child's environment: the supervisor's pid (read and removed by ``follow_supervisor``).
SUPERVISOR_PID_ENV = "_BURROW_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def follow_supervisor() -> None:
    """In a supervised child: get SIGTERM when the supervisor dies, and exit at once if it
    is already gone. Does nothing outside a supervisor or off Linux."""
    raw = os.environ.pop(SUPERVISOR_PID_ENV, "")
    if not raw:
        return
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("could not follow the supervisor", errno=ctypes.get_errno())
    if os.getppid() != int(raw):  # it died before the prctl: nobody would stop us
        raise SystemExit("burrow: the supervisor is gone; not starting")


@dataclass(frozen=True, slots=True)
class Child:
    """One supervised process: ``python -m burrow *argv``, called ``name`` in logs, with
    ``env`` added to the environment."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


def worker_children(
    worker_args: list[str], processes: int, env: Mapping[str, str] | None = None
) -> list[Child]:
    """``processes`` single-process workers with ``worker_args`` (and ``env``)."""
    argv = ("worker", *worker_args, "--processes", "1")
    return [Child(f"worker-{i}", argv, dict(env or {})) for i in range(processes)]


async def supervise_children(
    children: list[Child], on_exit: Callable[[int], None] | None = None
) -> int:
    """Run ``children`` until a stop signal; returns 0 when every one stopped cleanly.
    ``on_exit`` is called with the pid of each child process that ended (metrics)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with asyncio.TaskGroup() as tg:
        slots = [tg.create_task(_keep_running(child, stop, on_exit)) for child in children]
    codes = [slot.result() for slot in slots]
    return 0 if all(code == 0 for code in codes) else 1


async def supervise(
    worker_args: list[str],
    processes: int,
    env: Mapping[str, str] | None = None,
    on_exit: Callable[[int], None] | None = None,
) -> int:
    """``burrow worker --processes N``: N supervised worker processes."""
    return await supervise_children(worker_children(worker_args, processes, env), on_exit)


async def _keep_running(
    child: Child, stop: asyncio.Event, on_exit: Callable[[int], None] | None = None
) -> int:
    restarts = 0
    env = {**os.environ, **child.env, SUPERVISOR_PID_ENV: str(os.getpid())}
    while True:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "burrow", *child.argv, start_new_session=True, env=env
        )
        log.info("process started", child=child.name, pid=proc.pid, restarts=restarts)
        waiter = asyncio.ensure_future(proc.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            code = await waiter
            log.info("process stopped", child=child.name, pid=proc.pid, code=code)
            if on_exit is not None:
                on_exit(proc.pid)
            return code
        stopper.cancel()
        if on_exit is not None:
            on_exit(proc.pid)
        restarts += 1
        delay = min(RESTART_BACKOFF_CAP, 0.5 * 2 ** min(restarts - 1, 5))
        log.warning(
            "process died; restarting",
            child=child.name,
            pid=proc.pid,
            code=proc.returncode,
            restarts=restarts,
            delay=delay,
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
        if stop.is_set():
            return 0
