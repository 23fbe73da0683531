"""``python -m bench``: run the benchmark (see ``docs/performance.md``)."""

from __future__ import annotations

import argparse
import os
from typing import cast

import uvloop

from bench.harness import Config, main_async, new_namespace
from burrow.config import QueueType, Settings


def parse(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="tasks per phase (20000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument(
        "--queue-types", default="quorum,classic", help="comma-separated: quorum,classic"
    )
    args = parser.parse_args(argv)
    types = tuple(t.strip() for t in args.queue_types.split(",") if t.strip())
    for t in types:
        if t not in ("quorum", "classic"):
            parser.error(f"unknown queue type {t!r}")
    if args.n < 1 or args.rounds < 1:
        parser.error("--n and --rounds must be positive")
    settings = Settings()
    return Config(
        n=args.n,
        rounds=args.rounds,
        queue_types=cast(tuple[QueueType, ...], types),
        amqp_url=os.environ.get("BURROW_AMQP_URL", settings.amqp_url),
        redis_url=os.environ.get("BURROW_REDIS_URL", settings.redis_url),
        namespace=new_namespace(),
    )


def main() -> None:
    raise SystemExit(uvloop.run(main_async(parse())))


if __name__ == "__main__":
    main()
