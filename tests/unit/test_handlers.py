"""Pure parts of events and RPC: names, bindings, dedupe ids, reply_to checks, registry."""

from __future__ import annotations

from typing import Any

import pytest

from burrow import Burrow, ConfigurationError, Exchange, Settings, TaskDefinitionError
from burrow.broker.topology import Names, broadcast_queue, event_exchange, rpc_queue
from burrow.tasks.handlers import event_task_id, reply_to_allowed, subscriber_binding


def test_names_of_exchanges_and_rpc_queues() -> None:
    """Exchange("shop.events") is {ns}.shop.events, RPC name is {ns}.rpc.{name}."""
    names = Names("burrow")
    assert event_exchange(names, Exchange("shop.events", "topic")).name == "burrow.shop.events"
    assert event_exchange(names, Exchange("shop.events", "topic")).durable
    assert rpc_queue(names, "quote").name == "burrow.rpc.quote"
    assert Names("").rpc_queue("quote") == "rpc.quote"
    assert Names("").exchange("logs") == "logs"


def test_broadcast_queue_is_exclusive_per_worker() -> None:
    """A subscriber without queue= gets an exclusive, auto-delete classic queue per worker."""
    spec = broadcast_queue(Names("ns"), "audit", "host-1-abc")
    assert spec.name == "ns.sub.audit.host-1-abc"
    assert spec.exclusive
    assert spec.auto_delete
    assert spec.arguments == {"x-queue-type": "classic"}


@pytest.mark.parametrize(
    ("name", "kind"), [("x", "nope"), ("", "topic"), ("amq.direct", "direct"), ("a b", "fanout")]
)
def test_exchange_refuses_bad_types_and_names(name: str, kind: Any) -> None:
    """Exchange checks its type and name at construction."""
    with pytest.raises(ConfigurationError):
        Exchange(name, kind)


def test_bindings_per_exchange_type() -> None:
    """Routing keys for direct/topic, header arguments with x-match for headers, nothing
    for fanout."""
    assert subscriber_binding(Exchange("e", "topic"), "a.*", "all") == (("a.*",), {})
    assert subscriber_binding(Exchange("e", "direct"), ["x", "y", "x"], "all") == (("x", "y"), {})
    assert subscriber_binding(Exchange("e", "fanout"), "ignored", "all") == (("",), {})
    assert subscriber_binding(Exchange("e", "headers"), {"f": "pdf"}, "any") == (
        ("",),
        {"f": "pdf", "x-match": "any"},
    )
    explicit = {"f": "pdf", "x-match": "all"}
    assert subscriber_binding(Exchange("e", "headers"), explicit, "any")[1]["x-match"] == "all"


@pytest.mark.parametrize(
    ("kind", "binding"),
    [("headers", "a.b"), ("topic", {"a": 1}), ("direct", None), ("topic", []), ("direct", [1])],
)
def test_bindings_that_do_not_fit_are_refused(kind: Any, binding: Any) -> None:
    """A binding of the wrong shape for the exchange type fails at registration."""
    with pytest.raises(TaskDefinitionError):
        subscriber_binding(Exchange("e", kind), binding, "all")


def test_bad_x_match_is_refused() -> None:
    """x-match is all or any."""
    with pytest.raises(TaskDefinitionError):
        subscriber_binding(Exchange("e", "headers"), {"x-match": "most"}, "all")


def test_event_task_id_is_per_subscriber_and_stable_across_copies() -> None:
    """One event gives one id per subscriber; a copy carrying that id keeps it."""
    assert event_task_id("evt", "inventory") == "evt:inventory"
    assert event_task_id("evt", "audit") == "evt:audit"
    assert event_task_id("evt:inventory", "inventory") == "evt:inventory"
    assert event_task_id(None, "inventory") is None
    assert event_task_id("", "inventory") is None


@pytest.mark.parametrize(
    ("reply_to", "ok"),
    [
        ("amq.rabbitmq.reply-to", True),
        ("amq.rabbitmq.reply-to.g1hkABCD", True),
        ("amq.gen-Xa2f", True),
        ("burrow.default", False),
        ("", False),
        (None, False),
    ],
)
def test_reply_to_validation(reply_to: str | None, ok: bool) -> None:
    """Replies go only to Direct Reply-To addresses or server-named queues."""
    assert reply_to_allowed(reply_to) is ok


def test_registry_refuses_duplicates() -> None:
    """Subscriber names, shared queues and RPC names are each taken once."""
    app = Burrow(settings=Settings(namespace="unit"))
    ex = Exchange("e", "topic")

    @app.subscriber(ex, "a", queue="q")
    async def one(p: Any) -> None: ...

    with pytest.raises(TaskDefinitionError, match="already used"):

        @app.subscriber(ex, "b", queue="q")
        async def two(p: Any) -> None: ...

    with pytest.raises(TaskDefinitionError, match="already registered"):
        app.subscriber(ex, "c", name="one")(one)

    @app.rpc()
    async def quote(p: Any) -> None: ...

    with pytest.raises(TaskDefinitionError):
        app.rpc("quote")(quote)
    assert [s.name for s in app.handlers.subscribers()] == ["one"]
    assert app.handlers.exchanges() == {"e": ex}


def test_worker_selects_handlers_and_refuses_clashing_queues() -> None:
    """Worker(subscribers=, rpc=) select by name; a subscriber queue that is also a task
    queue is refused."""
    from burrow.worker.runtime import Worker

    app = Burrow(settings=Settings(namespace="unit"))
    ex = Exchange("e", "fanout")

    @app.subscriber(ex, queue="events")
    async def sub(p: Any) -> None: ...

    @app.rpc()
    async def quote(p: Any) -> None: ...

    worker = Worker(app, rpc=[])
    assert [s.name for s in worker.subscribers] == ["sub"]
    assert worker.rpc_handlers == []
    assert worker.queues == ()  # no tasks: no default queue either
    with pytest.raises(ConfigurationError, match="unknown"):
        Worker(app, subscribers=["missing"])

    @app.task(queue="events")
    async def clash(p: Any) -> None: ...

    with pytest.raises(ConfigurationError, match="both task queues and subscriber queues"):
        Worker(app)
