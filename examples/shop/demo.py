"""``python -m examples.shop.demo`` (``make demo``): a few hundred orders on the shop.

Uses the shop at ``http://127.0.0.1:8000`` when one answers there (``make up`` in another
terminal: watch the dashboard at ``/ui/`` while it runs); otherwise runs ``burrow up`` for
the demo itself. It resets four products (``PUT /products/{sku}``): plenty of tea and mugs,
only 20 kettles (so most kettle orders are rejected for stock), and a lamp the warehouse
cannot ship (each of its orders is retried, dead-lettered and compensated). Then it places
the orders over HTTP with a progress bar, waits until every order is processed and every
SMS sent, and prints a summary.

Options: ``--orders N`` (default 300), ``--base URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from rich.table import Table

from examples.shop._client import (
    OrderLine,
    answers,
    console,
    place_orders,
    set_products,
    shop_server,
    wait_drained,
)

PRODUCTS = {
    "tea": {"name": "Green tea, 100 g", "price_cents": 450, "stock": 1000},
    "mug": {"name": "Stoneware mug", "price_cents": 1200, "stock": 300},
    "kettle": {"name": "Copper kettle", "price_cents": 3500, "stock": 20},
    "cursed-lamp": {
        "name": "Lamp the warehouse cannot ship",
        "price_cents": 9900,
        "stock": 1000,
        "broken": True,
    },
}
#: Share of the orders per product.
MIX = {"tea": 0.5, "mug": 0.2, "kettle": 0.23, "cursed-lamp": 0.07}


def order_lines(n: int, rng: random.Random) -> list[OrderLine]:
    lines = [
        OrderLine(sku, qty=rng.choice((1, 1, 2)) if sku in ("tea", "mug") else 1)
        for sku, share in MIX.items()
        for _ in range(round(n * share))
    ]
    rng.shuffle(lines)
    return lines


def summary(data: dict[str, Any], placed: int, seconds: float, drain: float) -> Table:
    status = data["by_status"]
    table = Table("", "count", title="The shop after the demo")
    table.add_row("orders placed", str(placed))
    table.add_row("confirmed", str(status["confirmed"]))
    table.add_row("rejected for stock", str(status["rejected"]))
    table.add_row("compensated (cancelled, stock back, refunded)", str(data["compensations"]))
    table.add_row("refunds", str(data["refunds"]))
    table.add_row("SMS sent", str(data["sms_sent"]))
    table.add_row("still processing", str(status["pending"] + status["reserved"]))
    table.add_row("placing took", f"{seconds:.1f} s ({placed / seconds:.0f} orders/s)")
    table.add_row("processing finished after", f"{drain:.1f} s more")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description="Place a few hundred orders on the shop.")
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    base = args.base.rstrip("/")
    running = answers(base)
    if not running:
        console.print(f"No shop at {base}: starting `burrow up examples.shop.app:app` for the demo")
    with shop_server(base, start=not running):
        console.print(f"Dashboard: {base}/ui/   orders: {base}/docs#/shop")
        set_products(base, PRODUCTS)
        since = time.time()
        lines = order_lines(args.orders, random.Random(7))
        started = time.monotonic()
        ids = asyncio.run(place_orders(base, lines, concurrency=16))
        placed = time.monotonic() - started
        data = wait_drained(base, since, len(ids), timeout=300)
        drain = time.monotonic() - started - placed
    console.print(summary(data, len(ids), placed, drain))
    stock = Table("product", "initial", "stock", "sold", "stock + sold = initial")
    for p in data["products"]:
        if p["sku"] in PRODUCTS:
            ok = "yes" if p["consistent"] else "[red]NO[/red]"
            stock.add_row(p["sku"], str(p["initial_stock"]), str(p["stock"]), str(p["sold"]), ok)
    console.print(stock)
    if running:
        console.print(f"One order's story, rebuilt from its events: {base}/orders/{ids[0]}/history")


if __name__ == "__main__":
    main()
