"""``burrow submit`` and ``burrow status``: tasks from a shell."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

from burrow.app import Burrow
from burrow.cli._async import run
from burrow.cli.loader import load_app
from burrow.errors import OperationTimeout
from burrow.tasks.record import TaskRecord, iso

out = Console()


def submit(
    app: Annotated[str, typer.Argument(help="The app, as module:attribute.")],
    name: Annotated[str, typer.Argument(help="Task name.")],
    payload: Annotated[str, typer.Option(help="The payload as JSON.")] = "{}",
    wait: Annotated[
        float | None, typer.Option(help="Wait up to this many seconds for the result.")
    ] = None,
    delay: Annotated[float | None, typer.Option(min=0, help="Seconds before it may start.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Deduplication key.")] = None,
    priority: Annotated[
        int | None,
        typer.Option(min=0, max=9, help="0-9, 9 highest (for tasks with priorities=True)."),
    ] = None,
) -> None:
    """Submit a task and print its id (and its record with --wait)."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--payload is not valid JSON: {exc}") from exc
    burrow_app = load_app(app)
    code = run(_submit(burrow_app, name, data, wait, delay, idempotency_key, priority))
    raise typer.Exit(code)


async def _submit(
    app: Burrow,
    name: str,
    data: Any,
    wait: float | None,
    delay: float | None,
    key: str | None,
    priority: int | None,
) -> int:
    async with app:
        handle = await app.submit(name, data, delay=delay, idempotency_key=key, priority=priority)
        out.print(handle.id, soft_wrap=True, markup=False, highlight=False)  # whole, one line
        if wait is None:
            return 0
        try:
            record = await app.wait(handle.id, timeout=wait)
        except OperationTimeout:
            out.print(f"[yellow]not finished within {wait} s[/yellow]")
            return 2
        _print_record(record)
        return 0 if record.status == "succeeded" else 1


def status(
    app: Annotated[str, typer.Argument(help="The app, as module:attribute.")],
    task_id: Annotated[str, typer.Argument(help="Task id.")],
    history: Annotated[bool, typer.Option(help="Also print the task's events.")] = True,
) -> None:
    """Print a task's record (status, attempts, result or error) and its history."""
    run(_status(load_app(app), task_id, history))


async def _status(app: Burrow, task_id: str, with_history: bool) -> None:
    try:
        record = await app.get(task_id)
        _print_record(record)
        if with_history:
            for event in await app.history(task_id):
                note = f" ({event.note})" if event.note else ""
                err = f" {event.error.type}: {event.error.message}" if event.error else ""
                out.print(
                    f"  {iso(event.at)}  {event.status:<10} attempt {event.attempt}{note}{err}"
                )
    finally:
        await app.close()


def _print_record(record: TaskRecord) -> None:
    out.print_json(record.model_dump_json(exclude_none=True))
