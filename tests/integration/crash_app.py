"""A burrow app for the subprocess crash and shutdown tests (tests/integration/
test_crash_and_shutdown.py); run as ``python -m burrow worker tests.integration.crash_app:app``.

Settings come from ``BURROW_*`` variables; ``BURROW_TEST_JOURNAL`` names the file each run of
``sleep_ms`` appends JSON lines to ({task_id, attempt, pid, event: start|end}).
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

from burrow import Burrow, TaskContext
from tests.integration._journal import journal


class Sleep(BaseModel):
    ms: int


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
