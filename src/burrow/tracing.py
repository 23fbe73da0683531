"""OpenTelemetry tracing: one trace from the HTTP submit to the webhook delivery.

The spans burrow makes, and how they link::

    POST /api/v1/tasks/{name}    SERVER    parent: the request's ``traceparent`` header, if any
      publish {task}             PRODUCER  its context goes into the message's ``traceparent``
        run {task}               CONSUMER  one per run (retries too), parent from the header
          webhook {task}         CLIENT    one per delivery attempt; its context is sent on

    POST /api/v1/events/{exchange}  SERVER
      publish {exchange}         PRODUCER  ``app.publish``; context in the event's header
        run {subscriber}         CONSUMER  one per subscriber run

    POST /api/v1/rpc/{name}      SERVER
      call {name}                CLIENT    ``app.call``; context in the request's header
        rpc {name}               SERVER    the handling; error status on an error reply

    POST /api/v1/tasks/{name}/batch  SERVER
      publish {task}             PRODUCER  one per ``submit_many``: every task's parent

    fire {schedule}              PRODUCER  a scheduler tick; parent of the task's publish

The context travels in the W3C ``traceparent`` header of each message (docs/wire-format.md),
so a foreign producer that sets one has its trace continued, and a retry or a webhook
message carries it on. Every ``traceparent`` read, from an HTTP request or a message, is
checked strictly first (``envelope.trace_id_of``: the version-00 form in lower-case hex,
version not ``ff``, ids not all zeros); an invalid one is never continued or passed on: the
span starts a new trace (or continues the active span) instead.

Off unless configured. ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``, or
``OTEL_TRACES_EXPORTER=otlp``) exports over OTLP/HTTP (the ``otlp`` extra),
``OTEL_TRACES_EXPORTER=console`` prints spans; an application that installed its own SDK
tracer provider before burrow's first span gets burrow's spans there. Otherwise no span
is ever made: each instrumented place checks ``tracer()`` (one global read) and goes on
as before, the ``traceparent`` headers still propagated unchanged. Nothing of the
OpenTelemetry SDK is imported unless exporting is configured.

Only this module imports OpenTelemetry (``tests/unit/test_layers.py``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from burrow.errors import ConfigurationError
from burrow.tasks.envelope import HDR_TRACEPARENT, new_traceparent, trace_id_of

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

#: Instrumentation scope of burrow's spans.
SCOPE = "burrow"
#: Service name when neither ``OTEL_SERVICE_NAME`` nor ``OTEL_RESOURCE_ATTRIBUTES`` name one.
DEFAULT_SERVICE = "burrow"

_UNSET: Any = object()
#: The tracer burrow's spans come from; None: tracing is off; ``_UNSET``: not decided yet.
_tracer: Any = _UNSET
#: A provider this module made (shut down, flushing its spans, by ``shutdown``).
_own_provider: Any = None
_NULL = contextlib.nullcontext()


def tracer() -> Tracer | None:
    """The tracer for burrow's spans, or None when tracing is off (decided on first use)."""
    found = _tracer
    if found is _UNSET:
        found = configure_tracing()
    return found  # type: ignore[no-any-return]


def enabled() -> bool:
    """True when burrow makes spans in this process."""
    return tracer() is not None


def configure_tracing(service_name: str | None = None) -> Tracer | None:
    """Decide whether this process traces, from the ``OTEL_*`` environment.

    Called by the first instrumented operation; call it earlier to fail fast on a bad
    configuration, or again after installing a tracer provider of your own.

    Args:
        service_name: the ``service.name`` when the environment names none (``burrow``).

    Raises:
        ConfigurationError: OTLP export is configured but its package is not installed,
            or ``OTEL_TRACES_EXPORTER`` names an exporter burrow does not know.
    """
    global _tracer, _own_provider
    provider = _provider_from_env(service_name or DEFAULT_SERVICE)
    if provider is not None:
        from opentelemetry import trace

        _own_provider = provider
        trace.set_tracer_provider(provider)  # also for the application's own spans
    else:
        provider = _installed_provider()
    _tracer = provider.get_tracer(SCOPE) if provider is not None else None
    return _tracer  # type: ignore[no-any-return]


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Make burrow's spans in ``provider`` (None: tracing off), whatever the environment
    says; for tests (an ``InMemorySpanExporter``) and applications that keep their own
    provider out of the global one."""
    global _tracer
    _tracer = provider.get_tracer(SCOPE) if provider is not None else None


@contextlib.contextmanager
def in_memory_spans() -> Iterator[Any]:
    """Send burrow's spans to a fresh ``InMemorySpanExporter`` for the block (yielded);
    afterwards the environment decides again (``burrow.testing.capture_spans``)."""
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = SdkTracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        reset()
        provider.shutdown()


def reset() -> None:
    """Forget the decision: the next span looks at the environment again."""
    global _tracer
    _tracer = _UNSET


def shutdown() -> None:
    """Flush and stop the exporter this module set up (if any); at process exit."""
    global _own_provider
    provider, _own_provider = _own_provider, None
    if provider is not None:
        provider.shutdown()


def _provider_from_env(service_name: str) -> Any:
    """An SDK tracer provider with the exporter the environment asks for, else None."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n and n != "none"]
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not names:
        if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none" or not endpoint:
            return None
        names = ["otlp"]
    unknown = sorted(set(names) - {"otlp", "console"})
    if unknown:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER={env['OTEL_TRACES_EXPORTER']!r}: burrow knows 'otlp', "
            "'console' and 'none'"
        )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service_name}))
    provider = TracerProvider(resource=resource)
    for name in names:
        exporter = _otlp_exporter() if name == "otlp" else ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _otlp_exporter() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ConfigurationError(
            "OTLP trace export is configured (OTEL_EXPORTER_OTLP_ENDPOINT or "
            "OTEL_TRACES_EXPORTER=otlp) but opentelemetry-exporter-otlp-proto-http is not "
            "installed: pip install 'burrow[otlp]' (or unset the variable)"
        ) from exc
    return OTLPSpanExporter()  # endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_*


def _installed_provider() -> Any:
    """The application's own global tracer provider, if it set a real one (not the
    API's default proxy or no-op provider). Not imported when nobody imported it."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider


# -- propagation ---------------------------------------------------------------------------


def _parent(traceparent: str | None) -> Any:
    """The OpenTelemetry context to start a span in: the remote parent in ``traceparent``
    when it is valid, else the current context (an active span, or none: a new trace)."""
    if trace_id_of(traceparent) is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({HDR_TRACEPARENT: traceparent})


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` of ``span`` (None for an invalid span)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def current_traceparent() -> str | None:
    """The ``traceparent`` of the active span, or None (tracing off, or no span active)."""
    if tracer() is None:
        return None
    from opentelemetry import trace

    return traceparent_of(trace.get_current_span())


def ensure_traceparent(headers: MutableMapping[str, Any]) -> str:
    """The ``traceparent`` an outgoing message carries: the one in ``headers`` when it is
    valid, else the active span's (if tracing), else a new one; stored in ``headers``."""
    traceparent = headers.get(HDR_TRACEPARENT)
    if trace_id_of(traceparent) is None:
        traceparent = current_traceparent() or new_traceparent()
        headers[HDR_TRACEPARENT] = traceparent
    return str(traceparent)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the active span's ``traceparent`` to outgoing HTTP ``headers`` (if tracing)."""
    traceparent = current_traceparent()
    if traceparent is not None:
        headers[HDR_TRACEPARENT] = traceparent


# -- spans ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _span(
    t: Tracer, name: str, kind_name: str, traceparent: str | None, attributes: Mapping[str, Any]
) -> Iterator[Span]:
    from opentelemetry import trace

    kind = getattr(trace.SpanKind, kind_name)
    with t.start_as_current_span(
        name, context=_parent(traceparent), kind=kind, attributes=dict(attributes)
    ) as span:
        yield span


def server_span(method: str, route: str, traceparent: str | None) -> Any:
    """The SERVER span of an HTTP request to ``route`` (a template), continuing the
    caller's ``traceparent``. A context manager giving the span (None when off)."""
    t = tracer()
    if t is None:
        return _NULL
    attributes = {"http.request.method": method, "http.route": route}
    return _span(t, f"{method} {route}", "SERVER", traceparent, attributes)


def set_http_status(span: Span | None, status: int) -> None:
    """Record the response status on a ``server_span`` (a 5xx marks it failed)."""
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR))


@contextlib.contextmanager
def _outgoing(
    t: Tracer,
    headers: MutableMapping[str, Any],
    name: str,
    kind_name: str,
    attributes: Mapping[str, Any],
) -> Iterator[Span]:
    """A span that is the parent of a message: child of the ``traceparent`` in
    ``headers`` (or of the active span), whose own context replaces that header."""
    with _span(t, name, kind_name, headers.get(HDR_TRACEPARENT), attributes) as span:
        traceparent = traceparent_of(span)
        if traceparent is not None:
            headers[HDR_TRACEPARENT] = traceparent
        yield span


def _messaging(destination: str, operation: str | None = None, **extra: Any) -> dict[str, Any]:
    """The messaging attributes of a span about ``destination`` (a queue or exchange)."""
    attributes: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": destination,
    }
    if operation is not None:
        attributes["messaging.operation.type"] = operation
    attributes.update(extra)
    return attributes


def publish_span(headers: MutableMapping[str, Any], *, name: str, queue: str, task_id: str) -> Any:
    """The PRODUCER span of publishing a task message, child of the ``traceparent`` in
    ``headers`` (or of the active span); that header is replaced by the span's own, so
    the run's span becomes its child. A context manager; a no-op when tracing is off."""
    t = tracer()
    if t is None:
        return _NULL
    attributes = _messaging(
        queue, "send", **{"messaging.message.id": task_id, "burrow.task.name": name}
    )
    return _outgoing(t, headers, f"publish {name}", "PRODUCER", attributes)


def batch_span(*, name: str, queue: str, count: int) -> Any:
    """The PRODUCER span of one ``submit_many`` (child of the active span): active while
    its tasks are published, so every task's ``traceparent`` is its context and each
    run is its child. One span per batch, not per task: cheap for large batches."""
    t = tracer()
    if t is None:
        return _NULL
    attributes = _messaging(
        queue, "send", **{"messaging.batch.message_count": count, "burrow.task.name": name}
    )
    return _span(t, f"publish {name}", "PRODUCER", None, attributes)


def event_span(
    headers: MutableMapping[str, Any], *, exchange: str, routing_key: str, event_id: str
) -> Any:
    """The PRODUCER span of ``app.publish``, like ``publish_span``: its context replaces
    the event's ``traceparent``, so each subscriber's run is its child."""
    t = tracer()
    if t is None:
        return _NULL
    attributes = _messaging(
        exchange,
        "send",
        **{
            "messaging.rabbitmq.destination.routing_key": routing_key,
            "messaging.message.id": event_id,
        },
    )
    return _outgoing(t, headers, f"publish {exchange}", "PRODUCER", attributes)


def rpc_client_span(headers: MutableMapping[str, Any], *, name: str, queue: str) -> Any:
    """The CLIENT span of ``app.call``: its context replaces the request's
    ``traceparent``, so the server's span is its child; an error reply or a timeout
    raised inside marks it failed."""
    t = tracer()
    if t is None:
        return _NULL
    attributes = _messaging(queue, **{"rpc.system": "burrow", "rpc.method": name})
    return _outgoing(t, headers, f"call {name}", "CLIENT", attributes)


def rpc_server_span(traceparent: str | None, *, name: str, queue: str) -> Any:
    """The SERVER span of handling one RPC request, child of the caller's span (the
    request's ``traceparent``); ``record_failure`` marks an error reply."""
    t = tracer()
    if t is None:
        return _NULL
    attributes = _messaging(queue, **{"rpc.system": "burrow", "rpc.method": name})
    return _span(t, f"rpc {name}", "SERVER", traceparent, attributes)


def schedule_span(*, schedule_id: str, task: str, tick: float) -> Any:
    """The PRODUCER span of a scheduler firing one tick (a new trace, unless a span is
    active); the task it submits is published inside it, so the task's publish span is
    its child."""
    t = tracer()
    if t is None:
        return _NULL
    attributes = {
        "burrow.schedule.id": schedule_id,
        "burrow.schedule.tick": tick,
        "burrow.task.name": task,
    }
    return _span(t, f"fire {schedule_id}", "PRODUCER", None, attributes)


def run_span(traceparent: str | None, *, name: str, queue: str, task_id: str, attempt: int) -> Any:
    """The CONSUMER span of one run of a task, child of the message's ``traceparent``
    (a new trace without one); active while the handler runs and its outcome is written."""
    t = tracer()
    if t is None:
        return _NULL
    attributes = _messaging(
        queue,
        "process",
        **{
            "messaging.message.id": task_id,
            "burrow.task.name": name,
            "burrow.task.attempt": attempt,
        },
    )
    return _span(t, f"run {name}", "CONSUMER", traceparent, attributes)


def webhook_span(traceparent: str | None, *, task_id: str, attempt: int) -> Any:
    """The CLIENT span of one webhook delivery attempt, child of the run that ended the
    task (the webhook message's ``traceparent``)."""
    t = tracer()
    if t is None:
        return _NULL
    attributes = {
        "http.request.method": "POST",
        "burrow.task.id": task_id,
        "burrow.webhook.attempt": attempt,
    }
    return _span(t, "webhook POST", "CLIENT", traceparent, attributes)


def record_failure(error_type: str, message: str) -> None:
    """Mark the active span failed (a run that raised, or a webhook that was refused)."""
    if tracer() is None:
        return
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    span = trace.get_current_span()
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}"[:500]))


def set_attribute(key: str, value: str | int | float | bool) -> None:
    """Set an attribute on the active span (if tracing)."""
    if tracer() is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attribute(key, value)


__all__ = [
    "batch_span",
    "configure_tracing",
    "current_traceparent",
    "enabled",
    "ensure_traceparent",
    "event_span",
    "inject",
    "publish_span",
    "record_failure",
    "reset",
    "rpc_client_span",
    "rpc_server_span",
    "run_span",
    "schedule_span",
    "server_span",
    "set_attribute",
    "set_http_status",
    "shutdown",
    "tracer",
    "use_tracer_provider",
    "webhook_span",
]
