"""Publish/subscribe: every running receiver gets every message (a fanout exchange).

RabbitMQ tutorial 3: the producer publishes to an exchange, not to a queue. A fanout
exchange copies each message into every queue bound to it, and each receiver binds a
temporary queue of its own (exclusive: deleted when the receiver goes away). So every
receiver running gets every message, and a message published while none runs goes nowhere.

burrow:

* ``Exchange("logs", "fanout")`` is declared (durable) as ``{ns}.logs``.
* ``@app.subscriber(logs)`` without ``queue=`` is the temporary-queue receiver: each
  worker process gets its own exclusive queue ``{ns}.sub.show_log.{worker id}``. (With
  ``queue="name"`` the workers would share one queue and split the messages instead.)
* ``app.publish(logs, "", payload)`` publishes; a fanout exchange ignores the routing key.

Run it: ``python -m examples.patterns.publish_subscribe``
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from pydantic import BaseModel

from burrow import Burrow, Exchange
from examples.patterns._support import console, make_app, running, until_quiet

logs = Exchange("logs", "fanout")
received: dict[str, list[str]] = defaultdict(list)  # receiver -> the lines it got


class LogLine(BaseModel):
    text: str


def receiver_app(label: str, colour: str) -> Burrow:
    """The app of one receiver process (the tutorial runs receive_logs.py twice)."""
    app = make_app("publish_subscribe")

    @app.subscriber(logs)  # no queue=: broadcast, every worker process gets every message
    async def show_log(line: LogLine) -> None:
        received[label].append(line.text)
        console.print(f"  [{colour}]{label}[/] got {line.text!r}")

    return app


async def main() -> None:
    apps = [receiver_app("receiver-1", "cyan"), receiver_app("receiver-2", "magenta")]
    lines = ["info: service started", "warning: disk 80% full", "error: payment declined"]
    async with running(*apps) as workers:
        console.print(f"[bold]producer[/] publishes {len(lines)} lines to the fanout exchange")
        for text in lines:
            await apps[0].publish(logs, "", {"text": text})  # returns once confirmed
        await until_quiet(workers)
    console.print("[bold]Who got what[/] (every receiver gets every line):")
    for label in sorted(received):
        got = received[label]
        console.print(f"  {label} got {len(got)} of {len(lines)}: {'; '.join(got)}")


if __name__ == "__main__":
    asyncio.run(main())
