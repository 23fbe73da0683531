"""``burrow queues`` and ``burrow dlq APP list|replay|purge``: operations."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from burrow.app import Burrow
from burrow.cli._async import run
from burrow.cli.loader import load_app

out = Console()

AppArg = Annotated[str, typer.Argument(help="The app, as module:attribute.")]
QueueOpt = Annotated[
    str | None, typer.Option(help="One queue (default: every queue of the app's tasks).")
]


def queues(app: AppArg) -> None:
    """Show each queue's type, depth, consumers and dead letters.

    The type is the one the app declares the queue with (BURROW_QUEUE_TYPES, then the tasks'
    queue_type=, then BURROW_QUEUE_TYPE); declaring fails if the broker holds another.
    """
    run(_queues(load_app(app)))


async def _queues(app: Burrow) -> None:
    table = Table("queue", "broker name", "type", "ready", "consumers", "dead letters")
    try:
        for queue in app.all_queues():
            work, dead = await app.queue_stats(queue)
            table.add_row(
                queue,
                app.names.queue(queue),
                app.queue_type(queue),
                str(work.messages) if work else "-",
                str(work.consumers) if work else "-",
                str(dead.messages) if dead else "-",
            )
    finally:
        await app.close()
    out.print(table)


class DlqAction(StrEnum):
    list = "list"
    replay = "replay"
    purge = "purge"


def dlq(
    app: AppArg,
    action: Annotated[DlqAction, typer.Argument(help="list, replay or purge.")],
    queue: QueueOpt = None,
    limit: Annotated[
        int, typer.Option(min=1, help="Most dead letters to list or replay per queue.")
    ] = 1000,
    yes: Annotated[bool, typer.Option("--yes", help="Purge without asking.")] = False,
) -> None:
    """Dead letters: list them (left in place), replay them (records reopened, messages
    sent back to their queue), or purge them for good."""
    burrow_app = load_app(app)
    if action is DlqAction.list:
        run(_dlq_list(burrow_app, queue, min(limit, 10_000)))
    elif action is DlqAction.replay:
        run(_dlq_replay(burrow_app, queue, limit))
    else:
        if not yes:
            typer.confirm("Delete the dead letters for good?", abort=True)
        run(_dlq_purge(burrow_app, queue))


async def _dlq_list(app: Burrow, queue: str | None, limit: int) -> None:
    table = Table("queue", "task id", "task", "reason", "runs", "error")
    try:
        for q in [queue] if queue else app.all_queues():
            for letter in await app.dead_letters(q, limit=limit):
                message = (letter.error or {}).get("message", "")
                table.add_row(
                    q,
                    letter.task_id or "-",
                    letter.name or "-",
                    letter.reason,
                    str(letter.runs if letter.runs is not None else "-"),
                    str(message)[:80],
                )
    finally:
        await app.close()
    out.print(table)


async def _dlq_replay(app: Burrow, queue: str | None, limit: int) -> None:
    try:
        for q in [queue] if queue else app.all_queues():
            count = await app.replay_dead_letters(q, limit=limit)
            out.print(f"{q}: replayed {count}")
    finally:
        await app.close()


async def _dlq_purge(app: Burrow, queue: str | None) -> None:
    try:
        for q in [queue] if queue else app.all_queues():
            out.print(f"{q}: purged {await app.purge_dead_letters(q)}")
    finally:
        await app.close()
