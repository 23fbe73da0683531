"""The run journal of the subprocess test apps (crash_app, scenario_app).

Handlers call ``journal(ctx, event)``: with ``BURROW_TEST_JOURNAL`` set, each call appends
``{task_id, attempt, pid, event, t}`` as one ``write()`` on an ``O_APPEND`` descriptor, so
lines of several processes never interleave and a killed or stopped process loses no
completed line. No pytest here: worker subprocesses import this module.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import orjson

from burrow import TaskContext

JOURNAL_VARIABLE = "BURROW_TEST_JOURNAL"


def journal(ctx: TaskContext, event: str) -> None:
    """Append one line for this run to the journal named by ``BURROW_TEST_JOURNAL``."""
    path = os.environ.get(JOURNAL_VARIABLE)
    if not path:
        return
    line = orjson.dumps(
        {
            "task_id": ctx.task_id,
            "attempt": ctx.attempt,
            "pid": os.getpid(),
            "event": event,
            "t": time.time(),
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line + b"\n")
    finally:
        os.close(fd)


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The complete lines of the journal (a line being written is skipped)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line]


def open_runs(entries: list[dict[str, Any]], pid: int) -> set[str]:
    """Task ids that started on ``pid`` without ending there."""
    started = {e["task_id"] for e in entries if e["pid"] == pid and e["event"] == "start"}
    ended = {e["task_id"] for e in entries if e["pid"] == pid and e["event"] == "end"}
    return started - ended
