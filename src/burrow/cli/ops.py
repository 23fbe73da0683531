"""``burrow queues`` and ``burrow dlq APP list|replay|purge``: operations.

Both cover every queue of the app (``Operations.app_queues``): task queues, event
subscribers' queues (``sub.{name}`` for a broadcast subscriber) and, for ``queues``, RPC
request queues, which have no dead letters.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.text import Text

from burrow.app import Burrow
from burrow.cli._async import run
from burrow.cli._tables import CliTable, Col
from burrow.cli.loader import load_app
from burrow.operations import DeadLetter, DeadLetterReport, QueueSummary

out = Console()

#: Characters of an error shown in the ``dlq list`` table (``--json`` has all of it).
ERROR_CHARS = 300

AppArg = Annotated[str, typer.Argument(help="The app, as module:attribute.")]
QueueOpt = Annotated[
    str | None,
    typer.Option(help="One queue (default: every queue of the app's tasks and subscribers)."),
]


def queues(app: AppArg) -> None:
    """Show each queue of the app: its kind (task, subscriber, broadcast, rpc), type,
    depth, consumers and dead letters.

    The type is the one the app declares the queue with (BURROW_QUEUE_TYPES, then the tasks'
    queue_type=, then BURROW_QUEUE_TYPE); declaring fails if the broker holds another. A
    broadcast subscriber (no queue=) has one exclusive queue per worker process, which only
    that worker can read: its depth shows as "-", its dead letters are shared.
    """
    run(_queues(load_app(app)))


async def _queues(app: Burrow) -> None:
    try:
        rows = [await app.queue_summary(q) for q in app.app_queues()]
    finally:
        await app.close()
    out.print(queues_table(rows))


def queues_table(rows: list[QueueSummary]) -> CliTable:
    """The ``burrow queues`` table (also used by tests)."""
    table = CliTable(
        Col("queue", "id"),
        "kind",
        "type",
        Col("ready", "number"),
        Col("consumers", "number"),
        Col("dead letters", "number"),
        Col("broker name", "id"),
    )
    for r in rows:
        table.add_row(
            r.queue.name,
            r.queue.kind.value,
            r.type,
            _count(r.depth),
            _count(r.consumers),
            _count(r.dead_letters),
            r.broker_name,
        )
    return table


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


class DlqAction(StrEnum):
    list = "list"
    replay = "replay"
    purge = "purge"


IdsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--id", help="Only the dead letters of this task id (repeatable; replay and purge)."
    ),
]


def dlq(
    app: AppArg,
    action: Annotated[DlqAction, typer.Argument(help="list, replay or purge.")],
    queue: QueueOpt = None,
    limit: Annotated[
        int, typer.Option(min=1, help="Most dead letters to list or replay per queue.")
    ] = 1000,
    ids: IdsOpt = None,
    resolved: Annotated[
        bool,
        typer.Option("--resolved", help="purge: only those whose task has succeeded since."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="list: print them as JSON.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Purge without asking.")] = False,
) -> None:
    """Dead letters: list them (left in place, with their task's status now), replay them
    (records reopened, messages sent back to their queue), or purge them for good.

    A dead letter whose task has succeeded since (replayed, or retried) is listed as
    resolved; replay leaves it in place, and purge --resolved deletes the resolved ones.
    A broadcast subscriber's dead letter is replayed to the worker process it failed in,
    and left in place when that process no longer runs.
    """
    burrow_app = load_app(app)
    targets = _targets(burrow_app, queue)
    if action is DlqAction.list:
        run(_dlq_list(burrow_app, targets, min(limit, 10_000), as_json=as_json))
    elif action is DlqAction.replay:
        run(_dlq_replay(burrow_app, targets, limit, ids))
    else:
        if not yes:
            which = "the resolved dead letters" if resolved else "the dead letters"
            typer.confirm(f"Delete {which}{' named' if ids else ''} for good?", abort=True)
        run(_dlq_purge(burrow_app, targets, ids, resolved=resolved))


def _targets(app: Burrow, queue: str | None) -> list[str]:
    """``queue`` or every queue with dead letters.

    Raises:
        typer.BadParameter: ``queue`` is not one of them (an RPC queue has none).
    """
    known = app.dead_letter_queues()
    if queue is None:
        return known
    if queue not in known:
        raise typer.BadParameter(
            f"no task or subscriber of the app uses queue {queue!r} (an RPC queue has no "
            f"dead letters); its queues with dead letters: {', '.join(known)}",
            param_hint="'--queue'",
        )
    return [queue]


async def _dlq_list(app: Burrow, targets: list[str], limit: int, *, as_json: bool) -> None:
    found: dict[str, list[DeadLetter]] = {}
    try:
        for q in targets:
            found[q] = await app.dead_letters(q, limit=limit)
    finally:
        await app.close()
    if as_json:
        typer.echo(json.dumps([_as_json(d) for letters in found.values() for d in letters]))
        return
    kinds = {q.name: q.kind.value for q in app.app_queues()}
    for q, letters in found.items():
        if letters or len(targets) == 1:
            out.print(dead_letters_table(q, kinds.get(q, "queue"), letters))
    if not any(found.values()):
        out.print("no dead letters")


def dead_letters_table(queue: str, kind: str, letters: list[DeadLetter]) -> CliTable:
    """The table of one queue's dead letters (also used by tests): each task id on a line
    of its own, the task's name, why it died and its runs under it."""
    table = CliTable(
        Col("task id / task, reason, runs", "id"),
        "task now",
        Col("error", "grow"),
        title=f"{queue} ({kind}): {len(letters)} dead letter(s)",
    )
    for d in letters:
        runs = "-" if d.runs is None else str(d.runs)
        cell = Text(d.task_id or "-")
        cell.append(f"\n{d.name or '-'}, {d.reason}, {runs} run(s)", style="dim")
        status = d.status or "no record"
        table.add_row(cell, f"{status}\n(resolved)" if d.resolved else status, _error(d))
    return table


def _error(d: DeadLetter) -> str:
    if not d.error:
        return "-"
    text = f"{d.error.get('type', 'Error')}: {d.error.get('message', '')}"
    return text if len(text) <= ERROR_CHARS else f"{text[:ERROR_CHARS]}… (--json: all of it)"


def _as_json(d: DeadLetter) -> dict[str, Any]:
    try:
        payload: Any = orjson.loads(d.body)
    except orjson.JSONDecodeError:
        payload = d.body.decode("utf-8", errors="replace")
    return {
        "task_id": d.task_id,
        "name": d.name,
        "queue": d.queue,
        "reason": d.reason,
        "error": d.error,
        "runs": d.runs,
        "status": d.status,
        "resolved": d.resolved,
        "dead_at": d.dead_at,
        "payload": payload,
        "history": d.history,
    }


async def _dlq_replay(app: Burrow, targets: list[str], limit: int, ids: list[str] | None) -> None:
    reports: dict[str, DeadLetterReport] = {}
    try:
        for q in targets:
            reports[q] = report = await app.replay_dead_letters_report(q, limit=limit, ids=ids)
            kept = ", ".join(f"{n} {why}" for why, n in sorted(report.kept.items()))
            line = f"{q}: replayed {report.done}" + (f"; kept {kept}" if kept else "")
            out.print(line, markup=False)
    finally:
        await app.close()
    _report_missing(ids, reports)


async def _dlq_purge(
    app: Burrow, targets: list[str], ids: list[str] | None, *, resolved: bool
) -> None:
    reports: dict[str, DeadLetterReport] = {}
    try:
        for q in targets:
            if ids is None and not resolved:
                out.print(f"{q}: purged {await app.purge_dead_letters(q)}", markup=False)
                continue
            reports[q] = report = await app.remove_dead_letters(q, ids=ids, resolved=resolved)
            out.print(f"{q}: purged {report.done}", markup=False)
    finally:
        await app.close()
    _report_missing(ids, reports)


def _report_missing(ids: list[str] | None, reports: dict[str, DeadLetterReport]) -> None:
    """Say which of ``ids`` had no dead letter; exit 1 when none had."""
    if not ids:
        return
    matched = set().union(*(r.matched for r in reports.values()))
    missing = [i for i in dict.fromkeys(ids) if i not in matched]
    if missing:
        out.print(f"no dead letter of: {', '.join(missing)}", style="yellow", markup=False)
    if len(missing) == len(set(ids)):
        raise typer.Exit(1)
