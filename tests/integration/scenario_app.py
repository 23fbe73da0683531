"""A burrow app for the subprocess reliability scenarios (tests/integration/test_scenarios.py);
run as ``python -m burrow worker tests.integration.scenario_app:app``.

Settings come from ``BURROW_*`` variables. ``BURROW_TEST_JOURNAL`` names the file each run of
``nap`` appends JSON lines to: ``{task_id, attempt, pid, event: start|end, t}``, one
``write()`` per line on an ``O_APPEND`` descriptor, so lines of several processes never
interleave and a killed or stopped process loses no completed line.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from burrow import Burrow, TaskContext
from tests.integration._journal import journal


class Nap(BaseModel):
    ms: int


def register(app: Burrow) -> Burrow:
    """Register the scenario tasks on ``app`` (the test's producer app registers them too)."""

    @app.task(max_retries=3)
    async def nap(p: Nap, ctx: TaskContext) -> int:
        journal(ctx, "start")
        await asyncio.sleep(p.ms / 1000)
        journal(ctx, "end")
        return p.ms

    return app


app = register(Burrow())
