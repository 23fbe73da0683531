"""Simple queue ("Hello World!"): one producer, one queue, one consumer.

RabbitMQ tutorial 1: the producer sends messages to a named queue (through the default
exchange) and a consumer takes them from it. In burrow the consumer is a task handler:

* ``@app.task(queue="hello")`` registers the consumer; the worker declares the durable
  queue ``{ns}.hello`` and consumes it.
* ``app.submit("hello", payload)`` is the producer: it publishes a persistent message to
  that queue and returns once RabbitMQ confirmed it.
* The worker acks a message only after the handler's outcome is recorded in Redis, where
  ``app.wait(task_id)`` reads it.

Run it: ``python -m examples.patterns.simple_queue``
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from examples.patterns._support import console, make_app, running

app = make_app("simple_queue")


class Greeting(BaseModel):
    """The message body: JSON, validated against this model before the handler runs."""

    text: str


@app.task(queue="hello")
async def hello(greeting: Greeting) -> str:
    """The consumer: runs in a worker, once per message."""
    console.print(f"  [cyan]consumer[/] received {greeting.text!r}")
    return greeting.text.upper()  # the result, stored with the task's record


async def main() -> None:
    async with running(app):  # a worker in this process (`burrow worker` runs one on its own)
        console.print("[bold]producer[/] sends 3 messages to the queue 'hello'")
        handles = [await app.submit("hello", {"text": f"Hello World! #{i}"}) for i in (1, 2, 3)]
        for handle in handles:
            record = await app.wait(handle.id, timeout=10)  # the outcome, from Redis
            console.print(f"  task {handle.id[:8]}: {record.status}, result {record.result!r}")


if __name__ == "__main__":
    asyncio.run(main())
