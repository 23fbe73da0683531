"""``burrow worker``: run worker processes."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from burrow.cli._async import run
from burrow.cli.loader import load_app
from burrow.observability import configure_logging
from burrow.worker.runtime import Worker
from burrow.worker.supervisor import supervise


def worker(
    app: Annotated[str, typer.Argument(help="The app, as module:attribute.")],
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues (default: every task's queue).")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Tasks run at once per queue (also the prefetch).")
    ] = None,
    processes: Annotated[
        int, typer.Option(min=1, help="Worker processes; >1 supervises N children.")
    ] = 1,
    grace: Annotated[
        float | None, typer.Option(min=0, help="Seconds in-flight tasks get on shutdown.")
    ] = None,
    log_format: Annotated[
        str, typer.Option(help="json, console, or auto (console on a TTY).")
    ] = "auto",
) -> None:
    """Consume and run tasks until SIGTERM or Ctrl-C, then shut down gracefully."""
    configure_logging(log_format)
    burrow_app = load_app(app)
    if processes > 1:
        args = [app, "--log-format", log_format]
        if queues:
            args += ["--queues", queues]
        if concurrency:
            args += ["--concurrency", str(concurrency)]
        if grace is not None:
            args += ["--grace", str(grace)]
        raise typer.Exit(run(supervise(args, processes)))
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    runtime = Worker(burrow_app, queues=queue_list, concurrency=concurrency, grace=grace)
    run(_serve(runtime))


async def _serve(runtime: Worker) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.run(stop)
    finally:
        await runtime.app.close()
