"""A burrow app for the metrics tests (tests/integration/test_metrics.py), run by
``burrow worker`` and ``burrow api`` subprocesses and registered by the test's own app."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from burrow import Burrow, Exchange, Reject, Retry, TaskContext

QUEUE = "metered"
EVENTS = Exchange("metered_events", "fanout")


class Nap(BaseModel):
    ms: int


def register(app: Burrow) -> Burrow:
    @app.task(queue=QUEUE)
    async def nap(p: Nap) -> int:
        await asyncio.sleep(p.ms / 1000)
        return p.ms

    @app.task(queue=QUEUE, max_retries=0)
    async def boom(p: dict[str, Any]) -> None:
        raise Reject("always fails")

    @app.task(queue=QUEUE, max_retries=1)
    async def flaky(p: dict[str, Any], ctx: TaskContext) -> str:
        if ctx.attempt == 1:
            raise Retry(delay=0.1, reason="first run asks for another")
        return "second time lucky"

    @app.subscriber(EVENTS, queue="metered-audit")
    async def metered_audit(p: dict[str, Any]) -> None:
        return None

    @app.rpc("metered_square")
    async def metered_square(p: Nap) -> int:
        return p.ms * p.ms

    @app.rpc("metered_fail")
    async def metered_fail(p: Nap) -> None:
        raise ValueError("always fails")

    return app


app = register(Burrow())
