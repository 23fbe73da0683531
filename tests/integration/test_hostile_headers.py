"""Hostile headers and names on the real RabbitMQ and Redis: what burrow republishes, what a
client may send, and that one bad message never breaks anybody else's."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pika
import pytest

from burrow import Burrow, Exchange, TaskContext, TaskStatus
from burrow.errors import ConfigurationError, UnknownExchange
from burrow.state.redis import NewTask
from burrow.tasks.headers import HeaderRefused
from tests._pika import AMQP_PARAMS
from tests.api.conftest import asgi_client
from tests.conftest import eventually, running_worker

pytestmark = pytest.mark.integration

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def pika_publish(queue: str, body: bytes, **properties: Any) -> None:
    """Publish one persistent message to ``queue`` (default exchange) with plain pika."""
    connection = pika.BlockingConnection(AMQP_PARAMS)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=body,
            properties=pika.BasicProperties(delivery_mode=2, **properties),
            mandatory=True,
        )
    finally:
        connection.close()


async def depth(app: Burrow, queue: str) -> int:
    """Ready messages in the AMQP queue ``queue`` (full name)."""
    stats = await app.broker.queue_stats(queue)
    assert stats is not None, f"{queue} does not exist"
    return stats.messages


async def test_a_cc_header_does_not_make_dead_lettering_loop(
    make_app: Callable[..., Burrow],
) -> None:
    """A foreign message of unknown type whose CC names its own queue and another one is
    dead-lettered exactly once: the dead letter carries no CC, so it lands nowhere else."""
    app = make_app()
    make_app.extra_queues.add("spy")  # type: ignore[attr-defined]

    @app.task
    async def echo(p: dict[str, str]) -> None:
        """Never called: the message names no task."""

    await app.connect(timeout=5)
    await app.declare_queue("spy")
    work, spy, dlq = app.names.queue("default"), app.names.queue("spy"), app.names.dlq("default")
    async with running_worker(app) as worker:
        await asyncio.to_thread(
            pika_publish,
            work,
            b"{}",
            message_id=f"cc-{uuid.uuid4().hex}",
            type="no_such_task",
            content_type="application/json",
            headers={"CC": [work, spy], "x-tenant": "acme"},
        )
        await eventually(lambda: depth(app, dlq), timeout=15, what="the dead letter")
        await asyncio.sleep(2)  # a loop would have made thousands of copies by now
        stats = worker.statistics()
    assert stats.rejected_messages == 1
    assert await depth(app, dlq) == 1
    assert await depth(app, work) == 0
    assert await depth(app, spy) == 1  # the original's own copy, from its publish
    [letter] = await app.broker.peek(dlq, 5)
    headers = letter.headers
    assert "CC" not in headers
    assert headers["x-tenant"] == "acme"
    assert headers["x-burrow-reason"] == "unknown_task"


async def test_a_retry_copy_carries_no_routing_or_broker_headers(
    make_app: Callable[..., Burrow],
) -> None:
    """A task retried after a failure sees, on its second run, its application headers but
    none of the CC, x-match, x-delay or reply_to its producer set; the CC'd queue got only
    the original's copy."""
    app = make_app()
    make_app.extra_queues.add("spy")  # type: ignore[attr-defined]
    seen: list[dict[str, Any]] = []

    @app.task(max_retries=2)
    async def flaky(p: dict[str, str], ctx: TaskContext) -> str:
        seen.append(dict(ctx.headers))
        if len(seen) == 1:
            raise RuntimeError("first run fails")
        return "ok"

    await app.connect(timeout=5)
    await app.declare_queue("spy")
    spy = app.names.queue("spy")
    task_id = f"retry-{uuid.uuid4().hex}"
    hostile = {"CC": [spy], "x-match": "any", "x-delay": 5, "reply_to": "elsewhere"}
    async with running_worker(app):
        await asyncio.to_thread(
            pika_publish,
            app.names.queue("default"),
            b"{}",
            message_id=task_id,
            type="flaky",
            content_type="application/json",
            headers={**hostile, "x-tenant": "acme", "format": "pdf"},
        )

        async def finished() -> Any:
            record = await app.state.get(task_id)
            return record if record is not None and record.terminal else None

        record = await eventually(finished, timeout=20, what="the retried task")
    assert record.status is TaskStatus.SUCCEEDED
    first, second = seen
    assert hostile.keys() <= first.keys()  # the handler sees what the producer sent
    assert not hostile.keys() & second.keys()
    assert second["x-tenant"] == "acme"
    assert second["format"] == "pdf"
    assert second["x-burrow-attempt"] == 2
    assert await depth(app, spy) == 1


async def test_a_foreign_message_id_with_control_characters_is_dead_lettered(
    make_app: Callable[..., Burrow],
) -> None:
    """A message whose message_id holds CR/LF never runs and touches no record: it is
    dead-lettered with reason bad_message_id, keeping its id."""
    app = make_app()
    runs: list[Any] = []

    @app.task
    async def echo(p: dict[str, str]) -> None:
        runs.append(p)

    evil = "evil\r\nLocation: http://attacker.example/"
    dlq = app.names.dlq("default")
    async with running_worker(app):
        await asyncio.to_thread(
            pika_publish,
            app.names.queue("default"),
            b"{}",
            message_id=evil,
            type="echo",
            content_type="application/json",
        )
        await app.connect(timeout=5)
        await eventually(lambda: depth(app, dlq), timeout=15, what="the dead letter")
    [letter] = await app.broker.peek(dlq, 5)
    assert letter.message_id == evil
    assert letter.headers["x-burrow-reason"] == "bad_message_id"
    assert runs == []
    assert await app.state.get(evil) is None


async def test_invalid_traceparents_are_not_adopted(make_app: Callable[..., Burrow]) -> None:
    """A foreign message with a version-ff traceparent and an HTTP submit with an all-zero
    trace id both run under a fresh trace id instead."""
    app = make_app()

    @app.task
    async def echo(p: dict[str, str]) -> str:
        return "ok"

    task_id = f"trace-{uuid.uuid4().hex}"
    zero = f"00-{'0' * 32}-{SPAN}-01"
    async with running_worker(app), asgi_client(app) as client:
        await asyncio.to_thread(
            pika_publish,
            app.names.queue("default"),
            b"{}",
            message_id=task_id,
            type="echo",
            content_type="application/json",
            headers={"traceparent": f"ff-{TRACE}-{SPAN}-01"},
        )
        r = await client.post(
            "/api/v1/tasks/echo", json={"payload": {}}, headers={"traceparent": zero}
        )
        assert r.status_code == 202, r.text
        submitted = r.json()["data"]["id"]

        async def finished(tid: str) -> Any:
            record = await app.state.get(tid)
            return record if record is not None and record.terminal else None

        foreign = await eventually(lambda: finished(task_id), timeout=15, what="foreign")
        over_http = await eventually(lambda: finished(submitted), timeout=15, what="http")
    for record, refused in ((foreign, TRACE), (over_http, "0" * 32)):
        assert record.status is TaskStatus.SUCCEEDED
        assert len(record.trace_id) == 32
        assert record.trace_id != refused


async def test_retry_location_percent_encodes_the_task_id(
    make_app: Callable[..., Burrow],
) -> None:
    """POST /tasks/{id}/retry answers a Location with the id percent-encoded, so an id with
    CR/LF cannot split the response's headers."""
    app = make_app()

    @app.task
    async def echo(p: dict[str, str]) -> str:
        return "ok"

    odd = "odd\r\nSet-Cookie: x=1"
    # A record under that id as older code or another producer may have left it (written
    # directly: whether submit accepts such an id is not what this test is about).
    await app.connect(timeout=5)
    await app.state.create(
        NewTask(id=odd, name="echo", queue="default", payload=b"{}", max_retries=0, trace_id="")
    )
    await app.cancel(odd)
    async with asgi_client(app) as client:
        r = await client.post("/api/v1/tasks/odd%0D%0ASet-Cookie%3A%20x%3D1/retry")
    assert r.status_code == 202, r.text
    assert r.headers["location"] == "/api/v1/tasks/odd%0D%0ASet-Cookie%3A%20x%3D1"
    assert "set-cookie" not in r.headers


async def test_events_route_refuses_hostile_headers_and_names_with_422(
    make_app: Callable[..., Burrow],
) -> None:
    """POST /events answers 422 naming the header for CC, burrow's own and broker headers,
    reply_to and an invalid traceparent; 422 for a routing key over 255 bytes, a name too
    long with the namespace, a reserved exchange and an event id with CR/LF; none of them
    reaches the subscriber, and a plain event still does."""
    app = make_app()
    got: list[Any] = []
    exchange = Exchange("hostile.events", "topic")

    @app.subscriber(exchange, "#", queue="hostile-sub")
    async def sink(p: Any) -> None:
        got.append(p)

    url = "/api/v1/events/hostile.events"
    refused_headers: dict[str, Any] = {
        "CC": app.names.queue("hostile-sub"),
        "BCC": "x",
        "x-burrow-callback-url": "http://169.254.169.254/latest/meta-data",
        "x-burrow-attempt": -5,
        "x-match": "any",
        "x-death": "forged",
        "reply_to": "amq.rabbitmq.reply-to",
        "traceparent": f"ff-{TRACE}-{SPAN}-01",
    }
    async with running_worker(app), asgi_client(app) as client:
        for name, value in refused_headers.items():
            r = await client.post(url, json={"payload": name, "headers": {name: value}})
            assert r.status_code == 422, (name, r.text)
            error = r.json()["error"]
            assert error["type"] == "invalid_header"
            assert error["details"] == {"header": name}
            assert name in r.json()["message"]
        r = await client.post(url, json={"routing_key": "é" * 128, "payload": 1})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["type"] == "invalid_routing_key"
        r = await client.post(f"/api/v1/events/{'e' * 160}", json={"payload": 1})
        assert r.status_code == 422, r.text
        assert "127" in r.json()["message"]
        r = await client.post("/api/v1/events/delay", json={"payload": 1})
        assert r.status_code == 422, r.text
        r = await client.post(url, json={"payload": 1, "message_id": "a\r\nb"})
        assert r.status_code == 422, r.text
        r = await client.post(url, json={"payload": "fine", "headers": {"x-tenant": "acme"}})
        assert r.status_code == 202, r.text
        await eventually(lambda: got == ["fine"], timeout=10, what="the plain event")
        await asyncio.sleep(0.5)
    assert got == ["fine"]


async def test_a_hostile_publish_does_not_fail_concurrent_requests(
    make_app: Callable[..., Burrow],
) -> None:
    """Hostile event publishes sent among many plain ones (a string CC, which the broker
    answers by closing the channel, and a routing key AMQP cannot carry) are refused alone:
    every plain request is still 202 and delivered."""
    app = make_app(publish_channels=1)
    got: list[int] = []
    exchange = Exchange("crowd.events", "fanout")

    @app.subscriber(exchange, queue="crowd-sub")
    async def sink(p: int) -> None:
        got.append(p)

    url = "/api/v1/events/crowd.events"
    hostile: list[dict[str, Any]] = [
        {"payload": -1, "headers": {"CC": app.names.queue("crowd-sub")}},
        {"payload": -2, "headers": {"BCC": "x"}},
        {"payload": -3, "routing_key": "é" * 150},
    ]
    async with running_worker(app), asgi_client(app) as client:
        assert (await client.post(url, json={"payload": 0})).status_code == 202
        requests: list[dict[str, Any]] = [{"payload": n} for n in range(1, 41)]
        for i, body in enumerate(hostile):
            requests.insert(10 * (i + 1), body)
        answers = await asyncio.gather(*(client.post(url, json=body) for body in requests))
        plain = [
            r.status_code for body, r in zip(requests, answers, strict=True) if body["payload"] >= 0
        ]
        refused = [
            r.status_code for body, r in zip(requests, answers, strict=True) if body["payload"] < 0
        ]
        assert plain == [202] * 40
        assert refused == [422] * 3
        await eventually(lambda: len(got) >= 41, timeout=15, what="every plain event")
    assert sorted(got) == list(range(41))


async def test_app_publish_and_call_refuse_before_sending(
    make_app: Callable[..., Burrow],
) -> None:
    """app.publish and app.call raise a clear error for a hostile header, a routing key over
    255 bytes, an exchange name AMQP refuses and a bad event id; the app still publishes
    afterwards."""
    app = make_app()
    exchange = Exchange("py.events", "topic")
    make_app.extra_exchanges.add(exchange.name)  # type: ignore[attr-defined]
    await app.connect(timeout=5)
    await app.declare_exchange(exchange)
    with pytest.raises(HeaderRefused, match="'CC'"):
        await app.publish(exchange, "k", 1, headers={"CC": "x"})
    with pytest.raises(HeaderRefused, match="x-burrow-callback-url"):
        await app.publish(exchange, "k", 1, headers={"x-burrow-callback-url": "http://x/"})
    with pytest.raises(ConfigurationError, match="256 bytes"):
        await app.publish(exchange, "é" * 128, 1)
    with pytest.raises(ConfigurationError, match="127"):
        await app.publish("e" * 200, "k", 1)
    with pytest.raises(ConfigurationError, match="reserved"):
        await app.publish("control", "k", 1)
    with pytest.raises(ConfigurationError, match="message_id"):
        await app.publish(exchange, "k", 1, message_id="a\nb")
    with pytest.raises(HeaderRefused, match="'BCC'"):
        await app.call("anything", {}, headers={"BCC": "x"}, timeout=1)
    with pytest.raises(UnknownExchange):
        await app.publish("never.declared", "k", 1)
    assert await app.publish(exchange, "k", {"still": "works"})


async def test_a_bad_message_fails_alone_in_its_publish_batch(
    make_app: Callable[..., Burrow],
) -> None:
    """On one shared confirm channel, publishes that AMQP cannot encode, or that the broker
    would close the channel or the connection for, fail alone with a ConfigurationError;
    the others queued with them in the same batch are confirmed, and the channel stays
    usable."""
    app = make_app(publish_channels=1)
    await app.connect(timeout=5)
    await app.declare_queue("default")
    queue = app.names.queue("default")
    broker = app.broker

    def good(n: int) -> Any:
        return broker.publish(queue, json.dumps(n).encode(), type_="echo")

    bad = [
        broker.publish("é" * 150, b"1"),  # a routing key of 300 bytes
        broker.publish(queue, b"1", headers={"CC": "x"}),  # the broker closes the channel
        broker.publish(queue, b"1", headers={"big": 2**64}),  # not encodable
        broker.publish(queue, b"1", exchange="x" * 128),  # exchange name over 127
        # Headers larger than the frame size: the broker would close the whole connection.
        broker.publish(queue, b"1", headers={f"h{i}": "v" * 1000 for i in range(200)}),
    ]
    results = await asyncio.gather(
        *[good(n) for n in range(10)],
        *bad,
        *[good(n) for n in range(10, 20)],
        return_exceptions=True,
    )
    oks = results[:10] + results[15:]
    assert oks == [None] * 20
    assert all(isinstance(r, ConfigurationError) for r in results[10:15]), results[10:15]
    await good(20)
    assert await depth(app, queue) == 21


async def test_undecodable_properties_are_dead_lettered_without_dropping_the_connection(
    make_app: Callable[..., Burrow],
) -> None:
    """A message whose message_id is not UTF-8 (which pamqp cannot decode) is dead-lettered
    as bad_properties with its body, and the task published after it runs: the worker's
    connection is not closed over it again and again."""
    app = make_app()
    runs: list[Any] = []

    @app.task
    async def echo(p: dict[str, int]) -> None:
        runs.append(p)

    dlq = app.names.dlq("default")
    task_id = f"after-{uuid.uuid4().hex}"
    async with running_worker(app) as worker:
        for message_id, body in ((b"\xff\xfe-binary", b'{"n": 1}'), (task_id, b'{"n": 2}')):
            await asyncio.to_thread(
                pika_publish,
                app.names.queue("default"),
                body,
                message_id=message_id,
                type="echo",
                content_type="application/json",
            )

        async def finished() -> Any:
            record = await app.state.get(task_id)
            return record if record is not None and record.terminal else None

        await app.connect(timeout=5)
        record = await eventually(finished, timeout=20, what="the task after the bad one")
        await eventually(lambda: depth(app, dlq), timeout=10, what="the dead letter")
        stats = worker.statistics()
    assert record.status is TaskStatus.SUCCEEDED
    assert runs == [{"n": 2}]
    assert stats.rejected_messages == 1
    [letter] = await app.broker.peek(dlq, 5)
    assert letter.headers["x-burrow-reason"] == "bad_properties"
    assert "cannot be decoded" in letter.headers["x-burrow-bad-properties"]
    assert letter.body == b'{"n": 1}'


async def test_replaying_a_dead_letter_drops_its_routing_headers(
    make_app: Callable[..., Burrow],
) -> None:
    """A dead letter that carries a CC (put in the dead-letter queue by a foreign producer)
    is replayed to its work queue only: the replayed copy has no CC, so no copy lands in
    the queue the CC named, and the task runs once."""
    app = make_app()
    make_app.extra_queues.add("spy")  # type: ignore[attr-defined]
    runs: list[str] = []

    @app.task
    async def echo(p: dict[str, str], ctx: TaskContext) -> None:
        runs.append(ctx.task_id)

    await app.connect(timeout=5)
    await app.declare_queue("spy")
    await app.declare_queue("default")  # and its dead-letter queue
    spy, dlq = app.names.queue("spy"), app.names.dlq("default")
    task_id = f"replay-cc-{uuid.uuid4().hex}"
    await asyncio.to_thread(
        pika_publish,
        dlq,
        b"{}",
        message_id=task_id,
        type="echo",
        content_type="application/json",
        headers={"CC": [spy], "x-tenant": "acme", "x-burrow-origin": "default"},
    )
    assert await depth(app, spy) == 1  # the foreign publish's own copy
    assert await depth(app, dlq) == 1
    async with running_worker(app):
        replayed = await app.replay_dead_letters("default")
        record = await app.wait(task_id, timeout=15, missing_ok=True)  # a foreign task's
        # record is written when a worker first takes its message
    assert replayed == 1
    assert record.status is TaskStatus.SUCCEEDED
    assert runs == [task_id]
    assert await depth(app, spy) == 1  # nothing more from the replay
    assert await depth(app, dlq) == 0


async def test_app_submit_refuses_hostile_headers_and_ids_before_anything_is_written(
    make_app: Callable[..., Burrow],
) -> None:
    """app.submit raises a clear error for a CC header, one of burrow's own headers and a
    task id with a line break, and writes no record for any of them; a plain submit still
    works afterwards."""
    app = make_app()

    @app.task
    async def echo(p: dict[str, str]) -> None:
        """Never run here."""

    with pytest.raises(HeaderRefused, match="'CC'"):
        await app.submit("echo", {}, task_id="cc-task", headers={"CC": ["elsewhere"]})
    with pytest.raises(HeaderRefused, match="x-burrow-attempt"):
        await app.submit("echo", {}, task_id="attempt-task", headers={"x-burrow-attempt": -5})
    with pytest.raises(ConfigurationError, match="task_id refused"):
        await app.submit("echo", {}, task_id="a\r\nLocation: x")
    await app.state.open()
    for refused in ("cc-task", "attempt-task", "a\r\nLocation: x"):
        assert await app.state.get(refused) is None
    handle = await app.submit("echo", {}, headers={"x-tenant": "acme"})
    assert (await app.get(handle.id)).status is TaskStatus.QUEUED
