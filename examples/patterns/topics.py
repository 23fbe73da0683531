"""Topics: bind with patterns over dot-separated words (a topic exchange).

RabbitMQ tutorial 5: routing keys are words separated by dots, here
``<speed>.<colour>.<species>``. A binding key is a pattern over those words: ``*`` stands
for exactly one word and ``#`` for zero or more. A message goes to every queue with at
least one matching binding, once per queue even when several of its bindings match.

burrow: ``Exchange("topic_animals", "topic")`` and subscribers bound with patterns (a list
binds one queue with several). The subscribers here are the tutorial's Q1 and Q2:

* ``orange_ones``: ``*.orange.*``, every orange animal;
* ``rabbits_or_lazy``: ``*.*.rabbit`` and ``lazy.#``, every rabbit, and everything lazy.

Run it: ``python -m examples.patterns.topics``
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from pydantic import BaseModel

from burrow import Exchange
from examples.patterns._support import console, make_app, running, show_routes, until_quiet

app = make_app("topics")
animals = Exchange("topic_animals", "topic")
received: dict[str, list[str]] = defaultdict(list)  # subscriber -> routing keys it got


class Sighting(BaseModel):
    key: str  # the routing key, repeated in the body so the handler can show it


@app.subscriber(animals, "*.orange.*", queue="orange-ones")
async def orange_ones(sighting: Sighting) -> None:
    received["orange_ones"].append(sighting.key)


@app.subscriber(animals, ["*.*.rabbit", "lazy.#"], queue="rabbits-or-lazy")
async def rabbits_or_lazy(sighting: Sighting) -> None:
    received["rabbits_or_lazy"].append(sighting.key)


KEYS = [
    "quick.orange.rabbit",  # both
    "lazy.orange.elephant",  # both
    "quick.orange.fox",  # orange_ones
    "lazy.brown.fox",  # rabbits_or_lazy
    "lazy.pink.rabbit",  # rabbits_or_lazy, once: it matches both of its bindings
    "quick.brown.fox",  # nobody
    "orange",  # nobody: one word, and *.orange.* needs exactly three
    "quick.orange.new.rabbit",  # nobody: four words
    "lazy.orange.new.rabbit",  # rabbits_or_lazy: lazy.# takes any number of words
]


async def main() -> None:
    async with running(app) as workers:
        console.print(f"[bold]producer[/] publishes {len(KEYS)} sightings to the topic exchange")
        for key in KEYS:
            await app.publish(animals, key, {"key": key})
        await until_quiet(workers)
    console.print("[bold]Routes[/] (orange_ones: *.orange.*; rabbits_or_lazy: *.*.rabbit, lazy.#):")
    show_routes(KEYS, received)


if __name__ == "__main__":
    asyncio.run(main())
