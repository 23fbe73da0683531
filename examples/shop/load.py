"""``python -m examples.shop.load --orders 10000``: the shop under load, then its books.

Runs ``burrow up examples.shop.app:app`` on a port of its own (``--base`` with
``--no-start`` uses a running shop instead), resets four products, places the orders over
HTTP (``--concurrency`` at a time) with a progress bar, waits until every order is
processed and every SMS sent, and checks:

* every product: ``stock + sold == initial stock``, and ``sold`` equals the quantity of its
  confirmed orders (none oversold, none deducted twice);
* every order is in a terminal state (confirmed, rejected or cancelled);
* every cancelled order was compensated exactly once, with one refund;
* one SMS per order.

It prints the figures (orders/s placed, time to drain) and exits 1 if a check fails.
Database: ``--database`` (default: ``SHOP_DATABASE_URL``, else a SQLite file
``shop-load.db``). PostgreSQL is the one to measure: SQLite serialises every write.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from typing import Any

from rich.table import Table

from examples.shop._client import (
    OrderLine,
    console,
    expected_audit_events,
    place_orders,
    report,
    set_products,
    shop_server,
    wait_drained,
)

#: Share of the orders per product, and each product's stock as a share of the orders:
#: a and b run out near the end, c early (many rejections), broken fails every order.
MIX = {"load-a": 0.45, "load-b": 0.35, "load-c": 0.18, "load-broken": 0.02}
STOCK = {"load-a": 0.30, "load-b": 0.30, "load-c": 0.05, "load-broken": 0.10}


def products(orders: int) -> dict[str, dict[str, Any]]:
    return {
        sku: {
            "name": sku,
            "price_cents": 100 + 50 * i,
            "stock": max(1, round(orders * STOCK[sku])),
            "broken": sku == "load-broken",
        }
        for i, sku in enumerate(MIX)
    }


def order_lines(n: int, rng: random.Random) -> list[OrderLine]:
    skus = list(MIX)
    return [OrderLine(sku) for sku in rng.choices(skus, weights=[MIX[s] for s in skus], k=n)]


def checks(data: dict[str, Any], placed: int) -> list[tuple[str, bool, str]]:
    """(check, passed, figures) for the books after the run."""
    status = data["by_status"]
    ours = [p for p in data["products"] if p["sku"] in MIX]
    stock_ok = all(p["consistent"] for p in ours)
    sold_ok = all(p["sold"] == (0 if p["broken"] else p["confirmed_qty"]) for p in ours)
    terminal = status["confirmed"] + status["rejected"] + status["cancelled"]
    return [
        (
            "stock + sold = initial stock, every product",
            stock_ok,
            ", ".join(f"{p['sku']}: {p['stock']}+{p['sold']}={p['initial_stock']}" for p in ours),
        ),
        (
            "sold = confirmed quantity (no oversell, no double deduction)",
            sold_ok,
            ", ".join(f"{p['sku']}: {p['sold']}/{p['confirmed_qty']}" for p in ours),
        ),
        (
            "every order terminal",
            data["orders"] == placed == terminal,
            f"{terminal} of {placed} (pending {status['pending']}, reserved {status['reserved']})",
        ),
        (
            "every cancelled order compensated once, one refund each",
            data["compensations"] == status["cancelled"] == data["refunds"]
            and data["cancelled_without_compensation"] == 0,
            f"cancelled {status['cancelled']}, compensations {data['compensations']}, "
            f"refunds {data['refunds']}",
        ),
        ("one SMS per order", data["sms_sent"] == placed, f"{data['sms_sent']} of {placed}"),
        (
            "audit trail holds every event",
            data["audit_events"] == expected_audit_events(data),
            f"{data['audit_events']} of {expected_audit_events(data)}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="Load-test the example shop over HTTP.")
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64, help="HTTP requests at once")
    parser.add_argument("--base", default="http://127.0.0.1:8765")
    parser.add_argument("--no-start", action="store_true", help="use the shop at --base")
    parser.add_argument("--database", default=os.environ.get("SHOP_DATABASE_URL"))
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    parser.add_argument("--sms-rate", default="1000/s", help="SHOP_SMS_RATE of the shop")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait to drain")
    args = parser.parse_args()
    base = args.base.rstrip("/")
    env = {
        "SHOP_DATABASE_URL": args.database or "sqlite:///shop-load.db",
        "SHOP_SMS_RATE": args.sms_rate,
        "BURROW_NAMESPACE": os.environ.get("BURROW_NAMESPACE", "shopload"),
    }
    with shop_server(base, start=not args.no_start, env=env, processes=args.processes):
        set_products(base, products(args.orders))
        since = time.time()
        lines = order_lines(args.orders, random.Random(2026))
        started = time.monotonic()
        ids = asyncio.run(place_orders(base, lines, concurrency=args.concurrency))
        placing = time.monotonic() - started
        data = wait_drained(base, since, len(ids), timeout=args.timeout)
        total = time.monotonic() - started
        data = report(base, since)
    figures = Table("figure", "value", title=f"Shop load test: {len(ids)} orders")
    figures.add_row("database", env["SHOP_DATABASE_URL"].split("@")[-1])
    figures.add_row("placed (HTTP POST /orders)", f"{placing:.1f} s, {len(ids) / placing:.0f}/s")
    figures.add_row("all processed after", f"{total:.1f} s ({len(ids) / total:.0f} orders/s)")
    figures.add_row("drain after the last order", f"{total - placing:.1f} s")
    for key in ("confirmed", "rejected", "cancelled"):
        figures.add_row(key, str(data["by_status"][key]))
    figures.add_row("SMS sent / refunds", f"{data['sms_sent']} / {data['refunds']}")
    console.print(figures)
    results = Table("check", "result", "figures", title="Checks")
    failed = False
    for name, passed, detail in checks(data, len(ids)):
        failed |= not passed
        results.add_row(name, "[green]pass[/green]" if passed else "[red]FAIL[/red]", detail)
    console.print(results)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
