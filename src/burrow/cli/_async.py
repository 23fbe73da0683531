"""Running coroutines from CLI commands, on uvloop when it is installed."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console

from burrow.errors import BurrowError

T = TypeVar("T")
err = Console(stderr=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion; a ``BurrowError`` becomes a clear message and exit 1."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        return runner(coro)  # type: ignore[no-any-return]
    except BurrowError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
