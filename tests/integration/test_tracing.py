"""OpenTelemetry traces on the real RabbitMQ and Redis, in process: the API (httpx over
ASGI), a worker (``running_worker``) and a local webhook receiver, with burrow's spans
going to an ``InMemorySpanExporter``.

One HTTP submit of a task that fails once must give one trace: the request's span, the
publish under it, two runs under the publish, and the webhook delivery under the second
run; a foreign ``traceparent`` (HTTP caller, or an AMQP producer) is continued.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pika
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import BaseModel

from burrow import Burrow, TaskContext, TaskStatus, tracing
from burrow.api import create_app
from burrow.testing import capture_spans
from tests.conftest import eventually, running_worker
from tests.integration.test_foreign_messages import pika_publish

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
#: A caller's trace and span: what a traced HTTP client or AMQP producer would send.
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


class Pair(BaseModel):
    a: int
    b: int


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """burrow's spans of this test, in memory (finished spans, in end order)."""
    with capture_spans() as exporter:
        yield exporter


@pytest.fixture
def hooks() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A local webhook receiver answering 200: its URL and the headers of each POST."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen
    finally:
        server.shutdown()
        server.server_close()


async def _api(app: Burrow) -> AsyncIterator[httpx.AsyncClient]:
    api = create_app(app)
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def _parent_of(span: ReadableSpan) -> str | None:
    return _hex(span.parent.span_id, 16) if span.parent is not None else None


def _id(span: ReadableSpan) -> str:
    assert span.context is not None
    return _hex(span.context.span_id, 16)


def _trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return _hex(span.context.trace_id, 32)


def _app(make_app: Callable[..., Burrow]) -> Burrow:
    make_app.extra_queues.add("webhooks")  # type: ignore[attr-defined]
    app = make_app(webhook_secret=SECRET, callback_allowlist="127.0.0.1")
    calls: dict[str, int] = {}

    @app.task(max_retries=2)
    async def flaky(p: Pair, ctx: TaskContext) -> int:
        calls[ctx.task_id] = calls.get(ctx.task_id, 0) + 1
        if calls[ctx.task_id] == 1:
            raise RuntimeError("first run fails")
        return p.a + p.b

    return app


async def test_http_submit_publish_runs_and_webhook_form_one_trace(
    make_app: Callable[..., Burrow],
    spans: InMemorySpanExporter,
    hooks: tuple[str, list[dict[str, str]]],
) -> None:
    """POST with a caller's traceparent -> server span (child of the caller) -> publish
    (producer) -> run 1 (failed) and run 2 (consumer, both children of the publish) ->
    webhook POST (client, child of run 2), all in the caller's trace; the receiver gets
    the webhook span's traceparent."""
    url, seen = hooks
    app = _app(make_app)
    async with running_worker(app):
        async for client in _api(app):
            response = await client.post(
                "/api/v1/tasks/flaky",
                json={"payload": {"a": 1, "b": 2}, "callback_url": url},
                headers={"traceparent": CALLER},
            )
            assert response.status_code == 202, response.text
            data = response.json()["data"]
            assert data["trace_id"] == CALLER_TRACE
            record = await app.wait(data["id"], timeout=30)
            assert record.status is TaskStatus.SUCCEEDED
            assert record.trace_id == CALLER_TRACE

            def webhook_span() -> list[ReadableSpan]:
                return [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]

            await eventually(webhook_span, timeout=30, what="the webhook delivery's span")
    finished = spans.get_finished_spans()
    assert {_trace(s) for s in finished} == {CALLER_TRACE}, [s.name for s in finished]
    by_kind: dict[SpanKind, list[ReadableSpan]] = {}
    for span in finished:
        by_kind.setdefault(span.kind, []).append(span)
    (server,) = by_kind[SpanKind.SERVER]
    (publish,) = by_kind[SpanKind.PRODUCER]
    runs = sorted(by_kind[SpanKind.CONSUMER], key=lambda s: s.start_time or 0)
    (webhook,) = by_kind[SpanKind.CLIENT]
    assert server.name == "POST /api/v1/tasks/flaky"
    assert _parent_of(server) == CALLER_SPAN
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 202
    assert _parent_of(publish) == _id(server)
    assert publish.name == "publish flaky"
    assert [r.name for r in runs] == ["run flaky", "run flaky"]
    assert [_parent_of(r) for r in runs] == [_id(publish), _id(publish)]
    assert [(r.attributes or {}).get("burrow.task.attempt") for r in runs] == [1, 2]
    assert not runs[0].status.is_ok
    assert runs[0].status.description
    assert "RuntimeError" in runs[0].status.description
    assert runs[1].status.is_ok
    assert _parent_of(webhook) == _id(runs[1])
    assert (webhook.attributes or {})["http.response.status_code"] == 200
    assert len(seen) == 1
    assert seen[0]["traceparent"] == f"00-{CALLER_TRACE}-{_id(webhook)}-01"


async def test_http_submit_without_traceparent_starts_a_trace(
    make_app: Callable[..., Burrow], spans: InMemorySpanExporter
) -> None:
    """No traceparent on the request: the server span is a root, and the record's trace
    id is its trace id."""
    app = _app(make_app)
    async for client in _api(app):
        response = await client.post("/api/v1/tasks/flaky", json={"payload": {"a": 1, "b": 1}})
        assert response.status_code == 202, response.text
    trace_id = response.json()["data"]["trace_id"]
    (server,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    (publish,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert server.parent is None
    assert _trace(server) == _trace(publish) == trace_id
    assert _parent_of(publish) == _id(server)
    assert (await app.get(response.json()["data"]["id"])).trace_id == trace_id


async def test_a_foreign_producers_traceparent_is_continued(
    make_app: Callable[..., Burrow], spans: InMemorySpanExporter
) -> None:
    """A plain pika message with a traceparent header: the run's span is its child, in its
    trace, and the record keeps that trace id."""
    app = make_app()

    @app.task
    async def add(p: Pair) -> int:
        return p.a + p.b

    task_id = "foreign-" + secrets.token_hex(4)
    async with running_worker(app):
        props = pika.BasicProperties(
            delivery_mode=2,
            message_id=task_id,
            type="add",
            content_type="application/json",
            headers={"traceparent": CALLER},
        )
        await asyncio.to_thread(
            pika_publish, app.names.queue("default"), [(b'{"a": 2, "b": 3}', props)]
        )
        record = await app.wait(task_id, timeout=30)
    assert record.status is TaskStatus.SUCCEEDED
    assert record.trace_id == CALLER_TRACE
    (run,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert (_trace(run), _parent_of(run)) == (CALLER_TRACE, CALLER_SPAN)
    assert run.parent is not None
    assert run.parent.is_remote


async def test_python_submit_inside_a_span_continues_it(
    make_app: Callable[..., Burrow], spans: InMemorySpanExporter
) -> None:
    """``app.submit`` inside the application's own span: the publish span is its child."""
    app = make_app()

    @app.task
    async def add(p: Pair) -> int:
        return p.a + p.b

    t = tracing.tracer()
    assert t is not None
    with t.start_as_current_span("checkout") as outer:
        handle = await app.submit("add", {"a": 1, "b": 2})
    (publish,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert _parent_of(publish) == _hex(outer.get_span_context().span_id, 16)
    assert (await app.get(handle.id)).trace_id == _trace(publish)
