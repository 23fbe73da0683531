"""Log distribution on a topic exchange: each consumer picks the logs it wants by pattern.

Every service publishes its log lines to the topic exchange ``logs`` with the routing key
``<app>.<service>.<level>``, always three words (``web.auth.error``, ``mobile.pay.info``).
Consumers bind with patterns: ``*`` is exactly one word, ``#`` is zero or more words.

* ``error_alerts`` wants every error. The classic diagram binds ``*.error``, but ``*`` is
  exactly one word, so ``*.error`` matches only two-word keys (``db.error``), never
  ``web.auth.error``. With three-word keys, every error is ``*.*.error`` (or ``#.error``,
  which would also take keys of other lengths).
* ``naive_alerts`` binds the literal ``*.error`` to show it: it gets nothing here.
* ``auth_audit`` binds ``web.auth.*``: every level of the web app's auth service.
* ``debug_collector`` binds ``#.debug``: debug lines from anywhere (``#`` matches the two
  leading words of ``web.order.debug``; it would match ``debug`` alone too).

Each subscriber has its own durable queue (``queue=``), so lines wait there while a
consumer is down, and several instances of one consumer would share its lines.

Run it: ``python -m examples.events.log_distribution``
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from pydantic import BaseModel

from burrow import Exchange
from examples.patterns._support import console, make_app, running, show_routes, until_quiet

app = make_app("log_distribution")
logs = Exchange("logs", "topic")
received: dict[str, list[str]] = defaultdict(list)  # subscriber -> routing keys it got


class LogLine(BaseModel):
    app: str
    service: str
    level: str
    message: str

    @property
    def key(self) -> str:
        return f"{self.app}.{self.service}.{self.level}"


@app.subscriber(logs, "*.*.error", queue="error-alerts")
async def error_alerts(line: LogLine) -> None:
    received["error_alerts"].append(line.key)
    console.print(f"  [red]ALERT[/] {line.app}/{line.service}: {line.message}")


@app.subscriber(logs, "*.error", queue="naive-alerts")
async def naive_alerts(line: LogLine) -> None:
    received["naive_alerts"].append(line.key)  # never runs: no three-word key matches


@app.subscriber(logs, "web.auth.*", queue="auth-audit")
async def auth_audit(line: LogLine) -> None:
    received["auth_audit"].append(line.key)


@app.subscriber(logs, "#.debug", queue="debug-collector")
async def debug_collector(line: LogLine) -> None:
    received["debug_collector"].append(line.key)


LINES = [
    LogLine(app="web", service="auth", level="error", message="token signature invalid"),
    LogLine(app="web", service="auth", level="info", message="alice logged in"),
    LogLine(app="web", service="auth", level="debug", message="session cache miss"),
    LogLine(app="web", service="order", level="debug", message="cart has 3 items"),
    LogLine(app="mobile", service="pay", level="error", message="card declined"),
    LogLine(app="billing", service="invoice", level="warning", message="late payment"),
]


async def main() -> None:
    async with running(app) as workers:
        console.print(f"[bold]services[/] publish {len(LINES)} log lines (key app.service.level)")
        for line in LINES:
            await app.publish(logs, line.key, line)  # a pydantic model is sent as its JSON
        await until_quiet(workers)
    console.print("[bold]Routes[/]:")
    show_routes([line.key for line in LINES], received)
    console.print("[bold]Per consumer[/]:")
    for name, binding in [
        ("error_alerts", "*.*.error"),
        ("naive_alerts", "*.error"),
        ("auth_audit", "web.auth.*"),
        ("debug_collector", "#.debug"),
    ]:
        console.print(f"  {name:<16} {binding:<11} got {len(received[name])} lines")


if __name__ == "__main__":
    asyncio.run(main())
