"""``burrow workers APP``: the live worker processes, from their heartbeats in Redis.

Each worker process writes a heartbeat every ``BURROW_WORKER_HEARTBEAT`` seconds that
expires after three intervals, so a worker that died without saying goodbye (SIGKILL, a
lost machine) drops out of the list on its own; one that stops cleanly removes its own.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console

from burrow.app import Burrow
from burrow.cli._async import run
from burrow.cli._tables import CliTable, Col
from burrow.cli.loader import load_app

out = Console()


def workers(
    app: Annotated[str, typer.Argument(help="The app, as module:attribute.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the heartbeats as JSON, one list.")
    ] = False,
) -> None:
    """List the live workers: id, host, pid, the queues each consumes (task queues, then
    subscriber and RPC queues), concurrency, tasks in flight, tasks processed, when each
    started and when it was last seen.

    A worker is live while its heartbeat (every BURROW_WORKER_HEARTBEAT seconds, kept for
    three intervals) has not expired."""
    beats = run(_workers(load_app(app)))
    if as_json:
        typer.echo(json.dumps(beats, indent=2))
        return
    out.print(render(beats, now=time.time()))


async def _workers(app: Burrow) -> list[dict[str, Any]]:
    try:
        await app.state.open()
        beats = await app.state.workers()
    finally:
        await app.close()
    return sorted(beats, key=lambda b: (str(b.get("host", "")), str(b.get("id", ""))))


def _ago(now: float, at: Any) -> str:
    """``12s ago``, ``3m ago``, ``2h ago``, ``1d ago`` (``-`` when unknown)."""
    if not isinstance(at, int | float):
        return "-"
    seconds = max(0.0, now - at)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{seconds:.0f}s ago"


def render(beats: list[dict[str, Any]], *, now: float) -> CliTable:
    """The workers table (also used by tests)."""
    table = CliTable(
        Col("id", "id"),
        "host",
        Col("pid", "number"),
        Col("queues", "grow"),
        Col("concurrency", "number"),
        Col("in flight", "number"),
        Col("processed", "number"),
        "started",
        "last seen",
        title=f"{len(beats)} live worker{'s' if len(beats) != 1 else ''}",
    )
    for beat in beats:
        table.add_row(
            str(beat.get("id", "-")),
            str(beat.get("host", "-")),
            str(beat.get("pid", "-")),
            _consumed(beat),
            str(beat.get("concurrency", "-")),
            str(beat.get("in_flight", "-")),
            str(beat.get("processed", "-")),
            _ago(now, beat.get("started_at")),
            _ago(now, beat.get("last_seen")),
        )
    return table


def _consumed(beat: dict[str, Any]) -> str:
    """The queues a worker consumes, one a line: task queues, then subscriber queues and
    RPC request queues (heartbeats of older workers have task queues only)."""
    lines = [str(q) for q in beat.get("queues") or []]
    lines += [f"{q} (subscriber)" for q in beat.get("subscriber_queues") or []]
    lines += [f"{q} (rpc)" for q in beat.get("rpc_queues") or []]
    return "\n".join(lines) or "-"
