"""A small example app: ``burrow worker examples.demo.app:app``."""

from __future__ import annotations

import asyncio
import random

from pydantic import BaseModel

from burrow import Burrow, Reject, TaskContext, TaskRecord

app = Burrow()


class Add(BaseModel):
    a: int
    b: int


@app.task(queue="math", max_retries=5, timeout=10)
async def add(p: Add) -> int:
    """Add two numbers."""
    return p.a + p.b


class Resize(BaseModel):
    image: str
    width: int


@app.task(name="thumbnail")
def make_thumbnail(p: Resize, ctx: TaskContext) -> dict[str, object]:
    """A sync handler: runs in the worker's thread pool."""
    ctx.logger.info("resizing", image=p.image, width=p.width)
    return {"image": p.image, "thumbnail": f"{p.image}@{p.width}px"}


class Charge(BaseModel):
    order_id: str
    amount: int


@app.task(max_retries=2, retry_base=0.2)
async def charge(p: Charge, ctx: TaskContext) -> str:
    """Fails now and then; amounts over 1000 are refused for good."""
    if p.amount > 1000:
        raise Reject(f"amount {p.amount} is over the limit")
    if random.random() < 0.3:
        raise ConnectionError("payment gateway timed out")
    await asyncio.sleep(0.01)
    return f"charged {p.amount} for {p.order_id} on attempt {ctx.attempt}"


@app.on_dead("charge")
async def refund(record: TaskRecord) -> None:
    """Compensation: runs once for each charge that died."""
    reason = record.error.reason if record.error else "unknown"
    print(f"refund issued for {record.payload} (task {record.id[:8]} died: {reason})")
