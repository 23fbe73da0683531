"""The app's queues by kind (``Operations.app_queues``): task queues, shared and broadcast
subscriber queues and RPC request queues, and which of them have dead letters."""

from __future__ import annotations

from typing import Any

from burrow import Burrow, Exchange

EVENTS = Exchange("shop.events", "topic")


def shop() -> Burrow:
    app = Burrow(namespace="unit")

    @app.task(queue="shop.fulfilment")
    async def fulfil_order(p: dict[str, Any]) -> None: ...

    @app.task(queue="shop.fulfilment")
    async def cancel_order(p: dict[str, Any]) -> None: ...

    @app.subscriber(EVENTS, "order.#", queue="shop.audit")
    async def audit_trail(p: dict[str, Any]) -> None: ...

    @app.subscriber(EVENTS, "order.created")
    async def warm_cache(p: dict[str, Any]) -> None: ...

    @app.rpc("price")
    async def price(p: dict[str, Any]) -> int:
        return 1

    return app


def test_every_queue_is_listed_with_its_kind_and_handlers() -> None:
    """Task queues, a shared subscriber queue, a broadcast subscriber and an RPC queue are
    all listed, each with what consumes it."""
    found = [(q.name, q.kind.value, q.handlers) for q in shop().app_queues()]
    assert found == [
        ("shop.fulfilment", "task", ("cancel_order", "fulfil_order")),
        ("shop.audit", "subscriber", ("audit_trail",)),
        ("sub.warm_cache", "broadcast", ("warm_cache",)),
        ("rpc.price", "rpc", ("price",)),
    ]


def test_dead_letter_queues_are_all_but_rpc_queues() -> None:
    """Subscriber queues have dead letters like task queues; RPC requests never do."""
    app = shop()
    assert app.dead_letter_queues() == ["shop.fulfilment", "shop.audit", "sub.warm_cache"]
    assert app.all_queues() == [*app.dead_letter_queues(), "rpc.price"]
    assert app.all_queues(["x"]) == ["x"]
    rpc = app.app_queue("rpc.price")
    assert rpc is not None
    assert not rpc.has_dead_letters
    assert app.app_queue("nope") is None


def test_an_app_without_handlers_has_the_default_queue() -> None:
    """An app with no task, subscriber or RPC handler still answers for ``default``."""
    assert [(q.name, q.kind.value) for q in Burrow(namespace="unit").app_queues()] == [
        ("default", "task")
    ]
