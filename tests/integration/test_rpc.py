"""RPC on the real RabbitMQ: Direct Reply-To, correlation ids, timeouts, handler errors,
late replies, reply_to validation, and a plain pika client calling a burrow handler."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pika
import pytest
from pydantic import BaseModel

from burrow import Burrow, PayloadInvalid, RpcError, RpcTimeout, TaskContext, Unroutable
from tests._timing import LATE
from tests.conftest import eventually, running_worker

pytestmark = pytest.mark.integration

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class QuoteRequest(BaseModel):
    item: str
    qty: int


class Quote(BaseModel):
    item: str
    total: float


def rpc_app(make_app: Callable[..., Burrow]) -> Burrow:
    app = make_app()

    @app.rpc("quote")
    async def quote(req: QuoteRequest) -> Quote:
        return Quote(item=req.item, total=req.qty * 2.5)

    @app.rpc("nap")
    async def nap(p: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(p["seconds"])
        return {"tag": p["tag"], "call": ctx.task_id}

    @app.rpc("explode")
    def explode(p: dict[str, Any]) -> None:  # sync: runs in the thread pool
        raise ValueError(f"no stock for {p['item']}")

    return app


async def test_round_trip(make_app: Callable[..., Burrow]) -> None:
    """A call returns the handler's result as decoded JSON."""
    app = rpc_app(make_app)
    async with running_worker(app):
        reply = await app.call("quote", {"item": "tea", "qty": 4}, timeout=5)
    assert reply == {"item": "tea", "total": 10.0}


async def test_64_concurrent_calls_on_one_client(make_app: Callable[..., Burrow]) -> None:
    """64 calls in flight at once share one reply consumer and each gets its own reply."""
    server, client = rpc_app(make_app), make_app()
    async with running_worker(server):
        started = time.monotonic()
        replies = await asyncio.gather(
            *(client.call("nap", {"seconds": 0.3, "tag": i}, timeout=10) for i in range(64))
        )
        elapsed = time.monotonic() - started
    assert [r["tag"] for r in replies] == list(range(64))
    assert len({r["call"] for r in replies}) == 64  # one correlation id per call
    assert elapsed < 8  # concurrent, not 64 x 0.3 s = 19.2 s
    assert client._rpc_client is not None
    assert client._rpc_client.stats.calls == 64
    assert client._rpc_client.stats.replies == 64


async def test_timeout_is_raised_at_the_deadline(make_app: Callable[..., Burrow]) -> None:
    """A call without a reply raises RpcTimeout (a TimeoutError) at its deadline, never
    before it (and not long after)."""
    app = rpc_app(make_app)
    async with running_worker(app):
        await app.call("quote", {"item": "warm-up", "qty": 1}, timeout=5)  # connect first
        started = time.monotonic()
        with pytest.raises(RpcTimeout) as caught:
            await app.call("nap", {"seconds": 3, "tag": "slow"}, timeout=1.0)
        elapsed = time.monotonic() - started
    assert 1.0 - 0.05 <= elapsed <= 1.0 + LATE
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.name == "nap"


async def test_handler_error_comes_back_as_an_error(make_app: Callable[..., Burrow]) -> None:
    """A handler's exception reaches the caller at once as RpcError(type, message)."""
    app = rpc_app(make_app)
    async with running_worker(app):
        started = time.monotonic()
        with pytest.raises(RpcError) as caught:
            await app.call("explode", {"item": "tea"}, timeout=20)
        assert time.monotonic() - started < 10  # not a timeout
        # The server's validation error comes back the same way (another app's handler).
        other = make_app()
        with pytest.raises(RpcError) as invalid:
            await other.call("quote", {"item": "tea"}, timeout=5)
        with pytest.raises(PayloadInvalid):  # validated locally when the app knows it
            await app.call("quote", {"item": "tea"}, timeout=5)
    assert caught.value.type == "ValueError"
    assert caught.value.message == "no stock for tea"
    assert invalid.value.type == "PayloadInvalid"


async def test_late_reply_is_dropped_not_given_to_another_caller(
    make_app: Callable[..., Burrow],
) -> None:
    """A reply arriving after its call timed out is dropped and counted; the call in flight
    at that moment still gets its own reply."""
    app = rpc_app(make_app)
    async with running_worker(app):
        with pytest.raises(RpcTimeout):
            await app.call("nap", {"seconds": 0.8, "tag": "A"}, timeout=0.3)
        # B is in flight when A's reply arrives (~0.5 s from now).
        reply = await app.call("nap", {"seconds": 1.2, "tag": "B"}, timeout=5)
        assert app._rpc_client is not None
        stats = app._rpc_client.stats
    assert reply["tag"] == "B"
    assert stats.late_replies == 1
    assert stats.unknown_replies == 0


async def test_call_without_server_is_unroutable(make_app: Callable[..., Burrow]) -> None:
    """Calling a handler no server ever declared fails at once instead of timing out."""
    app = make_app()
    started = time.monotonic()
    with pytest.raises(Unroutable):
        await app.call("nobody", {}, timeout=20)
    assert time.monotonic() - started < 10


def _pika_call(queue: str, body: dict[str, Any], *, direct: bool, timeout: float) -> Any:
    """The RabbitMQ tutorial's RPC client: correlation id plus direct reply-to, or its own
    exclusive server-named reply queue. No burrow import."""
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        ch = conn.channel()
        if direct:
            reply_to = "amq.rabbitmq.reply-to"
        else:
            reply_to = ch.queue_declare(queue="", exclusive=True).method.queue
        corr = str(uuid.uuid4())
        response: dict[str, Any] = {}

        def on_response(_ch: Any, _method: Any, props: Any, payload: bytes) -> None:
            if props.correlation_id == corr:
                response["headers"] = props.headers or {}
                response["body"] = json.loads(payload)

        ch.basic_consume(queue=reply_to, on_message_callback=on_response, auto_ack=True)
        ch.basic_publish(
            exchange="",
            routing_key=queue,
            properties=pika.BasicProperties(
                reply_to=reply_to, correlation_id=corr, content_type="application/json"
            ),
            body=json.dumps(body).encode(),
        )
        deadline = time.monotonic() + timeout
        while "body" not in response and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        return response
    finally:
        conn.close()


@pytest.mark.parametrize("direct", [True, False], ids=["direct-reply-to", "own-reply-queue"])
async def test_plain_pika_client_calls_a_burrow_handler(
    make_app: Callable[..., Burrow], direct: bool
) -> None:
    """A pika client in the style of the RabbitMQ tutorials gets the handler's reply, and
    the error header on a handler error."""
    app = rpc_app(make_app)
    queue = app.names.rpc_queue("quote")
    async with running_worker(app):
        ok = await asyncio.to_thread(
            _pika_call, queue, {"item": "tea", "qty": 2}, direct=direct, timeout=5
        )
        failed = await asyncio.to_thread(
            _pika_call, app.names.rpc_queue("explode"), {"item": "x"}, direct=direct, timeout=5
        )
    assert ok["body"] == {"item": "tea", "total": 5.0}
    assert ok["headers"] == {"x-burrow-rpc-status": "ok"}
    assert failed["headers"] == {"x-burrow-rpc-status": "error"}
    assert failed["body"] == {"type": "ValueError", "message": "no stock for x"}


def _pika_request(queue: str, reply_to: str | None, *, close_at_once: bool = True) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        ch = conn.channel()
        if reply_to == "amq.rabbitmq.reply-to":
            ch.basic_consume(queue=reply_to, on_message_callback=lambda *a: None, auto_ack=True)
        ch.basic_publish(
            exchange="",
            routing_key=queue,
            properties=pika.BasicProperties(reply_to=reply_to, correlation_id="c-1"),
            body=json.dumps({"seconds": 0.5, "tag": "gone"}).encode(),
        )
    finally:
        if close_at_once:
            conn.close()


async def test_server_refuses_foreign_reply_to_and_survives_a_vanished_caller(
    make_app: Callable[..., Burrow],
) -> None:
    """A request whose reply_to is not a reply address (here: a task queue) is dropped
    unrun; a caller that disconnects before its reply does not harm the server."""
    app = rpc_app(make_app)
    make_app.extra_queues.add("default")  # type: ignore[attr-defined]
    await app.connect()
    await app.declare_queue("default")
    nap = app.names.rpc_queue("nap")
    async with running_worker(app) as worker:
        await asyncio.to_thread(_pika_request, nap, app.names.queue("default"))
        await asyncio.to_thread(_pika_request, nap, None)
        await eventually(
            lambda: worker.statistics().rpc_dropped == 2, timeout=5, what="requests refused"
        )
        # The caller is gone by the time the server replies (after 0.5 s).
        await asyncio.to_thread(_pika_request, nap, "amq.rabbitmq.reply-to")
        await eventually(
            lambda: worker.statistics().rpc_received == 3, timeout=5, what="request taken"
        )
        await asyncio.sleep(1.0)
        reply = await app.call("quote", {"item": "tea", "qty": 1}, timeout=5)  # still serving
    stats, _ = await app.queue_stats("default")
    assert stats is not None
    assert stats.messages == 0  # nothing was published into the task queue
    assert reply == {"item": "tea", "total": 2.5}
