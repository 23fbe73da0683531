"""``burrow.tracing`` configuration from the ``OTEL_*`` environment, the no-op path when
nothing is configured, and the log redaction of ``burrow.observability``."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from burrow import tracing
from burrow.errors import ConfigurationError
from burrow.observability import HIDDEN, bind_task, merge_task_context, redact, unbind_task

OTEL_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    tracing.reset()
    yield
    tracing.reset()


def _exporters(provider: TracerProvider) -> list[str]:
    processors = provider._active_span_processor._span_processors
    assert all(isinstance(p, BatchSpanProcessor) for p in processors)
    return [type(p.span_exporter).__name__ for p in processors]  # type: ignore[attr-defined]


def test_nothing_configured_means_no_tracer_and_no_spans() -> None:
    """No OTEL_* variables: no tracer, the span helpers are no-ops that yield None, and a
    publish leaves the message's traceparent as it was."""
    assert tracing.tracer() is None
    assert not tracing.enabled()
    headers = {"traceparent": PARENT}
    with tracing.publish_span(headers, name="t", queue="q", task_id="1") as span:
        assert span is None
    assert headers == {"traceparent": PARENT}
    with tracing.run_span(PARENT, name="t", queue="q", task_id="1", attempt=1) as span:
        assert span is None
        assert tracing.current_traceparent() is None
    out: dict[str, str] = {}
    tracing.inject(out)
    assert out == {}


@pytest.mark.parametrize("exporter", ["none", ""])
def test_an_endpoint_alone_exports_over_otlp_unless_none(
    monkeypatch: pytest.MonkeyPatch, exporter: str
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT turns OTLP export on; OTEL_TRACES_EXPORTER=none wins."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-worker")
    if exporter:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", exporter)
    provider = tracing._provider_from_env("burrow")
    if exporter == "none":
        assert provider is None
        return
    assert _exporters(provider) == ["OTLPSpanExporter"]
    assert provider.resource.attributes["service.name"] == "shop-worker"
    provider.shutdown()


def test_console_exporter_and_default_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_TRACES_EXPORTER=console prints spans; the service is named burrow by default."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = tracing._provider_from_env("burrow")
    assert _exporters(provider) == ["ConsoleSpanExporter"]
    assert provider.resource.attributes["service.name"] == "burrow"
    provider.shutdown()


def test_unknown_exporter_or_missing_otlp_package_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exporter burrow does not know, or OTLP without its package, fails naming the
    variable and the fix."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ConfigurationError, match="OTEL_TRACES_EXPORTER"):
        tracing._provider_from_env("burrow")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigurationError, match=r"burrow\[otlp\]"):
        tracing._provider_from_env("burrow")


def test_sdk_disabled_turns_everything_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing._provider_from_env("burrow") is None


def test_publish_span_replaces_the_traceparent_with_its_own() -> None:
    """With a provider: the publish span is a child of the header's context, and the
    header then names the publish span (so the run becomes its child)."""
    headers = {"traceparent": PARENT}
    with tracing.in_memory_spans() as exporter:
        with tracing.publish_span(headers, name="add", queue="math", task_id="t1"):
            pass
        (span,) = exporter.get_finished_spans()
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == PARENT[36:52]
    assert span.context is not None
    assert headers["traceparent"] == f"00-{PARENT[3:35]}-{span.context.span_id:016x}-01"
    assert (span.attributes or {})["messaging.destination.name"] == "math"


def test_redaction_hides_payloads_and_secrets() -> None:
    """Payload keys are hidden by default, secrets masked, URL passwords masked."""
    event = redact(
        None,
        "info",
        {
            "payload": b'{"card": "4111"}',
            "result": {"x": 1},
            "api_key": "k",
            "url": "amqp://guest:hunter2@h/",
        },
    )
    assert event == {
        "payload": HIDDEN,
        "result": HIDDEN,
        "api_key": "***",
        "url": "amqp://guest:***@h/",
    }


def test_bound_task_context_is_on_every_line_until_unbound() -> None:
    """bind_task adds task_id, task, attempt and trace_id to each line; unbind_task drops
    them."""
    stream = io.StringIO()
    structlog.configure(
        processors=[merge_task_context, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    try:
        log = structlog.get_logger("test")
        bind_task("t1", "add", 2, "abc")
        log.info("inside")
        unbind_task()
        log.info("outside")
    finally:
        structlog.reset_defaults()
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {k: inside[k] for k in ("task_id", "task", "attempt", "trace_id")} == {
        "task_id": "t1",
        "task": "add",
        "attempt": 2,
        "trace_id": "abc",
    }
    assert not {"task_id", "task", "attempt", "trace_id"} & set(outside)
