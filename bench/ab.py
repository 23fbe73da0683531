"""``python -m bench.ab``: A/B drains of burrow worker builds against the raw baseline.

Each round fills the queue and drains it with the raw aio-pika consumer, then once per
variant with ``burrow worker`` (the same steps as ``python -m bench``), the variants' order
rotating from round to round so none always runs first. A variant is a name and
environment overrides for its worker process, e.g.::

    python -m bench.ab --rounds 3 --queue-type classic base=PYTHONPATH:/path/to/old/src new=
    python -m bench.ab deep=BURROW_PREFETCH:256 shallow=BURROW_PREFETCH:64

``PYTHONPATH`` pointing at another checkout's ``src`` runs that build of burrow (it comes
before the installed one). Prints each round's rates and ratios, then medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
from typing import cast

import uvloop
from rich.progress import Progress

from bench.harness import Bench, Config, new_namespace
from burrow.config import QueueType, Settings


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``name=KEY:value,KEY:value`` (no overrides after ``=``: the environment as is)."""
    name, sep, spec = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected name=KEY:value,...")
    env: dict[str, str] = {}
    for item in filter(None, spec.split(",")):
        key, colon, value = item.partition(":")
        if not colon:
            raise argparse.ArgumentTypeError(f"{item!r}: expected KEY:value")
        env[key] = value
    return name, env


async def run(cfg: Config, variants: dict[str, dict[str, str]]) -> None:
    qt = cfg.queue_types[0]
    bench = Bench(cfg, Progress())
    rates: dict[str, list[float]] = {"raw": [], **{k: [] for k in variants}}
    cpu: dict[str, list[float]] = {k: [] for k in rates}
    try:
        await bench.setup()
        for r in range(cfg.rounds):
            # A raw drain can leave a few messages behind (seen on quorum queues: its N
            # acks may include redeliveries): start each round on an empty queue, and say so.
            if left := await bench.empty_raw_queue(qt):
                print(f"raw queue held {left} messages from the previous round; purged")
            await bench.raw_enqueue(qt, r)
            await asyncio.sleep(1)
            drain = await bench.raw_drain(qt, r)
            rates["raw"].append(drain.rate)
            cpu["raw"].append(drain.cpu_per_1000)
            items = list(variants.items())
            for name, env in items[r % len(items) :] + items[: r % len(items)]:
                await asyncio.sleep(1)
                _, ids = await bench.burrow_enqueue(qt, r)
                await asyncio.sleep(1)
                saved = dict(os.environ)
                os.environ.update(env)
                try:
                    drain = await bench.burrow_drain(qt, r, ids)
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
                await bench.reset_round(qt, ids)
                rates[name].append(drain.rate)
                cpu[name].append(drain.cpu_per_1000)
            raw = rates["raw"][-1]
            print(
                f"round {r + 1}: "
                + "  ".join(f"{k} {v[-1]:,.0f}/s ({v[-1] / raw:.2f}x)" for k, v in rates.items()),
                flush=True,
            )
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(bench.cleanup())
    for name, values in rates.items():
        ratios = [v / raw for v, raw in zip(values, rates["raw"], strict=True)]
        print(
            f"{name:10s} drain median {statistics.median(values):7,.0f}/s  "
            f"ratio median {statistics.median(ratios):.2f}  "
            f"CPU s/1000 {statistics.median(cpu[name]):.3f}  "
            f"ratios {[round(x, 2) for x in ratios]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("variants", nargs="+", type=parse_variant, help="name=KEY:value,...")
    parser.add_argument("--n", type=int, default=20_000, help="tasks per drain (20000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    parser.add_argument("--queue-type", default="quorum", choices=("quorum", "classic"))
    args = parser.parse_args()
    settings = Settings()
    cfg = Config(
        n=args.n,
        rounds=args.rounds,
        queue_types=(cast(QueueType, args.queue_type),),
        amqp_url=os.environ.get("BURROW_AMQP_URL", settings.amqp_url),
        redis_url=os.environ.get("BURROW_REDIS_URL", settings.redis_url),
        namespace=new_namespace(),
    )
    uvloop.run(run(cfg, dict(args.variants)))


if __name__ == "__main__":
    main()
