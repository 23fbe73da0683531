"""``/api/v1/tasks``: submit (one route per registered task, plus a generic one), batch,
read with long-poll, list, cancel and retry.

No ``from __future__ import annotations`` here: the per-task routes are built at
``create_app`` time with a body model made by ``create_model``, and FastAPI must see that
model object in the endpoint's signature, not a string.
"""

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import pydantic_core
from fastapi import APIRouter, Body, Header, Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from starlette.requests import Request
from starlette.responses import Response

from burrow import tracing
from burrow.api.body import JsonRoute, parse_json
from burrow.api.deps import (
    ApiState,
    State,
    Write,
    api_state,
    bearer_token,
    check_access,
    ensure_available,
    http_span,
)
from burrow.api.deps import Read as ReadScope
from burrow.api.envelope import ApiError, Envelope, accepted, error_responses, ok
from burrow.api.longpoll import while_connected
from burrow.api.security import CallbackRefused, Scope, check_submitted_callback
from burrow.app import MAX_DELAY, Burrow
from burrow.errors import OperationTimeout, PublishTimeout
from burrow.tasks.callbacks import HDR_CALLBACK
from burrow.tasks.definition import TaskDefinition
from burrow.tasks.envelope import MAX_TASK_ID_BYTES, new_task_id, new_traceparent, trace_id_of
from burrow.tasks.record import TaskRecord
from burrow.tasks.status import TaskStatus

PREFIX = "/api/v1"
QUEUED = TaskStatus.QUEUED.value
#: The 202 body's record, built without the model (hot path): every ``TaskRecord`` field,
#: in order, at its default; a submit fills in what it knows. A new field is there too.
_NEW_RECORD: dict[str, Any] = {
    name: None if field.is_required() else field.get_default(call_default_factory=True)
    for name, field in TaskRecord.model_fields.items()
}
#: Items per batch request (the body cap applies too).
MAX_BATCH = 10_000

#: A task id is printable text of at most 255 bytes in UTF-8 (``tasks.envelope``), so at
#: most 255 characters.
TaskId = Annotated[
    str, Path(min_length=1, max_length=MAX_TASK_ID_BYTES, description="The task id.")
]
IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Repeat a submit safely: the same key returns the first task (200).",
    ),
]


class SubmitOptions(BaseModel):
    """Options of a submit; ``payload`` is added per task."""

    model_config = ConfigDict(extra="forbid")

    delay: float | None = Field(
        None, ge=0, le=MAX_DELAY, description="Seconds from now before it may start."
    )
    eta: datetime | None = Field(
        None, description="ISO 8601 time before which it may not start (a past ETA runs now)."
    )
    priority: int | None = Field(None, ge=0, le=9, description="0-9, 9 highest (default 5).")
    callback_url: str | None = Field(
        None, max_length=2048, description="http(s) URL called when the task finishes."
    )
    idempotency_key: str | None = Field(
        None, min_length=1, max_length=255, description="Same as the Idempotency-Key header."
    )


class SubmitRequest(SubmitOptions):
    """A submit to the generic route (the payload is validated by the task's model)."""

    payload: Any = None


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payload: Any = None


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResult(BaseModel):
    ids: list[str]
    count: int
    queue: str


SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Envelope[TaskRecord], "description": "The task of a repeated idempotency key"},
    **error_responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
}
READ_RESPONSES = error_responses(401, 403, 404, 422, 429, 503)


# -- submit ------------------------------------------------------------------------------


def _idempotency_key(header: str | None, body: str | None) -> str | None:
    if header is not None and body is not None and header != body:
        raise ApiError(
            422,
            "idempotency_key_mismatch",
            "the Idempotency-Key header and the body's idempotency_key differ",
        )
    key = header if header is not None else body
    if key is not None and (not key or len(key) > 255 or not key.isascii()):
        raise ApiError(
            400, "invalid_idempotency_key", "idempotency keys are 1-255 ASCII characters"
        )
    return key


def _due(options: SubmitOptions, now: float) -> float | None:
    if options.eta is None:
        return now + options.delay if options.delay else None
    eta = options.eta if options.eta.tzinfo else options.eta.replace(tzinfo=UTC)
    due = eta.timestamp()
    if due - now > MAX_DELAY:
        raise ApiError(
            422,
            "validation_error",
            f"eta is more than {MAX_DELAY:.0f} s away",
            [{"loc": ["body", "eta"], "msg": "too far in the future", "type": "eta_too_far"}],
        )
    return due


async def _callback_headers(state: ApiState, url: str | None) -> dict[str, str]:
    if url is None:
        return {}
    settings = state.burrow.settings
    try:
        async with asyncio.timeout(state.timeout):
            checked = await asyncio.to_thread(check_submitted_callback, settings, url)
    except (CallbackRefused, TimeoutError) as exc:
        reason = str(exc) or "callback_url host did not resolve in time"
        raise ApiError(
            422,
            "callback_url_forbidden",
            reason,
            [{"loc": ["body", "callback_url"], "msg": reason, "type": "callback_url_forbidden"}],
        ) from None
    return {HDR_CALLBACK: checked}


def _payload_json(payload: Any) -> Any:
    return payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload


def _check_strict_json(payload_json: Any) -> None:
    """Refuse what Python's json accepts but RFC 8259 and UTF-8 do not: NaN and Infinity
    literals, and lone surrogate escapes (they would fail later, when stored)."""
    try:
        json.dumps(payload_json, allow_nan=False, ensure_ascii=False).encode()
    except (ValueError, UnicodeEncodeError) as exc:
        raise ApiError(
            422,
            "json_invalid",
            "the payload is not valid JSON (NaN, Infinity or a lone surrogate)",
            [{"loc": ["body", "payload"], "msg": str(exc)[:200], "type": "json_invalid"}],
        ) from None


def _encode_payload(payload: Any) -> tuple[Any, bytes]:
    """The payload as JSON data and as the message body (the bytes ``Burrow.submit`` would
    publish), refusing NaN, Infinity and lone surrogates with 422 ``json_invalid``.

    One serialisation: pydantic writes NaN and Infinity as literals and fails on lone
    surrogates, so the strict check only runs again when the bytes hint at either."""
    data = _payload_json(payload)
    try:
        body = pydantic_core.to_json(data)
    except pydantic_core.PydanticSerializationError:
        _check_strict_json(data)
        raise
    if b"NaN" in body or b"Infinity" in body:  # a literal, or just text in a string
        _check_strict_json(data)
    return data, body


async def submit(
    state: ApiState,
    definition: TaskDefinition,
    options: SubmitOptions,
    payload: Any,
    header_key: str | None,
    *,
    validated: bool,
    traceparent: str | None = None,
) -> Response:
    """The submit path shared by the per-task and the generic route. ``validated``: the
    payload was validated against the task's model already (typed routes); otherwise it is
    validated here, after the availability and depth checks (as ``Burrow.submit`` did).
    ``traceparent``: the request's header; the task continues that trace (through the
    request's span when tracing), else it starts a new one."""
    app = state.burrow
    payload_json, body = _encode_payload(payload)
    key = _idempotency_key(header_key, options.idempotency_key)
    now = time.time()
    due = _due(options, now)
    headers = await _callback_headers(state, options.callback_url)
    await ensure_available(state)
    await _check_depth(state, definition.queue, 1)
    if not validated:
        definition.validate_python(payload)
    eta = app._due(None, due)
    if trace_id_of(traceparent) is None:
        traceparent = None
    traceparent = tracing.current_traceparent() or traceparent or new_traceparent()
    headers["traceparent"] = traceparent
    deadline = time.monotonic() + app.settings.publish_timeout + 1
    while True:
        task_id = new_task_id()
        try:
            async with asyncio.timeout(app.settings.publish_timeout + 1):
                handle = await app._submit_encoded(
                    definition,
                    body,
                    due=eta,
                    idempotency_key=key,
                    priority=options.priority,
                    task_id=task_id,
                    headers=headers,
                )
        except TimeoutError:
            raise PublishTimeout("the submit did not finish in time") from None
        if not handle.existing:
            break
        found = await _existing(state, handle.id, definition.name, payload_json)
        if found is not None:
            return ok(found, status=200, message="existing task for this idempotency key")
        if time.monotonic() > deadline:
            raise ApiError(
                409,
                "idempotency_key_in_use",
                "another request with this idempotency key is still being submitted",
                headers={"Retry-After": "1"},
            )
        # The first request holds the key but has not written its record yet (or failed
        # and released the key): look again shortly.
        await asyncio.sleep(0.02)
    state.metrics.count_submitted(definition.name, definition.queue, 1)
    # The record as create.lua stored it: its timestamps are the ones the script wrote
    # (Redis's clock, handed back by the submit), its ETA the one it was given.
    record = _NEW_RECORD.copy()
    record.update(
        id=task_id,
        name=definition.name,
        queue=definition.queue,
        status=QUEUED,
        payload=orjson.Fragment(body),
        max_retries=definition.max_retries,
        created_at=handle.created_at,
        updated_at=handle.created_at,
        eta=eta,
        trace_id=trace_id_of(traceparent),
    )
    return accepted(record, {"location": f"{PREFIX}/tasks/{task_id}"})


async def _existing(
    state: ApiState, task_id: str, name: str, payload_json: Any
) -> TaskRecord | None:
    record = await state.burrow.state.get(task_id)
    if record is None:
        return None
    if record.name != name or record.payload != payload_json:
        raise ApiError(
            409,
            "idempotency_key_reused",
            "this idempotency key was used for a different task or payload",
            {"task_id": task_id},
        )
    return record


async def _check_depth(state: ApiState, queue: str, adding: int) -> None:
    if not state.depth.limit:
        return
    try:
        await state.depth.check(queue, adding)
    except ApiError:
        state.metrics.rejected.labels("queue_depth").inc()
        raise
    finally:
        cached = state.depth.cached(queue)
        if cached is not None:
            state.metrics.queue_depth.labels(queue).set(cached)


async def submit_batch(
    state: ApiState, definition: TaskDefinition, payloads: list[Any], *, validated: bool
) -> Response:
    app = state.burrow
    bodies = [_encode_payload(p)[1] for p in payloads]
    await ensure_available(state)
    await _check_depth(state, definition.queue, len(payloads))
    if not validated:
        for payload in payloads:
            definition.validate_python(payload)
    try:
        async with asyncio.timeout(app.settings.publish_timeout * 2 + 1):
            ids = await app._submit_many_encoded(definition, bodies, due=None)
    except TimeoutError:
        raise PublishTimeout("the submit did not finish in time") from None
    state.metrics.count_submitted(definition.name, definition.queue, len(ids))
    return accepted({"ids": ids, "count": len(ids), "queue": definition.queue})


# -- request handling ----------------------------------------------------------------------
#
# The submit routes skip FastAPI's request handling (dependency solving, body validation
# into a model, response validation and serialisation): ``LeanRoute`` sends requests to a
# handler that checks the key, reads the raw body once, parses it with the API's strict JSON
# parser (``body.parse_json``), validates it once with the body model the endpoint declares
# (so validation errors are the ones FastAPI gives) and writes the answer with orjson. The
# endpoint functions still declare the typed body, headers and security: they document the
# operation in the OpenAPI schema.

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

_MISSING: Any = object()


def _parse_body(raw: bytes) -> Any:
    """The JSON of a request body (``body.parse_json``: 422 for anything that is not strict
    JSON, saying where), or ``_MISSING`` for an empty body."""
    return parse_json(raw) if raw else _MISSING


def _validate(adapter: TypeAdapter[Any], data: Any, errors: list[Any] | None = None) -> Any:
    """``data`` validated as the body model, as FastAPI validates a body parameter (errors
    located under ``body``, after any ``errors`` found in the path)."""
    found = list(errors or ())
    value = None
    if data is _MISSING:
        found.append({"type": "missing", "loc": ("body",), "msg": "Field required", "input": None})
    else:
        try:
            value = adapter.validate_python(data, from_attributes=True)
        except ValidationError as exc:
            found += [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
    if found:
        raise RequestValidationError(found, body=None if data is _MISSING else data)
    return value


def _name_errors(name: str) -> list[Any]:
    """The path parameter check of the generic routes (``max_length=200``)."""
    if len(name) <= 200:
        return []
    return [
        {
            "type": "string_too_long",
            "loc": ("path", "name"),
            "msg": "String should have at most 200 characters",
            "input": name,
            "ctx": {"max_length": 200},
        }
    ]


async def _read_submit(
    request: Request, definition: TaskDefinition | None, adapter: TypeAdapter[Any]
) -> tuple[ApiState, TaskDefinition, Any]:
    """Check the caller's access, then parse and validate a submit body once, and find the
    task: ``definition`` for a per-task route, the ``{name}`` path parameter for the generic
    one. The key is checked first: a caller without one learns nothing about the body."""
    state = api_state(request)
    await check_access(request, state, Scope.WRITE, bearer_token(request))
    data = _parse_body(await request.body())
    if definition is not None:
        return state, definition, _validate(adapter, data)
    name = request.path_params["name"]
    body = _validate(adapter, data, _name_errors(name))
    return state, state.burrow.registry.get(name), body


def _submit_handler(definition: TaskDefinition | None, model: type[BaseModel]) -> Handler:
    """The handler of a per-task submit route (``definition``), or of the generic one."""
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    route = f"{PREFIX}/tasks/{definition.name if definition else '{name}'}"

    async def handle(request: Request) -> Response:
        incoming = request.headers.get("traceparent")
        with http_span(request, route) as span:
            state, target, body = await _read_submit(request, definition, adapter)
            key = request.headers.get("idempotency-key")
            response = await submit(
                state,
                target,
                body,
                body.payload,
                key,
                validated=definition is not None,
                traceparent=incoming,
            )
            tracing.set_http_status(span, response.status_code)
            return response

    return handle


def _batch_handler(definition: TaskDefinition | None, model: type[BaseModel]) -> Handler:
    """The handler of a per-task batch route (``definition``), or of the generic one."""
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    route = f"{PREFIX}/tasks/{definition.name if definition else '{name}'}/batch"

    async def handle(request: Request) -> Response:
        with http_span(request, route) as span:
            state, target, body = await _read_submit(request, definition, adapter)
            payloads = [item.payload for item in body.items]
            response = await submit_batch(state, target, payloads, validated=definition is not None)
            tracing.set_http_status(span, response.status_code)
            return response

    return handle


class LeanRoute(JsonRoute):
    """An ``APIRoute`` served by its endpoint's ``lean`` handler (see above); the endpoint
    itself only documents the operation (it would give the same answers if called)."""

    def get_route_handler(self) -> Handler:
        lean: Handler | None = getattr(self.endpoint, "lean", None)
        return lean if lean is not None else super().get_route_handler()


def _lean(endpoint: Any, handler: Handler) -> Any:
    endpoint.lean = handler
    return endpoint


# -- routes --------------------------------------------------------------------------------


def _model_name(name: str, taken: set[str]) -> str:
    base = "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", name) if p)
    candidate, n = base or "Task", 2
    while candidate in taken:
        candidate, n = f"{base}{n}", n + 1
    taken.add(candidate)
    return candidate


def task_routes(app: Burrow) -> APIRouter:
    """One submit and one batch route per task registered now, typed by its payload model."""
    router = APIRouter(prefix=PREFIX, tags=["submit"], route_class=LeanRoute)
    taken: set[str] = set()
    for definition in app.registry:
        label = _model_name(definition.name, taken)
        payload_field: Any = (
            (definition.payload_type, ...) if definition.payload_type is not Any else (Any, None)
        )
        submit_model = create_model(f"Submit{label}", __base__=SubmitOptions, payload=payload_field)
        item_model = create_model(
            f"Batch{label}Item", __config__=ConfigDict(extra="forbid"), payload=payload_field
        )
        batch_model = create_model(
            f"Batch{label}",
            __config__=ConfigDict(extra="forbid"),
            items=(list[item_model], Field(min_length=1, max_length=MAX_BATCH)),  # type: ignore[valid-type]
        )
        _add_task_routes(router, definition, submit_model, batch_model)
    return router


def _add_task_routes(
    router: APIRouter, definition: TaskDefinition, submit_model: Any, batch_model: Any
) -> None:
    async def submit_one(
        body: Annotated[submit_model, Body()],
        idempotency_key: IdempotencyHeader = None,
        state: ApiState = State,
        _who: str = Write,
    ) -> Response:
        return await submit(state, definition, body, body.payload, idempotency_key, validated=True)

    async def submit_many(
        body: Annotated[batch_model, Body()],
        state: ApiState = State,
        _who: str = Write,
    ) -> Response:
        payloads = [i.payload for i in body.items]
        return await submit_batch(state, definition, payloads, validated=True)

    doc = (definition.fn.__doc__ or "").strip()
    router.add_api_route(
        f"/tasks/{definition.name}",
        _lean(submit_one, _submit_handler(definition, submit_model)),
        methods=["POST"],
        status_code=202,
        response_model=Envelope[TaskRecord],
        responses=SUBMIT_RESPONSES,
        summary=f"Submit a {definition.name} task (queue {definition.queue})",
        description=doc or None,
        operation_id=f"submit_{definition.name}",
    )
    router.add_api_route(
        f"/tasks/{definition.name}/batch",
        _lean(submit_many, _batch_handler(definition, batch_model)),
        methods=["POST"],
        status_code=202,
        response_model=Envelope[BatchResult],
        responses=error_responses(401, 403, 404, 413, 415, 422, 429, 503),
        summary=f"Submit many {definition.name} tasks",
        operation_id=f"submit_batch_{definition.name}",
    )


router = APIRouter(prefix=PREFIX, tags=["tasks"], route_class=JsonRoute)


async def submit_by_name(
    name: Annotated[str, Path(max_length=200)],
    body: SubmitRequest,
    idempotency_key: IdempotencyHeader = None,
    state: ApiState = State,
    _who: str = Write,
) -> Response:
    definition = state.burrow.registry.get(name)
    return await submit(state, definition, body, body.payload, idempotency_key, validated=False)


async def batch_by_name(
    name: Annotated[str, Path(max_length=200)],
    body: BatchRequest,
    state: ApiState = State,
    _who: str = Write,
) -> Response:
    definition = state.burrow.registry.get(name)
    payloads = [i.payload for i in body.items]
    return await submit_batch(state, definition, payloads, validated=False)


router.add_api_route(
    "/tasks/{name}",
    _lean(submit_by_name, _submit_handler(None, SubmitRequest)),
    methods=["POST"],
    status_code=202,
    response_model=Envelope[TaskRecord],
    responses=SUBMIT_RESPONSES,
    summary="Submit a task by name (the typed per-task routes document each payload)",
    route_class_override=LeanRoute,
)
router.add_api_route(
    "/tasks/{name}/batch",
    _lean(batch_by_name, _batch_handler(None, BatchRequest)),
    methods=["POST"],
    status_code=202,
    response_model=Envelope[BatchResult],
    responses=error_responses(401, 403, 404, 413, 415, 422, 429, 503),
    summary="Submit many tasks of one name",
    route_class_override=LeanRoute,
)


def generic_routes() -> tuple[LeanRoute, LeanRoute]:
    """The generic submit and batch routes (``/tasks/{name}`` and ``/tasks/{name}/batch``)."""
    found = {
        r.path: r for r in router.routes if isinstance(r, LeanRoute) and "POST" in (r.methods or ())
    }
    return found[f"{PREFIX}/tasks/{{name}}"], found[f"{PREFIX}/tasks/{{name}}/batch"]


@router.get(
    "/tasks/{task_id}",
    response_model=Envelope[TaskRecord],
    responses=READ_RESPONSES,
    summary="A task's record; ?wait=S long-polls for a terminal state",
)
async def get_task(
    task_id: TaskId,
    request: Request,
    wait: Annotated[
        float | None,
        Query(
            ge=0, description="Seconds to wait for a terminal state (capped at the server's limit)."
        ),
    ] = None,
    state: ApiState = State,
    _who: str = ReadScope,
) -> Response:
    app = state.burrow
    if wait:
        # The wait ends by its deadline, or as soon as the client goes away.
        waiting = app.wait(task_id, timeout=min(wait, state.wait_cap))
        with contextlib.suppress(OperationTimeout):  # not terminal yet: the current record
            return ok(await while_connected(request, waiting))
    async with asyncio.timeout(state.timeout):
        await app.state.open()
    return ok(await app.get(task_id))
