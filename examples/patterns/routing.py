"""Routing: a direct exchange delivers a message to the queues bound with its exact key.

RabbitMQ tutorial 4: log messages are published with their severity as the routing key.
One receiver binds only ``error`` (say, to save errors to disk); another binds ``info``,
``warning`` and ``error`` (to print them). A direct exchange sends each message to every
queue whose binding key equals its routing key, and drops a message no binding matches.

burrow:

* ``Exchange("direct_logs", "direct")``.
* ``@app.subscriber(exchange, "error", queue="errors-to-disk")``: the binding is a key or
  a list of keys. ``queue=`` gives the subscriber a durable queue of its own that survives
  restarts and that all its worker processes share.
* ``app.publish(exchange, severity, payload)``: the routing key is the severity.

Run it: ``python -m examples.patterns.routing``
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from pydantic import BaseModel

from burrow import Exchange
from examples.patterns._support import console, make_app, running, show_routes, until_quiet

app = make_app("routing")
direct_logs = Exchange("direct_logs", "direct")
received: dict[str, list[str]] = defaultdict(list)  # subscriber -> severities it got


class Log(BaseModel):
    severity: str
    text: str


@app.subscriber(direct_logs, "error", queue="errors-to-disk")
async def save_to_disk(log: Log) -> None:
    received["save_to_disk"].append(log.severity)
    console.print(f"  [magenta]disk[/]   {log.severity}: {log.text}")


@app.subscriber(direct_logs, ["info", "warning", "error"], queue="logs-to-screen")
async def print_to_screen(log: Log) -> None:
    received["print_to_screen"].append(log.severity)
    console.print(f"  [cyan]screen[/] {log.severity}: {log.text}")


async def main() -> None:
    messages = {
        "info": "user alice logged in",
        "warning": "disk 80% full",
        "error": "payment service unreachable",
        "debug": "cache hit ratio 0.93",  # nobody binds debug: the exchange drops it
    }
    async with running(app) as workers:
        console.print("[bold]producer[/] publishes one message per severity (= routing key)")
        for severity, text in messages.items():
            await app.publish(direct_logs, severity, {"severity": severity, "text": text})
        await until_quiet(workers)
    console.print(
        "[bold]Routes[/] (save_to_disk binds error; print_to_screen info, warning, error):"
    )
    show_routes(messages, received)


if __name__ == "__main__":
    asyncio.run(main())
