"""Events on the real RabbitMQ and Redis: exchanges of every type, shared and broadcast
subscribers, and the task guarantees (retries, dead letters, dedupe) per subscriber."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from burrow import (
    BrokerError,
    Burrow,
    Exchange,
    TaskContext,
    TaskNotFound,
    TaskStatus,
    UnknownExchange,
)
from tests.conftest import eventually, running_worker

pytestmark = pytest.mark.integration


class Order(BaseModel):
    order_id: int


async def settle() -> None:
    """Give stray duplicates a moment to show up before asserting 'exactly once'."""
    await asyncio.sleep(0.5)


async def test_fanout_reaches_three_subscribers_once_each(make_app: Callable[..., Burrow]) -> None:
    """Every event on a fanout exchange reaches each of three subscribers exactly once, and
    each subscriber keeps its own record of it."""
    app = make_app()
    logs = Exchange("logs", "fanout")
    seen: dict[str, list[int]] = {"a": [], "b": [], "c": []}

    def collect(name: str) -> Callable[[Order], Any]:
        async def handler(event: Order) -> None:
            seen[name].append(event.order_id)

        return handler

    for name in seen:
        app.subscriber(logs, queue=f"logs-{name}", name=name)(collect(name))

    async with running_worker(app):
        ids = [await app.publish(logs, "", {"order_id": i}) for i in range(5)]
        await eventually(lambda: all(len(v) == 5 for v in seen.values()), timeout=10, what="fanout")
        await settle()
    assert {k: sorted(v) for k, v in seen.items()} == {k: list(range(5)) for k in seen}
    for name in seen:  # three independent records per event: {event id}:{subscriber}
        record = await app.get(f"{ids[0]}:{name}")
        assert record.status is TaskStatus.SUCCEEDED
        assert record.name == name


async def test_direct_routing_by_severity(make_app: Callable[..., Burrow]) -> None:
    """A direct exchange delivers an event only to subscribers bound to its exact key."""
    app = make_app()
    direct = Exchange("direct_logs", "direct")
    got: dict[str, list[str]] = {"errors": [], "rest": []}

    @app.subscriber(direct, "error", queue="errors")
    async def errors(p: dict[str, Any]) -> None:
        got["errors"].append(p["msg"])

    @app.subscriber(direct, ["info", "warning"], queue="rest")
    async def rest(p: dict[str, Any]) -> None:
        got["rest"].append(p["msg"])

    async with running_worker(app):
        for severity in ("info", "error", "warning", "debug", "error"):
            await app.publish(direct, severity, {"msg": severity})
        await eventually(
            lambda: len(got["errors"]) == 2 and len(got["rest"]) == 2, timeout=10, what="direct"
        )
        await settle()
    assert got == {"errors": ["error", "error"], "rest": ["info", "warning"]}


async def test_topic_patterns_on_app_service_level_keys(make_app: Callable[..., Burrow]) -> None:
    """Topic bindings match word by word: ``*`` is one word, ``#`` zero or more, so
    ``*.error`` matches two-word keys only while ``#.debug`` matches any depth."""
    app = make_app()
    topic = Exchange("log_topic", "topic")
    got: dict[str, set[str]] = {"star_error": set(), "web_auth": set(), "any_debug": set()}

    def record(name: str) -> Callable[[dict[str, Any], TaskContext], Any]:
        async def handler(p: dict[str, Any], ctx: TaskContext) -> None:
            got[name].add(p["key"])

        return handler

    app.subscriber(topic, "*.error", queue="star-error", name="star_error")(record("star_error"))
    app.subscriber(topic, "web.auth.*", queue="web-auth", name="web_auth")(record("web_auth"))
    app.subscriber(topic, "#.debug", queue="any-debug", name="any_debug")(record("any_debug"))
    keys = [
        "web.auth.error",
        "web.auth.debug",
        "db.error",
        "app.db.debug",
        "debug",
        "app.billing.info",
        "web.auth",
    ]
    expected = {
        "star_error": {"db.error"},
        "web_auth": {"web.auth.error", "web.auth.debug"},
        "any_debug": {"web.auth.debug", "app.db.debug", "debug"},
    }
    async with running_worker(app):
        for key in keys:
            await app.publish(topic, key, {"key": key})
        await eventually(lambda: got == expected, timeout=10, what="topic routing")
        await settle()
    assert got == expected


async def test_headers_exchange_all_and_any(make_app: Callable[..., Burrow]) -> None:
    """A headers binding with x-match all needs every header to match, with any one."""
    app = make_app()
    hx = Exchange("documents", "headers")
    got: dict[str, list[int]] = {"all": [], "any": []}

    @app.subscriber(hx, {"format": "pdf", "kind": "report"}, queue="pdf-reports")
    async def all_of(p: dict[str, int]) -> None:
        got["all"].append(p["n"])

    @app.subscriber(hx, {"format": "pdf", "kind": "log"}, queue="pdf-or-log", headers_match="any")
    async def any_of(p: dict[str, int]) -> None:
        got["any"].append(p["n"])

    cases = [
        ({"format": "pdf", "kind": "report"}, 1),  # all + any
        ({"format": "pdf"}, 2),  # any
        ({"kind": "log"}, 3),  # any
        ({"format": "zip", "kind": "report"}, 4),  # neither
    ]
    async with running_worker(app):
        for headers, n in cases:
            await app.publish(hx, "", {"n": n}, headers=headers)
        await eventually(
            lambda: len(got["all"]) == 1 and len(got["any"]) == 3, timeout=10, what="headers"
        )
        await settle()
    assert got["all"] == [1]
    assert sorted(got["any"]) == [1, 2, 3]


def _register_pair(app: Burrow, exchange: Exchange, seen: Counter[str], worker: str) -> None:
    @app.subscriber(exchange, "job.*", queue="shared-jobs", name="shared")
    async def shared(p: dict[str, int]) -> None:
        await asyncio.sleep(0.02)
        seen[f"shared:{worker}"] += 1
        seen[f"shared-event:{p['n']}"] += 1

    @app.subscriber(exchange, "job.*", name="everyone")
    async def everyone(p: dict[str, int]) -> None:
        seen[f"everyone:{worker}"] += 1


async def test_shared_queue_splits_work_and_broadcast_reaches_all(
    make_app: Callable[..., Burrow],
) -> None:
    """Two workers split a shared-queue subscriber's events (each runs once), while a
    subscriber without a queue gets every event in each worker."""
    exchange = Exchange("jobs", "topic")
    seen: Counter[str] = Counter()
    app1, app2, producer = make_app(), make_app(), make_app()
    _register_pair(app1, exchange, seen, "w1")
    _register_pair(app2, exchange, seen, "w2")
    n = 40
    async with running_worker(app1, concurrency=2), running_worker(app2, concurrency=2):
        for i in range(n):
            await producer.publish(exchange, "job.created", {"n": i})
        await eventually(
            lambda: (
                seen["shared:w1"] + seen["shared:w2"] == n
                and seen["everyone:w1"] == n
                and seen["everyone:w2"] == n
            ),
            timeout=15,
            what="shared and broadcast deliveries",
        )
        await settle()
    assert seen["shared:w1"] > 0
    assert seen["shared:w2"] > 0
    assert all(seen[f"shared-event:{i}"] == 1 for i in range(n))
    assert seen["everyone:w1"] == seen["everyone:w2"] == n


async def test_subscriber_retries_then_succeeds(make_app: Callable[..., Burrow]) -> None:
    """A failing subscriber is retried with backoff through the delay tiers until it works."""
    app = make_app()
    ex = Exchange("orders", "topic")
    calls: list[int] = []

    @app.subscriber(ex, "order.created", queue="flaky", max_retries=3)
    async def flaky(event: Order, ctx: TaskContext) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError("not yet")
        return "ok"

    async with running_worker(app):
        event_id = await app.publish(ex, "order.created", {"order_id": 7})
        record = await app.wait(f"{event_id}:flaky", timeout=15)
    assert record.status is TaskStatus.SUCCEEDED
    assert record.attempts == 3
    assert record.result == "ok"
    assert calls == [1, 2, 3]


async def test_wait_on_an_event_run_waits_for_its_record(make_app: Callable[..., Burrow]) -> None:
    """``app.wait("{event_id}:{subscriber}")`` called before any worker has received the
    event waits for the record to appear (the race a publish-then-wait caller always
    runs), while ``missing_ok=False`` still answers ``TaskNotFound`` at once."""
    app = make_app()
    ex = Exchange("orders", "topic")

    @app.subscriber(ex, "order.created", queue="later")
    async def later(event: Order) -> int:
        return event.order_id

    async with running_worker(app):
        pass  # declares and binds the shared queue, then stops consuming
    event_id = await app.publish(ex, "order.created", {"order_id": 11})
    with pytest.raises(TaskNotFound):
        await app.wait(f"{event_id}:later", timeout=5, missing_ok=False)
    waiting = asyncio.create_task(app.wait(f"{event_id}:later", timeout=30))
    await asyncio.sleep(1.0)
    assert not waiting.done(), "wait gave up before the event was received"
    async with running_worker(app):
        record = await waiting
    assert record.status is TaskStatus.SUCCEEDED
    assert record.result == 11


async def test_subscriber_exhaustion_dead_letters_with_reason(
    make_app: Callable[..., Burrow],
) -> None:
    """After its last retry an event goes to the subscriber queue's DLQ with the reason,
    for a shared queue and for a broadcast subscriber alike."""
    app = make_app()
    ex = Exchange("orders", "topic")

    @app.subscriber(ex, "order.*", queue="doomed", max_retries=1)
    async def doomed(event: Order) -> None:
        raise ValueError(f"cannot take order {event.order_id}")

    @app.subscriber(ex, "order.*", max_retries=0)
    async def doomed_everywhere(event: Order) -> None:
        raise ValueError("never")

    async with running_worker(app):
        event_id = await app.publish(ex, "order.created", {"order_id": 9})
        record = await app.wait(f"{event_id}:doomed", timeout=15)
        assert record.status is TaskStatus.FAILED
        assert record.attempts == 2
        dead = await eventually(lambda: app.dead_letters("doomed"), timeout=10, what="dead letter")
        broadcast_dead = await eventually(
            lambda: app.dead_letters("sub.doomed_everywhere"), timeout=10, what="broadcast dlq"
        )
    assert dead[0].task_id == f"{event_id}:doomed"
    assert dead[0].reason == "max_retries"
    assert dead[0].error is not None
    assert "cannot take order 9" in dead[0].error["message"]
    assert dead[0].body == b'{"order_id":9}'
    assert broadcast_dead[0].reason == "max_retries"
    assert broadcast_dead[0].queue == "sub.doomed_everywhere"


async def test_redelivered_event_is_not_run_again(make_app: Callable[..., Burrow]) -> None:
    """An event a subscriber already handled (same message_id again) is acked unrun."""
    app = make_app()
    ex = Exchange("orders", "direct")
    runs: list[int] = []

    @app.subscriber(ex, "paid", queue="once")
    async def once(event: Order) -> None:
        runs.append(event.order_id)

    async with running_worker(app) as worker:
        first = await app.publish(ex, "paid", {"order_id": 1}, message_id="evt-1")
        await app.wait(f"{first}:once", timeout=10)
        await app.publish(ex, "paid", {"order_id": 1}, message_id="evt-1")
        await eventually(lambda: worker.statistics().deduplicated == 1, timeout=10, what="dedupe")
    assert runs == [1]


async def test_invalid_event_payload_is_dead_lettered(make_app: Callable[..., Burrow]) -> None:
    """An event its subscriber's model refuses dies at once (validation_error, no retry)."""
    app = make_app()
    ex = Exchange("orders", "topic")
    runs: list[Order] = []

    @app.subscriber(ex, "order.#", queue="strict", max_retries=5)
    async def strict(event: Order) -> None:
        runs.append(event)

    async with running_worker(app):
        event_id = await app.publish(ex, "order.created", {"order_id": "not a number"})
        record = await app.wait(f"{event_id}:strict", timeout=10)
        dead = await eventually(lambda: app.dead_letters("strict"), timeout=10, what="dlq")
    assert record.status is TaskStatus.FAILED
    assert record.attempts == 1
    assert dead[0].reason == "validation_error"
    assert runs == []


async def test_sync_subscriber_runs_in_the_thread_pool(make_app: Callable[..., Burrow]) -> None:
    """A plain ``def`` subscriber works like an async one."""
    app = make_app()
    ex = Exchange("orders", "fanout")
    got: list[int] = []

    @app.subscriber(ex, queue="sync-sub")
    def sync_sub(event: Order) -> int:
        got.append(event.order_id)
        return event.order_id * 2

    async with running_worker(app):
        event_id = await app.publish(ex, payload=Order(order_id=21))
        record = await app.wait(f"{event_id}:sync_sub", timeout=10)
    assert record.result == 42
    assert got == [21]


async def test_unroutable_event_is_not_an_error_and_unknown_exchange_is(
    make_app: Callable[..., Burrow],
) -> None:
    """An event nobody is bound for is confirmed and dropped; a name nobody declared fails."""
    app = make_app()
    ex = Exchange("quiet", "topic")

    @app.subscriber(ex, "only.this", queue="quiet-sub")
    async def quiet_sub(p: Any) -> None: ...

    assert await app.publish(ex, "nobody.listens", {"x": 1})
    assert await app.publish("quiet", "nobody.listens", {"x": 2})  # known by name
    with pytest.raises(UnknownExchange):
        await app.publish("never-declared", "x", {})


def _close_connections(name: str) -> int:
    """Close every broker connection named ``name`` from the server side; how many."""
    listing = subprocess.run(  # RabbitMQ 3.10 has no user_provided_name column
        ["rabbitmqctl", "-q", "list_connections", "client_properties", "pid"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    marker = f'{{"connection_name","{name}"}}'
    pids = [line.rsplit("\t", 1)[1] for line in listing.splitlines() if marker in line]
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "-q", "close_connection", pid, "test: cut"],
            capture_output=True,
            check=True,
            timeout=30,
        )
    return len(pids)


async def test_subscribers_are_bound_again_after_a_reconnect(
    make_app: Callable[..., Burrow],
) -> None:
    """After the broker closes the worker's connection, the shared queue's binding and the
    broadcast subscriber's exclusive queue (deleted with the connection) come back, and
    new events reach both subscribers."""
    app = make_app()
    ex = Exchange("recon", "topic")
    got: dict[str, list[int]] = {"shared": [], "broadcast": []}

    @app.subscriber(ex, "tick", queue="recon-shared")
    async def shared(p: dict[str, int]) -> None:
        got["shared"].append(p["n"])

    @app.subscriber(ex, "tick")
    async def broadcast(p: dict[str, int]) -> None:
        got["broadcast"].append(p["n"])

    async with running_worker(app):
        await app.publish(ex, "tick", {"n": 0})
        await eventually(lambda: all(got.values()), timeout=10, what="before the cut")
        assert await asyncio.to_thread(_close_connections, f"burrow:{app.names.namespace}") >= 1
        n = 0

        async def tick_arrives() -> bool:
            nonlocal n
            n += 1
            with contextlib.suppress(BrokerError):  # still reconnecting
                await app.publish(ex, "tick", {"n": n})
            await asyncio.sleep(0.3)
            return all(any(v > 0 for v in values) for values in got.values())

        await eventually(tick_arrives, timeout=30, what="events after the reconnect")
