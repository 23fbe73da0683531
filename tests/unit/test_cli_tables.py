"""The CLI's tables at 80 columns: every id is printed whole on one line (no ellipsis, no
fold), whatever the other columns hold; they wrap, or the rows turn into blocks."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from rich.console import Console

from burrow.cli._tables import CliTable, Col
from burrow.cli.ops import dead_letters_table, queues_table
from burrow.cli.schedules import schedules_table
from burrow.cli.workers import render
from burrow.operations import AppQueue, DeadLetter, QueueKind, QueueSummary
from burrow.scheduler.cron import Cron, Schedule
from burrow.scheduling import ScheduleInfo

NS = "t0123456789ab"
TASK_ID = "fulfil-9da0b1c2-3d4e-5f60-7182-93a4b5c6d7e8"
EVENT_ID = "0c5b1f62-8d7a-4b53-9d2e-8a4b5c6d7e8f:audit_trail"
WORKER_ID = "worker-host-12345-a1b2c3"
LONG_ERROR = "RuntimeError: " + "the warehouse could not ship [order 9da0b1c2] " * 12


def printed(renderable: object, width: int = 80) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    lines = console.export_text().splitlines()
    assert all(len(line) <= width for line in lines), "a line is wider than the terminal"
    return lines


def whole(value: str, lines: list[str]) -> bool:
    return any(value in line for line in lines)


def letters() -> list[DeadLetter]:
    return [
        DeadLetter(
            TASK_ID,
            "fulfil_order",
            "shop.fulfilment",
            "max_retries",
            {"type": "RuntimeError", "message": LONG_ERROR},
            3,
            b"{}",
            status="succeeded",
        ),
        DeadLetter(EVENT_ID, "order.created", "shop.audit", "error", None, 1, b"{}"),
    ]


def test_dead_letter_ids_stay_whole_at_80_columns() -> None:
    """Task and event ids of dead letters are printed whole at 80 columns, the error wraps
    (bracketed text included, not taken for markup) and the resolved flag shows."""
    lines = printed(dead_letters_table("shop.audit", "subscriber", letters()))
    assert whole(TASK_ID, lines)
    assert whole(EVENT_ID, lines)
    assert "\n".join(lines).count("…") == 1  # only where the over-long error is capped
    assert whole("[order", lines)
    assert whole("(resolved)", lines)
    assert whole("no record", lines)


def test_queue_names_stay_whole_at_80_columns() -> None:
    """Queue and broker names are whole at 80 columns and every column is there."""
    rows = [
        QueueSummary(
            AppQueue("shop.inventory", QueueKind.SUBSCRIBER, ("reserve_stock",)),
            f"{NS}.shop.inventory",
            "quorum",
            12,
            2,
            3,
            f"{NS}.shop.inventory.dlq",
        ),
        QueueSummary(
            AppQueue("sub.warm_cache", QueueKind.BROADCAST, ("warm_cache",)),
            f"{NS}.sub.warm_cache.{{worker id}}",
            "classic",
            None,
            None,
            0,
            f"{NS}.sub.warm_cache.dlq",
        ),
    ]
    for width in (80, 200):
        lines = printed(queues_table(rows), width)
        for value in (
            "shop.inventory",
            f"{NS}.shop.inventory",
            f"{NS}.sub.warm_cache.{{worker id}}",
        ):
            assert whole(value, lines), (width, value)
        text = "\n".join(lines)
        for value in ("subscriber", "broadcast", "quorum", "classic"):
            assert value in text
    wide = printed(queues_table(rows), 200)
    row = next(line for line in wide if f"{NS}.shop.inventory" in line)
    assert row.split()[:6] == ["shop.inventory", "subscriber", "quorum", "12", "2", "3"]


def test_worker_ids_and_their_subscriber_queues_at_80_columns() -> None:
    """A worker's id is whole at 80 columns, with its task, subscriber and RPC queues."""
    now = time.time()
    beat = {
        "id": WORKER_ID,
        "host": "worker-host",
        "pid": 12345,
        "queues": ["shop.fulfilment"],
        "subscriber_queues": ["shop.audit", "sub.warm_cache"],
        "rpc_queues": ["rpc.price"],
        "concurrency": 16,
        "in_flight": 3,
        "processed": 12034,
        "started_at": now - 7200,
        "last_seen": now - 1,
    }
    lines = printed(render([beat], now=now))
    assert whole(WORKER_ID, lines)
    text = "\n".join(lines)
    for value in ("shop.fulfilment", "shop.audit (subscriber)", "rpc.price (rpc)", "12345"):
        assert value in text


def test_schedule_ids_stay_whole_at_80_columns() -> None:
    """A long schedule id is whole at 80 columns next to its cron, time zone and times."""
    schedule = Schedule(
        "nightly-report-for-the-warehouse-team",
        "build_report",
        Cron("0 3 * * *", "Europe/Amsterdam"),
    )
    info = ScheduleInfo(
        schedule=schedule,
        last_fired=datetime(2024, 5, 1, 3, tzinfo=UTC).timestamp(),
        next_fire=None,
    )
    lines = printed(schedules_table([info]))
    assert whole("nightly-report-for-the-warehouse-team", lines)
    assert whole("Europe/Amsterdam", lines)


def test_an_id_wider_than_the_terminal_is_folded_not_cut() -> None:
    """Only an id longer than the terminal is wide is folded onto the next line; every
    character of it is still printed."""
    table = CliTable(Col("id", "id"), "note")
    long_id = "x" * 50 + "y" * 50
    table.add_row(long_id, "short")
    lines = printed(table, 60)
    assert "".join(line.strip() for line in lines if set(line.strip()) <= {"x", "y"}) == long_id
