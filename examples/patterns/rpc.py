"""RPC: call a function on a worker and wait for its reply (request/reply).

RabbitMQ tutorial 6: the client publishes a request to the server's queue with two
properties: ``reply_to`` (where to answer) and ``correlation_id`` (which request an answer
belongs to). The server runs the function and publishes the result to ``reply_to`` with
the same ``correlation_id``.

burrow:

* ``@app.rpc("fib")`` is the server: the worker consumes ``{ns}.rpc.fib`` and replies with
  the handler's return value.
* ``await app.call("fib", payload, timeout=...)`` is the client: it answers to Direct
  Reply-To (``amq.rabbitmq.reply-to``, no reply queue to declare) and matches replies by
  correlation id, so many calls can be in flight at once on one channel.
* A handler's exception comes back at once as ``RpcError(type, message)``; a call without
  a reply in time raises ``RpcTimeout`` (a ``TimeoutError``).

Run it: ``python -m examples.patterns.rpc``
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from burrow import RpcError, RpcTimeout
from examples.patterns._support import console, make_app, running

app = make_app("rpc")


class FibRequest(BaseModel):
    n: int


@app.rpc("fib")
def fib(request: FibRequest) -> int:
    """A sync handler: runs in the worker's thread pool."""
    if request.n < 0:
        raise ValueError(f"fib is not defined for {request.n}")
    a, b = 0, 1
    for _ in range(request.n):
        a, b = b, a + b
    return a


class Nap(BaseModel):
    seconds: float


@app.rpc("nap")
async def nap(request: Nap) -> str:
    await asyncio.sleep(request.seconds)
    return "awake"


async def main() -> None:
    async with running(app):
        # Three calls in flight at once; each reply finds its call by correlation id.
        numbers = [10, 30, 90]
        console.print(f"[bold]client[/] calls fib for {numbers} at once, then two that fail")
        replies = await asyncio.gather(*(app.call("fib", {"n": n}, timeout=5) for n in numbers))
        for n, reply in zip(numbers, replies, strict=True):
            console.print(f"  fib({n}) = {reply}")

        try:  # the handler raises: the caller gets its error, not a timeout
            await app.call("fib", {"n": -1}, timeout=5)
        except RpcError as exc:
            console.print(f"  fib(-1) → RpcError {exc.type}: {exc.message}")

        try:  # no reply within the timeout (the handler still runs to its end)
            await app.call("nap", {"seconds": 1.0}, timeout=0.3)
        except RpcTimeout as exc:
            console.print(f"  nap(1.0 s) with timeout=0.3 → RpcTimeout: {exc}")


if __name__ == "__main__":
    asyncio.run(main())
