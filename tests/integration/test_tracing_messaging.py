"""OpenTelemetry traces of events, RPC, ``submit_many`` and the scheduler, on the real
RabbitMQ and Redis, in process, with burrow's spans going to an ``InMemorySpanExporter``
(the ``spans`` fixture of test_tracing.py).

An HTTP event must give one trace: the request's span, the publish under it, and one run
per subscriber under the publish. An RPC call's handling must be the child of the caller's
span (over HTTP too), and an error reply must mark both failed. A batch is one span, the
parent of every task's run; a scheduler's fire is the ancestor of the task it submits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import BaseModel

from burrow import Burrow, Exchange, RpcError, TaskStatus, tracing
from burrow.scheduler import Scheduler
from burrow.scheduler.cron import Cron, Schedule
from tests.conftest import eventually, running_worker
from tests.integration.test_tracing import (
    CALLER,
    CALLER_SPAN,
    CALLER_TRACE,
    _api,
    _id,
    _parent_of,
    _trace,
    spans,
)

pytestmark = pytest.mark.integration

__all__ = ["spans"]  # the fixture, imported for pytest

ORDERS = Exchange("orders", "topic")


class Order(BaseModel):
    order_id: int


class Quote(BaseModel):
    item: str
    qty: int = 1


def _of(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is kind]


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def test_http_event_publish_and_two_subscriber_runs_form_one_trace(
    make_app: Callable[..., Burrow], spans: InMemorySpanExporter
) -> None:
    """POST /events/orders with a caller's traceparent -> server span -> publish (producer)
    -> one run per subscriber (consumer, both children of the publish), one trace."""
    app = make_app()
    seen: list[str] = []

    @app.subscriber(ORDERS, "order.created", queue="billing")
    async def bill(order: Order) -> None:
        seen.append("bill")

    @app.subscriber(ORDERS, "order.*", queue="audit")
    async def audit(order: Order) -> None:
        seen.append("audit")

    async with running_worker(app):
        async for client in _api(app):
            response = await client.post(
                "/api/v1/events/orders",
                json={"routing_key": "order.created", "payload": {"order_id": 7}},
                headers={"traceparent": CALLER},
            )
            assert response.status_code == 202, response.text
        await eventually(lambda: len(_of(spans, SpanKind.CONSUMER)) == 2, timeout=30, what="runs")
    assert sorted(seen) == ["audit", "bill"]
    finished = spans.get_finished_spans()
    assert {_trace(s) for s in finished} == {CALLER_TRACE}, [s.name for s in finished]
    (server,) = _of(spans, SpanKind.SERVER)
    (publish,) = _of(spans, SpanKind.PRODUCER)
    runs = _of(spans, SpanKind.CONSUMER)
    assert server.name == "POST /api/v1/events/{exchange}"
    assert _parent_of(server) == CALLER_SPAN
    assert (server.attributes or {})["http.response.status_code"] == 202
    assert publish.name == f"publish {app.names.exchange('orders')}"
    assert _parent_of(publish) == _id(server)
    assert sorted(r.name for r in runs) == ["run audit", "run bill"]
    assert [_parent_of(r) for r in runs] == [_id(publish), _id(publish)]
    assert all(r.status.is_ok for r in runs)


async def test_python_publish_starts_a_trace_its_subscriber_continues(
    make_app: Callable[..., Burrow], spans: InMemorySpanExporter
) -> None:
    """``app.publish`` outside any span: the publish span is a root, the run its child,
    and the subscriber's record keeps the trace id."""
    app = make_app()

    @app.subscriber(ORDERS, "order.#", queue="audit")
    async def audit(order: Order) -> None:
        return None

    async with running_worker(app):
        event_id = await app.publish(ORDERS, "order.paid", {"order_id": 1})
        record = await app.wait(f"{event_id}:audit", timeout=30)
    assert record.status is TaskStatus.SUCCEEDED
    (publish,) = _of(spans, SpanKind.PRODUCER)
    (run,) = _of(spans, SpanKind.CONSUMER)
    assert publish.parent is None
    assert _parent_of(run) == _id(publish)
    assert record.trace_id == _trace(publish)


def _rpc_app(make_app: Callable[..., Burrow]) -> Burrow:
    app = make_app()

    @app.rpc("quote")
    async def quote(q: Quote) -> dict[str, Any]:
        return {"item": q.item, "total": q.qty * 3}

    @app.rpc("explode")
    async def explode(q: Quote) -> None:
        raise ValueError(f"no price for {q.item}")

    return app


async def test_rpc_handling_is_a_child_of_the_call_and_errors_mark_it(
    make_app: Callable[..., Burrow], spans: InMemorySpanExporter
) -> None:
    """``app.call`` -> client span; the server's span is its child in the same trace; a
    handler that raises gives an error status on both, with the handler's error type."""
    app = _rpc_app(make_app)
    async with running_worker(app):
        assert await app.call("quote", {"item": "tea", "qty": 2}, timeout=10) == {
            "item": "tea",
            "total": 6,
        }
        with pytest.raises(RpcError):
            await app.call("explode", {"item": "tea"}, timeout=10)
        await eventually(lambda: len(_of(spans, SpanKind.SERVER)) == 2, timeout=10, what="spans")
    (call_ok,) = _named(spans, "call quote")
    (served_ok,) = _named(spans, "rpc quote")
    assert call_ok.kind is SpanKind.CLIENT
    assert served_ok.kind is SpanKind.SERVER
    assert call_ok.parent is None
    assert (_trace(served_ok), _parent_of(served_ok)) == (_trace(call_ok), _id(call_ok))
    assert call_ok.status.is_ok
    assert served_ok.status.is_ok

    (call_bad,) = _named(spans, "call explode")
    (served_bad,) = _named(spans, "rpc explode")
    assert _parent_of(served_bad) == _id(call_bad)
    assert not served_bad.status.is_ok
    assert "ValueError" in (served_bad.status.description or "")
    assert (served_bad.attributes or {})["error.type"] == "ValueError"
    assert not call_bad.status.is_ok
    assert (call_bad.attributes or {})["error.type"] == "ValueError"


async def test_http_rpc_call_continues_the_callers_trace(
    make_app: Callable[..., Burrow], spans: InMemorySpanExporter
) -> None:
    """POST /rpc/quote with a traceparent -> server span -> call (client) -> rpc (server),
    one trace; a 502 marks the request's span failed."""
    app = _rpc_app(make_app)
    async with running_worker(app):
        async for client in _api(app):
            response = await client.post(
                "/api/v1/rpc/quote",
                json={"payload": {"item": "tea", "qty": 3}, "timeout": 10},
                headers={"traceparent": CALLER},
            )
            assert response.status_code == 200, response.text
            assert response.json()["data"] == {"item": "tea", "total": 9}
            failed = await client.post(
                "/api/v1/rpc/explode", json={"payload": {"item": "tea"}, "timeout": 10}
            )
            assert failed.status_code == 502, failed.text
        await eventually(lambda: len(_named(spans, "rpc explode")) == 1, timeout=10, what="spans")
    requests = _named(spans, "POST /api/v1/rpc/{name}")
    assert len(requests) == 2
    ok_request = next(s for s in requests if _trace(s) == CALLER_TRACE)
    bad_request = next(s for s in requests if s is not ok_request)
    (call,) = _named(spans, "call quote")
    (served,) = _named(spans, "rpc quote")
    assert _parent_of(ok_request) == CALLER_SPAN
    assert _parent_of(call) == _id(ok_request)
    assert _parent_of(served) == _id(call)
    assert _trace(served) == CALLER_TRACE
    assert (ok_request.attributes or {})["http.response.status_code"] == 200
    assert (bad_request.attributes or {})["http.response.status_code"] == 502
    assert not bad_request.status.is_ok


async def test_submit_many_is_one_span_parent_of_every_run(
    make_app: Callable[..., Burrow], spans: InMemorySpanExporter
) -> None:
    """``submit_many`` inside the application's span: one producer span for the batch
    (child of that span) whose context every task carries; each run is its child, and
    the batch route does the same under its request's span."""
    app = make_app()

    @app.task
    async def double(o: Order) -> int:
        return o.order_id * 2

    t = tracing.tracer()
    assert t is not None
    async with running_worker(app):
        with t.start_as_current_span("import") as outer:
            handles = await app.submit_many("double", [{"order_id": i} for i in range(3)])
        records = [await app.wait(h.id, timeout=30) for h in handles]
        async for client in _api(app):
            response = await client.post(
                "/api/v1/tasks/double/batch",
                json={"items": [{"payload": {"order_id": 5}}, {"payload": {"order_id": 6}}]},
            )
            assert response.status_code == 202, response.text
        http_records = [await app.wait(i, timeout=30) for i in response.json()["data"]["ids"]]
        await eventually(lambda: len(_of(spans, SpanKind.CONSUMER)) == 5, timeout=30, what="runs")
    assert {r.status for r in records + http_records} == {TaskStatus.SUCCEEDED}
    batches = _named(spans, "publish double")
    assert len(batches) == 2, [s.name for s in spans.get_finished_spans()]
    python_batch = next(
        b for b in batches if (b.attributes or {}).get("messaging.batch.message_count") == 3
    )
    http_batch = next(b for b in batches if b is not python_batch)
    assert _parent_of(python_batch) == f"{outer.get_span_context().span_id:016x}"
    assert {r.trace_id for r in records} == {_trace(python_batch)}
    (request,) = _of(spans, SpanKind.SERVER)
    assert request.name == "POST /api/v1/tasks/double/batch"
    assert _parent_of(http_batch) == _id(request)
    assert (http_batch.attributes or {})["messaging.batch.message_count"] == 2
    assert {r.trace_id for r in http_records} == {_trace(http_batch)}
    runs = _of(spans, SpanKind.CONSUMER)
    by_parent = sorted(_parent_of(r) or "" for r in runs)
    assert by_parent == sorted([_id(python_batch)] * 3 + [_id(http_batch)] * 2)


async def test_a_scheduler_fire_is_the_parent_of_the_task_it_submits(
    make_app: Callable[..., Burrow], spans: InMemorySpanExporter
) -> None:
    """A fire is a producer span (a new trace): the task's publish is its child, the run
    the publish's, and the record has the fire's trace id."""
    app = make_app()

    @app.task
    async def report(o: Order) -> int:
        return o.order_id

    schedule = Schedule("nightly", "report", Cron("0 3 * * *"), {"order_id": 3})
    tick = Cron("0 3 * * *").latest_at_or_before(time.time())
    scheduler = Scheduler(app)
    await app.state.open()
    async with running_worker(app):
        assert await scheduler.fire(schedule, tick)
        assert scheduler.statistics().fired == 1
        (task,) = (await app.list_tasks(name="report")).items
        record = await app.wait(task.id, timeout=30)
        await eventually(lambda: _of(spans, SpanKind.CONSUMER), timeout=10, what="the run")
    assert record.status is TaskStatus.SUCCEEDED
    (fire,) = _named(spans, "fire nightly")
    (publish,) = _named(spans, "publish report")
    (run,) = _of(spans, SpanKind.CONSUMER)
    assert fire.kind is SpanKind.PRODUCER
    assert fire.parent is None
    assert (fire.attributes or {})["burrow.schedule.id"] == "nightly"
    assert _parent_of(publish) == _id(fire)
    assert _parent_of(run) == _id(publish)
    assert record.trace_id == _trace(fire)
