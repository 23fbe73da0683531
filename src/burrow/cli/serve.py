"""``burrow api`` (the HTTP API under uvicorn) and ``burrow up`` (API + workers + scheduler,
supervised).

``burrow api`` serves ``burrow.api.create_app(app)``. uvicorn builds the ASGI app through
``burrow.cli.serve:asgi_app`` in every process it starts (``--workers N``), which reads the
``APP`` target from ``BURROW_APP``.

``burrow up`` is the one-machine command: it starts ``burrow api``, ``burrow worker`` and
``burrow scheduler`` processes under the supervisor (a crashed one is restarted), prints
where the API and its docs are, and stops them all cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from burrow.app import Burrow
from burrow.cli._async import err, run
from burrow.cli.loader import load_app
from burrow.config import Settings
from burrow.errors import BurrowError
from burrow.observability import configure_logging
from burrow.worker.supervisor import Child, supervise_children, worker_children

if TYPE_CHECKING:
    from fastapi import FastAPI

APP_VARIABLE = "BURROW_APP"
console = Console(stderr=True)

AppArg = Annotated[str, typer.Argument(help="The app, as module:attribute.")]
HostOpt = Annotated[
    str, typer.Option(help="Address to bind. Without BURROW_API_KEYS only loopback is allowed.")
]
PortOpt = Annotated[int, typer.Option(min=1, max=65535, help="Port to bind.")]
InsecureOpt = Annotated[
    bool,
    typer.Option(help="Allow binding a non-loopback address without API keys (not advised)."),
]
LogOpt = Annotated[str, typer.Option(help="json, console, or auto (console on a TTY).")]
#: prometheus-client's multi-process directory (``burrow.metrics.MULTIPROC_ENV``).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _check(
    check_bind: Callable[[Settings, str, bool], None], app: Burrow, host: str, insecure: bool
) -> None:
    """Refuse an unsafe bind with the reason, before anything starts."""
    try:
        check_bind(app.settings, host, insecure)
    except BurrowError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def asgi_app() -> FastAPI:
    """uvicorn's factory: the API of the app named by ``BURROW_APP``."""
    from burrow._gc import settle_heap
    from burrow.api import create_app

    target = os.environ.get(APP_VARIABLE)
    if not target:
        raise RuntimeError(f"{APP_VARIABLE} is not set (start the API with `burrow api APP`)")
    api = create_app(load_app(target))
    settle_heap()  # after the imports and routes: see burrow._gc
    return api


def api(
    app: AppArg,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="uvicorn worker processes (they share one metrics directory: /metrics "
            "answers the sum of all).",
        ),
    ] = 1,
    insecure: InsecureOpt = False,
    access_log: Annotated[bool, typer.Option(help="Log every request (off: faster).")] = False,
    log_format: LogOpt = "auto",
) -> None:
    """Serve the HTTP API (/api/v1, /docs, /healthz, /readyz, /metrics) and the dashboard
    (/ui/) until Ctrl-C."""
    import uvicorn

    from burrow.api.security import check_bind

    configure_logging(log_format)
    burrow_app = load_app(app)  # a bad APP fails here, before uvicorn starts
    _check(check_bind, burrow_app, host, insecure)
    os.environ[APP_VARIABLE] = app
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then raises the signal again
    # with our handlers back in place: exit 0 then, as a clean stop should.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    shared = None
    if workers > 1 and not os.environ.get(MULTIPROC_ENV):
        # Several processes behind one port: each writes its metrics to this directory
        # and a scrape of any of them answers the sum (burrow.metrics).
        shared = os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="burrow-api-metrics-")
    try:
        _run_uvicorn(uvicorn, burrow_app.settings, host, port, workers, access_log)
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)


def _run_uvicorn(
    uvicorn: Any, settings: Settings, host: str, port: int, workers: int, access_log: bool
) -> None:
    from burrow.api.app import uvicorn_options

    uvicorn.run(
        "burrow.cli.serve:asgi_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        **uvicorn_options(settings),  # request deadlines and head limits (api/protocol.py)
    )


def _exit_cleanly(_sig: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def up(
    app: AppArg,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    processes: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Tasks run at once per worker and queue.")
    ] = None,
    insecure: InsecureOpt = False,
    log_format: LogOpt = "auto",
    metrics_port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="Port of the workers' Prometheus metrics (the sum over the worker "
            "processes; the API's are at /metrics); 0: off.",
        ),
    ] = 9191,
    metrics_host: Annotated[str, typer.Option(help="Address the worker metrics bind.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Run everything for one machine: the API with its dashboard (/ui/), the workers and
    the scheduler; Ctrl-C stops them all."""
    from burrow.api.security import check_bind

    configure_logging(log_format)
    burrow_app = load_app(app)
    _check(check_bind, burrow_app, host, insecure)
    api_argv = ["api", app, "--host", host, "--port", str(port), "--log-format", log_format]
    if insecure:
        api_argv.append("--insecure")
    worker_args = [app, "--log-format", log_format]
    if concurrency:
        worker_args += ["--concurrency", str(concurrency)]
    shared = None
    if metrics_port:
        from burrow.metrics import SharedEndpoint

        try:
            shared = SharedEndpoint(metrics_host, metrics_port)
        except OSError as exc:  # a convenience here: run on without them
            err.print(
                f"[yellow]warning:[/yellow] worker metrics not served on port {metrics_port} "
                f"({exc}); choose another with --metrics-port"
            )
    children = [
        Child("api", tuple(api_argv)),
        *worker_children(worker_args, processes, shared.env if shared else None),
        Child("scheduler", ("scheduler", app, "--log-format", log_format)),
    ]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - display only
    base = f"http://{shown}:{port}"
    console.print(
        f"[bold]burrow up[/bold]: {app} on namespace {burrow_app.names.namespace}\n"
        f"  dashboard  {base}/ui/\n"
        f"  API docs   {base}/docs\n"
        f"  API        {base}/api/v1\n"
        f"  health     {base}/healthz  {base}/readyz\n"
        f"  metrics    {base}/metrics (API)"
        + (f"  http://{metrics_host}:{metrics_port}/metrics (workers)\n" if shared else "\n")
        + f"  workers    {processes} process(es)\n"
        "  scheduler  1 process (cron schedules)\n"
        "Ctrl-C stops everything."
    )
    try:
        code = run(supervise_children(children, shared.process_exited if shared else None))
    finally:
        if shared is not None:
            shared.close()
    raise typer.Exit(code)
