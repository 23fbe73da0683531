"""``python -m examples.demo`` (what ``make up`` runs): a worker plus a few demo tasks.

Starts a worker for the demo app in this process, submits some tasks (sums, a sync
thumbnail job, charges that sometimes fail and retry, one that is rejected and
compensated), prints how each ended, then keeps the worker running until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import signal

from rich.console import Console
from rich.table import Table

from burrow.errors import OperationTimeout
from burrow.observability import configure_logging
from burrow.worker.runtime import Worker
from examples.demo.app import app

console = Console()


async def demo() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(app)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(worker.run(stop))
        await app.connect(timeout=30)
        handles = [await app.submit("add", {"a": i, "b": i * i}) for i in range(3)]
        handles.append(await app.submit("thumbnail", {"image": "cat.png", "width": 128}))
        handles += [
            await app.submit("charge", {"order_id": f"o-{i}", "amount": 10 * i})
            for i in range(1, 5)
        ]
        handles.append(await app.submit("charge", {"order_id": "o-big", "amount": 5000}))
        table = Table("task", "id", "status", "attempts", "result / error")
        for handle in handles:
            try:
                record = await app.wait(handle.id, timeout=30)
            except OperationTimeout:
                table.add_row(handle.name, handle.id[:8], "not finished", "", "")
                continue
            detail = record.result if record.error is None else record.error.message
            table.add_row(
                handle.name, handle.id[:8], record.status.value, str(record.attempts), str(detail)
            )
        console.print(table)
        console.print(
            f"Worker running on namespace [bold]{app.names.namespace}[/bold]. Try:\n"
            "  .venv/bin/burrow submit examples.demo.app:app add "
            '--payload \'{"a": 2, "b": 3}\' --wait 5\n'
            "  .venv/bin/burrow queues examples.demo.app:app\n"
            "  .venv/bin/burrow dlq examples.demo.app:app list\n"
            "Ctrl-C stops it."
        )
        await stop.wait()
    await app.close()


if __name__ == "__main__":
    configure_logging("auto")
    try:
        import uvloop

        uvloop.run(demo())
    except ImportError:
        asyncio.run(demo())
