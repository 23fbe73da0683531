"""Checked by mypy in tests/unit/test_typing.py: burrow's decorators keep the handler's type."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from burrow import Burrow, Exchange

app = Burrow()


class Add(BaseModel):
    a: int
    b: int


@app.task
async def bare(p: Add) -> int:
    return p.a + p.b


@app.task(queue="math", max_retries=2)
async def configured(p: Add) -> int:
    return p.a + p.b


@app.task(queue="files")
def sync_handler(p: Add) -> str:
    return str(p.a)


@app.subscriber(Exchange("orders", "topic"), "order.*", queue="audit")
async def on_order(p: dict[str, Any]) -> None:
    return None


@app.rpc("quote")
async def quote(p: Add) -> int:
    return p.a * p.b


async def calls() -> None:
    # Right arguments type-check and the results keep their types...
    total: int = await bare(Add(a=1, b=2)) + await configured(Add(a=1, b=2))
    text: str = sync_handler(Add(a=1, b=2))
    await on_order({"id": 1})
    product: int = await quote(Add(a=2, b=3))
    del total, text, product
    # ...and wrong ones are errors. Were a handler ``Any``, its ignore below would be
    # unused, which --strict (warn_unused_ignores) reports.
    await bare("nope")  # type: ignore[arg-type]
    await configured(1)  # type: ignore[arg-type]
    sync_handler(None)  # type: ignore[arg-type]
    await on_order([1])  # type: ignore[arg-type]
    await quote({"a": 1})  # type: ignore[arg-type]
