"""``--processes N``: start N worker processes, restart any that dies, stop them together.

Each child is ``python -m burrow worker APP ...`` (a fresh interpreter: no forked event
loop or connection state). A child that exits unexpectedly is restarted after a short
backoff; on SIGTERM/SIGINT every child gets SIGTERM and its own graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import structlog

log = structlog.get_logger("burrow.supervisor")

RESTART_BACKOFF_CAP = 10.0


async def supervise(worker_args: list[str], processes: int) -> int:
    """Run ``processes`` children with ``worker_args`` until a stop signal; returns 0 when
    every child stopped cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with asyncio.TaskGroup() as tg:
        slots = [tg.create_task(_keep_running(i, worker_args, stop)) for i in range(processes)]
    codes = [slot.result() for slot in slots]
    return 0 if all(code == 0 for code in codes) else 1


async def _keep_running(slot: int, worker_args: list[str], stop: asyncio.Event) -> int:
    restarts = 0
    while True:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "burrow", "worker", *worker_args, "--processes", "1"
        )
        log.info("worker process started", slot=slot, pid=proc.pid, restarts=restarts)
        waiter = asyncio.ensure_future(proc.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            code = await waiter
            log.info("worker process stopped", slot=slot, pid=proc.pid, code=code)
            return code
        stopper.cancel()
        restarts += 1
        delay = min(RESTART_BACKOFF_CAP, 0.5 * 2 ** min(restarts - 1, 5))
        log.warning(
            "worker process died; restarting",
            slot=slot,
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
