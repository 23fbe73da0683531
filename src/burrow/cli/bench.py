"""``burrow bench``: a load generator for a running deployment.

It submits ``--n`` tasks of one kind through the Python producer API (single submits with
``--concurrency`` in flight, or ``submit_many`` batches with ``--batch``), with a progress
bar, then follows the tasks until every one is terminal and prints throughput and latency
percentiles. Latencies come from the task records, all stamped by Redis's clock: queue wait
= ``started_at - created_at``, end to end = ``finished_at - created_at``.

The workers are the deployment's own (``burrow worker`` / ``burrow up``); nothing runs the
tasks here. For burrow's overhead against raw aio-pika in the same run, use ``make bench``
(``docs/performance.md``).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from burrow.app import Burrow
from burrow.cli._async import err, run
from burrow.cli.loader import load_app
from burrow.tasks.record import TaskRecord

out = Console()
#: Records read per round while following the tasks (oldest first).
FOLLOW_WINDOW = 256


@dataclass
class BenchResult:
    """What one ``burrow bench`` run measured (``--json`` writes it)."""

    task: str
    n: int
    concurrency: int
    batch: int
    submitted: int = 0
    submit_seconds: float = 0.0
    finished: int = 0
    succeeded: int = 0
    failed: int = 0
    other: int = 0
    total_seconds: float = 0.0
    queue_wait_ms: dict[str, float] = field(default_factory=dict)
    end_to_end_ms: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def submit_rate(self) -> float:
        return self.submitted / self.submit_seconds if self.submit_seconds else 0.0

    @property
    def completion_rate(self) -> float:
        return self.finished / self.total_seconds if self.total_seconds else 0.0


def bench(
    app: Annotated[str, typer.Argument(help="The app, as module:attribute.")],
    name: Annotated[str, typer.Argument(help="Task to submit (its workers must be running).")],
    payload: Annotated[str, typer.Option(help="The payload of every task, as JSON.")] = "{}",
    n: Annotated[int, typer.Option("--n", min=1, help="Tasks to submit.")] = 10_000,
    concurrency: Annotated[
        int, typer.Option(min=1, max=4096, help="Submits (or batches) in flight at once.")
    ] = 64,
    batch: Annotated[
        int, typer.Option(min=0, max=10_000, help="Use submit_many with batches of this size.")
    ] = 0,
    wait: Annotated[
        bool, typer.Option(help="Follow the tasks until all are terminal (latency figures).")
    ] = True,
    timeout: Annotated[
        float, typer.Option(min=1, help="Give up following after this many seconds.")
    ] = 300.0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the results to this file.")
    ] = None,
) -> None:
    """Load-test a running deployment: submit N tasks, follow them to the end, and print
    the submit rate, completion rate and queue-wait / end-to-end latency percentiles."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--payload is not valid JSON: {exc}") from exc
    burrow_app = load_app(app)
    if name not in burrow_app.registry:
        known = ", ".join(sorted(d.name for d in burrow_app.registry)) or "none"
        err.print(f"[red]error:[/red] unknown task {name!r} (the app has: {known})")
        raise typer.Exit(2)
    result = BenchResult(task=name, n=n, concurrency=concurrency, batch=batch)
    run(_bench(burrow_app, result, data, wait=wait, timeout=timeout))
    out.print(report(result))
    if json_out is not None:
        summary = {**asdict(result), "submit_rate": result.submit_rate}
        summary["completion_rate"] = result.completion_rate
        json_out.write_text(json.dumps(summary, indent=2) + "\n")
    if result.interrupted or (wait and result.finished < result.submitted):
        raise typer.Exit(1)


async def _bench(
    app: Burrow, result: BenchResult, data: Any, *, wait: bool, timeout: float
) -> None:
    ids: list[str] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    async with app:
        await app.connect(timeout=10)
        start = time.perf_counter()
        with Progress(*columns, console=out, transient=False) as progress:
            bar = progress.add_task("submitting", total=result.n, rate="")
            try:
                await _submit(app, result, data, ids, progress, bar)
            except (KeyboardInterrupt, asyncio.CancelledError):
                result.interrupted = True
            result.submitted = len(ids)
            result.submit_seconds = time.perf_counter() - start
            if not wait or result.interrupted:
                return
            follow = progress.add_task("finishing", total=len(ids), rate="")
            try:
                records = await _follow(app, ids, timeout, progress, follow, start)
            except (KeyboardInterrupt, asyncio.CancelledError):
                result.interrupted = True
                return
        result.total_seconds = time.perf_counter() - start
        _summarise(result, records)


async def _submit(
    app: Burrow,
    result: BenchResult,
    data: Any,
    ids: list[str],
    progress: Progress,
    bar: Any,
) -> None:
    size = result.batch or 1
    chunks = [min(size, result.n - i) for i in range(0, result.n, size)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)
    started = time.perf_counter()

    async def submitter() -> None:
        while not queue.empty():
            count = queue.get_nowait()
            if result.batch:
                handles = await app.submit_many(result.task, [data] * count)
                ids.extend(h.id for h in handles)
            else:
                ids.append((await app.submit(result.task, data)).id)
            done = len(ids)
            rate = done / max(time.perf_counter() - started, 1e-9)
            progress.update(bar, completed=done, rate=f"{rate:,.0f}/s")

    async with asyncio.TaskGroup() as group:
        for _ in range(min(result.concurrency, len(chunks))):
            group.create_task(submitter())


async def _follow(
    app: Burrow, ids: list[str], timeout: float, progress: Progress, bar: Any, start: float
) -> list[TaskRecord]:
    """Read the records, oldest first, until every task is terminal (or ``timeout``)."""
    pending = list(ids)
    done: list[TaskRecord] = []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        window, rest = pending[:FOLLOW_WINDOW], pending[FOLLOW_WINDOW:]
        records = await asyncio.gather(*(app.state.get(task_id) for task_id in window))
        still = [i for i, r in zip(window, records, strict=True) if r is None or not r.terminal]
        done.extend(r for r in records if r is not None and r.terminal)
        pending = still + rest
        rate = len(done) / max(time.perf_counter() - start, 1e-9)
        progress.update(bar, completed=len(done), rate=f"{rate:,.0f}/s")
        if still:
            await asyncio.sleep(0.2)
    return done


def _summarise(result: BenchResult, records: list[TaskRecord]) -> None:
    result.finished = len(records)
    result.succeeded = sum(1 for r in records if r.status == "succeeded")
    result.failed = sum(1 for r in records if r.status == "failed")
    result.other = result.finished - result.succeeded - result.failed
    waits = [
        (r.started_at - r.created_at) * 1000
        for r in records
        if r.started_at is not None and r.created_at is not None
    ]
    totals = [
        (r.finished_at - r.created_at) * 1000
        for r in records
        if r.finished_at is not None and r.created_at is not None
    ]
    result.queue_wait_ms = percentiles(waits)
    result.end_to_end_ms = percentiles(totals)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max of ``values`` (nearest rank); empty for no values."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "max": ordered[-1]}


def report(result: BenchResult) -> Table:
    """The results as a table."""
    mode = f"submit_many x{result.batch}" if result.batch else "single submits"
    table = Table(title=f"burrow bench: {result.task} ({mode}, {result.concurrency} in flight)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("submitted", f"{result.submitted:,} of {result.n:,}")
    table.add_row("submit rate", f"{result.submit_rate:,.0f} tasks/s")
    if result.finished:
        table.add_row(
            "finished",
            f"{result.finished:,} ({result.succeeded:,} succeeded, {result.failed:,} failed"
            + (f", {result.other:,} other)" if result.other else ")"),
        )
        table.add_row("completion rate", f"{result.completion_rate:,.0f} tasks/s")
        for label, values in (
            ("queue wait (ms)", result.queue_wait_ms),
            ("end to end (ms)", result.end_to_end_ms),
        ):
            if values:
                table.add_row(label, "  ".join(f"{k} {v:,.2f}" for k, v in values.items()))
    if result.interrupted:
        table.add_row("[yellow]interrupted[/yellow]", "figures cover what ran")
    elif result.submitted and result.finished < result.submitted and result.total_seconds:
        missing = result.submitted - result.finished
        table.add_row("[red]not finished[/red]", f"{missing:,} tasks (workers running?)")
    return table
