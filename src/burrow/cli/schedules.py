"""``burrow scheduler APP`` (fires cron schedules) and ``burrow schedules APP
list|add|remove`` (manages them)."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from burrow.app import Burrow
from burrow.cli._async import run
from burrow.cli._tables import CliTable, Col
from burrow.cli.loader import load_app
from burrow.observability import configure_logging
from burrow.scheduler import Scheduler
from burrow.scheduling import ScheduleInfo

out = Console()

AppArg = Annotated[str, typer.Argument(help="The app, as module:attribute.")]


def scheduler(
    app: AppArg,
    lock_ttl: Annotated[
        float | None,
        typer.Option(
            min=1, help="Seconds the leader lock lives unrenewed (BURROW_SCHEDULER_LOCK_TTL)."
        ),
    ] = None,
    log_format: Annotated[
        str, typer.Option(help="json, console, or auto (console on a TTY).")
    ] = "auto",
) -> None:
    """Fire the app's cron schedules (code and run-time ones) until SIGTERM or Ctrl-C.

    Run as many as you like: one holds the leader lock in Redis and fires, the others stand
    by and take over within the lock TTL; each tick is enqueued once.
    """
    configure_logging(log_format)
    run(_run_scheduler(Scheduler(load_app(app), lock_ttl=lock_ttl)))


async def _run_scheduler(runtime: Scheduler) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.run(stop)
    finally:
        await runtime.app.close()


class ScheduleAction(StrEnum):
    list = "list"
    add = "add"
    remove = "remove"


def schedules(
    app: AppArg,
    action: Annotated[ScheduleAction, typer.Argument(help="list, add or remove.")],
    schedule_id: Annotated[
        str | None,
        typer.Argument(help="remove: the schedule's id. add: optional id (default: a random one)."),
    ] = None,
    task: Annotated[str | None, typer.Option(help="add: the task to fire.")] = None,
    cron: Annotated[
        str | None,
        typer.Option(help="add: cron expression, e.g. '*/5 * * * *' (6th field: seconds)."),
    ] = None,
    payload: Annotated[str, typer.Option(help="add: the task's payload as JSON.")] = "null",
    timezone: Annotated[str, typer.Option(help="add: IANA time zone of the ticks.")] = "UTC",
    misfire: Annotated[
        str, typer.Option(help="add: after downtime, 'last' (run the latest tick once) or 'skip'.")
    ] = "last",
) -> None:
    """Cron schedules: list them all (from code and run time, with last and next fire),
    add one at run time (stored in Redis), or remove one added at run time."""
    burrow_app = load_app(app)
    if action is ScheduleAction.list:
        run(_list(burrow_app))
    elif action is ScheduleAction.add:
        if not task or not cron:
            raise typer.BadParameter("add needs --task and --cron", param_hint="'add'")
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="'--payload'") from None
        run(_add(burrow_app, task, cron, body, timezone, misfire, schedule_id))
    else:
        if not schedule_id:
            raise typer.BadParameter("remove needs the schedule's id", param_hint="'remove'")
        run(_remove(burrow_app, schedule_id))


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def _list(app: Burrow) -> None:
    try:
        found = await app.list_schedules()
    finally:
        await app.close()
    out.print(schedules_table(found))


def schedules_table(found: list[ScheduleInfo]) -> CliTable:
    """The ``burrow schedules list`` table (also used by tests)."""
    table = CliTable(
        Col("id", "id"), "task", "cron", "time zone", "misfire", "source", "last fired", "next"
    )
    for info in found:
        s = info.schedule
        table.add_row(
            s.id,
            s.task,
            s.cron.expression,
            s.cron.timezone,
            s.misfire.value,
            s.source.value,
            _when(info.last_fired),
            _when(info.next_fire),
        )
    return table


async def _add(
    app: Burrow,
    task: str,
    cron: str,
    payload: Any,
    timezone: str,
    misfire: str,
    schedule_id: str | None,
) -> None:
    try:
        schedule = await app.add_schedule(
            task, cron, payload, timezone=timezone, misfire=misfire, schedule_id=schedule_id
        )
    finally:
        await app.close()
    out.print(f"added schedule {schedule.id}: {task} at '{schedule.cron.expression}'")


async def _remove(app: Burrow, schedule_id: str) -> None:
    try:
        await app.remove_schedule(schedule_id)
    finally:
        await app.close()
    out.print(f"removed schedule {schedule_id}")
