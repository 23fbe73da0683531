"""``burrow worker``: run worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from burrow._gc import settle_heap
from burrow.app import Burrow
from burrow.cli._async import err, run
from burrow.cli.loader import load_app
from burrow.errors import ConfigurationError
from burrow.observability import configure_logging
from burrow.worker.runtime import Worker
from burrow.worker.supervisor import supervise

if TYPE_CHECKING:  # burrow.metrics (prometheus-client) is imported only when used
    from burrow.metrics import WorkerMetrics

#: prometheus-client's multi-process directory (``burrow.metrics.MULTIPROC_ENV``).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=65535,
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (off when not given). "
        "With --processes N the supervisor serves the sum over its children on this one port.",
    ),
]
MetricsHostOpt = Annotated[
    str, typer.Option(help="Address the metrics endpoint binds (with --metrics-port).")
]


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
        int | None,
        typer.Option(
            min=1,
            help="Handlers run at once per queue; the worker holds 4x as many deliveries "
            "(BURROW_PREFETCH).",
        ),
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
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = "127.0.0.1",
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
        if metrics_port is None:
            raise typer.Exit(run(supervise(args, processes)))
        from burrow.metrics import SharedEndpoint

        shared = open_metrics(lambda: SharedEndpoint(metrics_host, metrics_port), metrics_port)
        try:
            code = run(supervise(args, processes, shared.env, shared.process_exited))
        finally:
            shared.close()
        raise typer.Exit(code)
    metrics = worker_metrics(metrics_port is not None)
    runtime = _build(burrow_app, queues, sub_names, rpc_names, concurrency, grace, metrics)
    server = None
    if metrics is not None and metrics_port is not None:
        from burrow.metrics import MetricsServer, scrape_registry

        registry = scrape_registry(metrics.registry)
        server = open_metrics(
            lambda: MetricsServer(registry, metrics_host, metrics_port), metrics_port
        )
    try:
        run(_serve(runtime))
    finally:
        if server is not None:
            server.close()


def worker_metrics(wanted: bool) -> WorkerMetrics | None:
    """The worker's metrics: when asked for (``--metrics-port``), or when a supervisor
    gave this process a multi-process directory to write them to (``burrow.metrics``)."""
    if not wanted and not os.environ.get(MULTIPROC_ENV):
        return None
    from burrow.metrics import WorkerMetrics

    return WorkerMetrics()


_T = TypeVar("_T")


def open_metrics(start: Callable[[], _T], port: int) -> _T:
    """Start a metrics endpoint; a port that cannot be bound ends the command (exit 2)."""
    try:
        return start()
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot serve metrics on port {port}: {exc}")
        raise typer.Exit(2) from None


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
    metrics: WorkerMetrics | None = None,
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
            metrics=metrics,
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
