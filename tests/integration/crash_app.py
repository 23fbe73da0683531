"""A burrow app for the subprocess crash and shutdown tests (tests/integration/
test_crash_and_shutdown.py); run as ``python -m burrow worker tests.integration.crash_app:app``.

Settings come from ``BURROW_*`` variables; ``CRASH_JOURNAL`` names the file each run of
``sleep_ms`` appends JSON lines to ({task_id, attempt, pid, event: start|end}).
"""

from __future__ import annotations

import asyncio
import os

import orjson
from pydantic import BaseModel

from burrow import Burrow, TaskContext


class Sleep(BaseModel):
    ms: int


def journal(ctx: TaskContext, event: str) -> None:
    """Append one line to the journal: one write on an O_APPEND descriptor, so lines from
    several processes never interleave."""
    path = os.environ.get("CRASH_JOURNAL")
    if not path:
        return
    line = orjson.dumps(
        {"task_id": ctx.task_id, "attempt": ctx.attempt, "pid": os.getpid(), "event": event}
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line + b"\n")
    finally:
        os.close(fd)


def register(app: Burrow) -> Burrow:
    """Register the crash tasks on ``app`` (the test's producer app registers them too)."""

    @app.task(max_retries=3)
    async def sleep_ms(p: Sleep, ctx: TaskContext) -> int:
        journal(ctx, "start")
        await asyncio.sleep(p.ms / 1000)
        journal(ctx, "end")
        return p.ms

    @app.task(max_retries=2)
    async def exit_now(p: dict[str, object], ctx: TaskContext) -> None:
        journal(ctx, "start")
        os._exit(137)

    return app


app = register(Burrow())
