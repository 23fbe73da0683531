"""The raw baseline consumer: one process, uvloop, prefetch 256, manual acks.

Run as ``python -m bench.raw_consumer --queue Q --n N``; drains ``N`` messages, decoding
each JSON body, then prints one JSON line: ``{"count", "first", "last"}`` where ``first`` is
the wall time the first message arrived and ``last`` the time the last one was acked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import aio_pika
import orjson
import uvloop
from aio_pika.abc import AbstractIncomingMessage


async def drain(url: str, queue_name: str, n: int, prefetch: int) -> dict[str, float | int]:
    connection = await aio_pika.connect(url)
    done = asyncio.Event()
    first = 0.0
    last = 0.0
    count = 0
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(queue_name, ensure=True)

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal first, last, count
            if not first:
                first = time.time()
            orjson.loads(message.body)
            await message.ack()
            count += 1
            if count >= n:
                last = time.time()
                done.set()

        await queue.consume(on_message, no_ack=False)
        await done.wait()
    finally:
        await connection.close()
    return {"count": count, "first": first, "last": last}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--prefetch", type=int, default=256)
    args = parser.parse_args()
    result = uvloop.run(drain(args.url, args.queue, args.n, args.prefetch))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
