"""``burrow worker``: run worker processes."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from burrow._gc import settle_heap
from burrow.app import Burrow
from burrow.cli._async import err, run
from burrow.cli.loader import load_app
from burrow.errors import ConfigurationError
from burrow.observability import configure_logging
from burrow.worker.runtime import Worker
from burrow.worker.supervisor import supervise


def worker(
    app: Annotated[str, typer.Argument(help="The app, as module:attribute.")],
    queues: Annotated[
        str | None,
        typer.Option(help="Comma-separated task queues (default: every task's queue)."),
    ] = None,
    subscribers: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated event subscribers to run, by name (default: all of the "
            "app's; '' for none)."
        ),
    ] = None,
    rpc: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated RPC handlers to run, by name (default: all of the app's; "
            "'' for none)."
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Messages run at once per queue (also the prefetch).")
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
    """Consume and run tasks, event subscribers and RPC handlers until SIGTERM or Ctrl-C,
    then shut down gracefully."""
    configure_logging(log_format)
    burrow_app = load_app(app)
    sub_names = _names(subscribers)
    rpc_names = _names(rpc)
    _check_names(
        "--subscribers",
        "subscriber",
        sub_names,
        [s.name for s in burrow_app.handlers.subscribers()],
    )
    _check_names(
        "--rpc", "RPC handler", rpc_names, [d.name for d in burrow_app.handlers.rpc_handlers()]
    )
    if processes > 1:
        args = [app, "--log-format", log_format]
        if queues:
            args += ["--queues", queues]
        if subscribers is not None:
            args += ["--subscribers", subscribers]
        if rpc is not None:
            args += ["--rpc", rpc]
        if concurrency:
            args += ["--concurrency", str(concurrency)]
        if grace is not None:
            args += ["--grace", str(grace)]
        raise typer.Exit(run(supervise(args, processes)))
    runtime = _build(burrow_app, queues, sub_names, rpc_names, concurrency, grace)
    run(_serve(runtime))


def _names(option: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when the option was not given)."""
    if option is None:
        return None
    return [n.strip() for n in option.split(",") if n.strip()]


def _check_names(option: str, kind: str, names: list[str] | None, known: list[str]) -> None:
    """Refuse names the app does not have, listing the ones it has."""
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        have = ", ".join(sorted(known)) if known else "none"
        plural = "s" if len(unknown) > 1 else ""
        raise typer.BadParameter(
            f"unknown {kind}{plural} {', '.join(map(repr, unknown))} (the app has: {have})",
            param_hint=f"'{option}'",
        )


def _build(
    app: Burrow,
    queues: str | None,
    subscribers: list[str] | None,
    rpc: list[str] | None,
    concurrency: int | None,
    grace: float | None,
) -> Worker:
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    try:
        return Worker(
            app,
            queues=queue_list,
            concurrency=concurrency,
            grace=grace,
            subscribers=subscribers,
            rpc=rpc,
        )
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


async def _serve(runtime: Worker) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    settle_heap()
    try:
        await runtime.run(stop)
    finally:
        await runtime.app.close()
