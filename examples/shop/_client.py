"""What the demo and the load test share: find or start the shop, place orders over HTTP
with a progress bar, and wait until every order has been processed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

APP = "examples.shop.app:app"
ROOT = Path(__file__).resolve().parents[2]
console = Console()


@dataclass(frozen=True)
class OrderLine:
    sku: str
    qty: int = 1


def answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def shop_server(
    base: str, *, start: bool, env: dict[str, str] | None = None, processes: int = 1
) -> Iterator[None]:
    """Use the shop answering at ``base``, or (``start``) run ``burrow up`` for it there
    until the block ends (stopped with SIGTERM, like Ctrl-C)."""
    if not start:
        if not answers(base):
            raise SystemExit(f"no shop answers at {base}: start it with `make up`")
        yield
        return
    port = base.rsplit(":", 1)[1]
    argv = [sys.executable, "-m", "burrow", "up", APP, "--port", port]
    argv += ["--processes", str(processes), "--log-format", "json"]
    log = (ROOT / ".shop-up.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        argv,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not answers(base):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"burrow up did not start (see {log.name})")
            time.sleep(0.3)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def set_products(base: str, products: dict[str, dict[str, Any]]) -> None:
    """Create or reset each product (``PUT /products/{sku}``)."""
    for sku, body in products.items():
        r = httpx.put(f"{base}/products/{sku}", json=body, timeout=30)
        r.raise_for_status()


async def place_orders(base: str, lines: Sequence[OrderLine], *, concurrency: int) -> list[str]:
    """POST every order (``concurrency`` at a time) with a progress bar; returns the ids.

    A 429 or 503 (the API shedding load) is retried after a short pause."""
    ids: list[str] = []
    queue: asyncio.Queue[OrderLine] = asyncio.Queue()
    for line in lines:
        queue.put_nowait(line)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.0f} orders/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("placing orders", total=len(lines), rate=0.0)
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

            async def one_client() -> None:
                while not queue.empty():
                    line = queue.get_nowait()
                    body = {"sku": line.sku, "qty": line.qty, "phone": "+44 7700 900123"}
                    while True:
                        r = await client.post("/orders", json=body)
                        if r.status_code not in (429, 503):
                            break
                        await asyncio.sleep(0.2)
                    r.raise_for_status()
                    ids.append(r.json()["data"]["id"])
                    rate = len(ids) / max(time.monotonic() - started, 1e-6)
                    progress.update(bar, advance=1, rate=rate)

            await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return ids


def report(base: str, since: float) -> dict[str, Any]:
    r = httpx.get(f"{base}/shop/report", params={"since": since}, timeout=60)
    r.raise_for_status()
    data: dict[str, Any] = r.json()["data"]
    return data


def expected_audit_events(data: dict[str, Any]) -> int:
    """Events the audit trail must hold once every order is terminal: ``created`` and
    ``rejected`` for a rejected order; ``created``, ``reserved`` and ``confirmed`` or
    ``cancelled`` for the others (event ids are fixed per step, so repeats do not count)."""
    status = data["by_status"]
    return 2 * status["rejected"] + 3 * (status["confirmed"] + status["cancelled"])


def drained(data: dict[str, Any], orders: int) -> bool:
    """Every order terminal, every compensation, SMS and audit event done."""
    status = data["by_status"]
    done = status["confirmed"] + status["rejected"] + status["cancelled"]
    return bool(
        data["orders"] >= orders
        and done == data["orders"]
        and data["compensations"] == status["cancelled"]
        and data["sms_sent"] >= done
        and data["audit_events"] >= expected_audit_events(data)
    )


def wait_drained(base: str, since: float, orders: int, timeout: float) -> dict[str, Any]:
    """Poll the report with progress bars (orders finished, SMS sent, events audited)
    until ``drained``."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        finished = progress.add_task("orders processed", total=orders)
        texted = progress.add_task("SMS sent", total=orders)
        audited = progress.add_task("events audited", total=None)
        deadline = time.monotonic() + timeout
        while True:
            data = report(base, since)
            status = data["by_status"]
            done = status["confirmed"] + status["rejected"] + status["cancelled"]
            progress.update(finished, completed=done)
            progress.update(texted, completed=data["sms_sent"])
            progress.update(
                audited, completed=data["audit_events"], total=expected_audit_events(data)
            )
            if drained(data, orders) or time.monotonic() > deadline:
                return data
            time.sleep(0.5)
