"""``Burrow``: the composition root. Owns the settings, registry, broker and state store of
one app, and is the producer-side API (submit, wait, dead letters).

Nothing connects at construction or import; the first operation that needs a server opens
it, and ``close()`` (or leaving ``async with app:``) closes everything.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

import orjson
import pydantic_core
import structlog
from pydantic import BaseModel

from burrow import tracing
from burrow._clock import Clock, SystemClock
from burrow.broker.amqp import AmqpBroker
from burrow.broker.amqp.broker import OutgoingMessage
from burrow.broker.topology import (
    CONTROL_CANCEL,
    LANES,
    NORMAL_LANE,
    Names,
    QueueSpec,
    control_exchange,
    dead_letter_queue,
    existing_queue_type,
    lane_of,
    type_mismatch_message,
    work_queue,
)
from burrow.config import QUEUE_TYPES, QueueType, Settings
from burrow.errors import (
    BrokerError,
    BurrowError,
    ConfigurationError,
    TaskConflict,
    TaskDefinitionError,
    TaskNotFound,
)
from burrow.messaging import Messaging
from burrow.operations import DeadLetter, Operations
from burrow.scheduling import Scheduling
from burrow.state.redis import NewTask, RedisStateStore, Reopened
from burrow.tasks.callbacks import HDR_CALLBACK, callback_header
from burrow.tasks.definition import TaskDefinition, build_definition, check_name
from burrow.tasks.envelope import (
    HDR_ATTEMPT,
    HDR_ETA,
    HDR_TRACEPARENT,
    eta_header,
    new_task_id,
    new_traceparent,
    task_id_problem,
    trace_id_of,
)
from burrow.tasks.headers import check_client_headers
from burrow.tasks.listing import TaskFilter, check_limit, decode_cursor, encode_cursor
from burrow.tasks.record import TaskEvent, TaskRecord
from burrow.tasks.registry import TaskRegistry
from burrow.tasks.retry import RetryPolicy
from burrow.tasks.status import TaskStatus
from burrow.webhooks.notify import WebhookNotifier
from burrow.webhooks.urls import check_submitted_callback
from burrow.worker.publishing import Republisher

if TYPE_CHECKING:
    from fastapi import APIRouter

log = structlog.get_logger("burrow")

F = TypeVar("F", bound=Callable[..., Any])

#: Longest delay accepted at submit (7 days: longer waits belong in a schedule).
MAX_DELAY = 7 * 24 * 3600.0
#: Publishes in flight at once in ``submit_many`` (confirms are pipelined in windows).
SUBMIT_WINDOW = 1000


@dataclass(frozen=True, slots=True)
class TaskHandle:
    """A submitted task: its id, plus whether an idempotency key returned an earlier one."""

    id: str
    name: str
    queue: str
    existing: bool = False
    #: When its record was written (Unix seconds, Redis's clock, exactly as stored); None
    #: when the handle is of an existing task or of a batch.
    created_at: float | None = None


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of ``Burrow.list_tasks``: records newest first, and the cursor of the next
    page (``None`` when the listing is complete). A page may hold fewer than ``limit`` items
    and still have a next cursor: the scan per call is bounded."""

    items: list[TaskRecord]
    next_cursor: str | None


class Burrow(Messaging, Operations, Scheduling):
    """A burrow application: tasks, events and RPC, and the connections to run them.

    Events and RPC (``subscriber``, ``publish``, ``rpc``, ``call``) come from
    ``burrow.messaging.Messaging``; queue statistics and dead letters from
    ``burrow.operations.Operations``; cron schedules (``periodic``, ``add_schedule``, ...)
    from ``burrow.scheduling.Scheduling``.

    Args:
        namespace: prefix of every queue and key (default: ``BURROW_NAMESPACE``).
        settings: all settings; default read from ``BURROW_*`` variables once, here.
        clock: time source (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        namespace: str | None = None,
        settings: Settings | None = None,
        clock: Clock | None = None,
    ) -> None:
        base = settings or Settings()
        if namespace is not None:
            base = base.model_copy(update={"namespace": Settings(namespace=namespace).namespace})
        self.settings = base
        self.names = Names(base.namespace)
        self.registry = TaskRegistry()
        self.clock: Clock = clock or SystemClock()
        self._broker: AmqpBroker | None = None
        self._state: RedisStateStore | None = None
        self._declared: set[str] = set()
        #: Types set in code with ``@app.task(queue_type=...)``: queue -> (type, task name).
        self._queue_types: dict[str, tuple[QueueType, str]] = {}
        #: Queues with priority lanes (``@app.task(priorities=True)``).
        self.priority_queues: set[str] = set()
        self._init_messaging()
        self._init_scheduling()
        #: Extra HTTP routes served next to burrow's API (``include_router``).
        self.routers: list[APIRouter] = []
        #: The ones of ``routers`` included with ``public=True`` (served without a key).
        self.public_routers: list[APIRouter] = []

    # -- registration -----------------------------------------------------------------

    @overload
    def task(self, fn: F, /) -> F: ...

    @overload
    def task(
        self,
        fn: None = None,
        *,
        name: str | None = None,
        queue: str = "default",
        max_retries: int | None = None,
        timeout: float | None = None,
        retry_base: float | None = None,
        retry_cap: float | None = None,
        queue_type: QueueType | None = None,
        rate_limit: str | None = None,
        priorities: bool = False,
    ) -> Callable[[F], F]: ...

    def task(
        self,
        fn: F | None = None,
        *,
        name: str | None = None,
        queue: str = "default",
        max_retries: int | None = None,
        timeout: float | None = None,
        retry_base: float | None = None,
        retry_cap: float | None = None,
        queue_type: QueueType | None = None,
        rate_limit: str | None = None,
        priorities: bool = False,
    ) -> F | Callable[[F], F]:
        """Register a task handler (``@app.task`` or ``@app.task(queue=..., ...)``).

        Args:
            name: task name (default: the function's name).
            queue: queue the task is consumed from (unprefixed).
            max_retries: retries after the first run (N allows N+1 runs).
            timeout: seconds one run may take.
            retry_base: first backoff delay in seconds (doubles per retry, with jitter).
            retry_cap: longest backoff delay.
            queue_type: ``"quorum"`` or ``"classic"``: the type of ``queue`` and its
                dead-letter queue (default: ``BURROW_QUEUE_TYPE``). Other tasks on the same
                queue may leave it out; ``BURROW_QUEUE_TYPES`` overrides it.
            rate_limit: at most so many starts, e.g. ``"10/s"``, ``"100/m"``, ``"1000/h"``,
                in any window of that length across all workers; a task over its limit
                waits for its slot without holding a worker's concurrency slot.
            priorities: give ``queue`` priority lanes (``{queue}.high``, ``{queue}.low``
                next to ``{queue}``), so workers start higher ``priority`` submits first
                (docs/architecture.md). One task that asks is enough for the whole queue.

        Raises:
            TaskDefinitionError: bad name, options or handler signature, or a ``queue_type``
                other than one given earlier for the same queue.
        """

        def register(func: F) -> F:
            task_name = name or func.__name__
            try:
                policy = self._policy(max_retries, retry_base, retry_cap)
            except ValueError as exc:
                raise TaskDefinitionError(f"task {task_name!r}: {exc}") from None
            if queue_type is not None:
                self._check_queue_type(task_name, queue, queue_type)
            self.registry.add(
                build_definition(
                    func,
                    name=task_name,
                    queue=queue,
                    retry=policy,
                    timeout=timeout,
                    rate_limit=rate_limit,
                )
            )
            if queue_type is not None:
                self._queue_types.setdefault(queue, (queue_type, task_name))
            if priorities:
                self.priority_queues.add(queue)
            return func

        return register(fn) if fn is not None else register

    def _check_queue_type(self, task_name: str, queue: str, queue_type: str) -> None:
        if queue_type not in QUEUE_TYPES:
            raise TaskDefinitionError(
                f"task {task_name!r}: queue_type must be one of {', '.join(QUEUE_TYPES)}, "
                f"not {queue_type!r}"
            )
        earlier = self._queue_types.get(queue)
        if earlier is not None and earlier[0] != queue_type:
            raise TaskDefinitionError(
                f"task {task_name!r}: queue {queue!r} is {queue_type} here but {earlier[0]} "
                f"for task {earlier[1]!r}; a queue has one type, so give both tasks the same "
                "queue_type= (or leave it out on one of them)"
            )

    def _policy(
        self, max_retries: int | None, base: float | None, cap: float | None
    ) -> RetryPolicy:
        r = self.settings.retry
        return RetryPolicy(
            max_retries=r.max_retries if max_retries is None else max_retries,
            base=base or r.base,
            factor=r.factor,
            cap=cap or r.cap,
            jitter=r.jitter,
        )

    def on_dead(self, name: str) -> Callable[[F], F]:
        """Register a compensation hook, run once with the record when a ``name`` task dies."""
        check_name("task", name)

        def register(func: F) -> F:
            self.registry.add_on_dead(name, func)
            return func

        return register

    def include_router(self, router: APIRouter, *, public: bool = False) -> None:
        """Serve ``router``'s routes from this app's HTTP API (``burrow api``, ``burrow up``),
        next to ``/api/v1``, the dashboard and the health endpoints.

        For an application's own endpoints (e.g. ``POST /orders`` of examples/shop) that
        submit tasks or publish events: one process, one port, one set of API middleware
        (body limit, request metrics, Host and Origin checks). Errors, validation errors
        included, are answered in burrow's envelope and documented so in ``/openapi.json``.

        With ``BURROW_API_KEYS`` set, the routes need a key like ``/api/v1`` does: the
        ``read`` scope for ``GET`` and ``HEAD``, ``write`` for any other method (401 without
        a key, 403 without the scope; the rate limit applies). ``public=True`` serves every
        route of ``router`` without a key (a status page, a webhook receiver that checks its
        own signature); put public routes on a router of their own.

        Routes must not use the paths burrow serves (``/api/v1``, ``/ui``, ``/healthz``,
        ``/readyz``, ``/metrics``, ``/docs``, ``/openapi.json``); ``create_app`` refuses
        them. Register before the API is built.
        """
        self.routers.append(router)
        if public:
            self.public_routers.append(router)

    # -- components -------------------------------------------------------------------

    @property
    def broker(self) -> AmqpBroker:
        if self._broker is None:
            self._broker = AmqpBroker(
                self.settings.amqp, connection_name=f"burrow:{self.names.namespace}"
            )
        return self._broker

    @property
    def state(self) -> RedisStateStore:
        if self._state is None:
            self._state = RedisStateStore(self.settings.redis, namespace=self.names.namespace)
        return self._state

    async def connect(self, *, timeout: float | None = None) -> None:
        """Open the broker connection and the state store (idempotent).

        Args:
            timeout: give up on the broker after this long (default: ``publish_timeout``).

        Raises:
            BrokerUnavailable: the broker did not answer in time.
            StateUnavailable: Redis did not answer.
        """
        await self.state.open()
        await self.broker.connect(
            timeout=self.settings.publish_timeout if timeout is None else timeout
        )

    async def close(self) -> None:
        """Close connections; safe to call twice."""
        await self._close_messaging()
        if self._broker is not None:
            await self._broker.close()
        if self._state is not None:
            await self._state.close()
        self._declared.clear()

    async def __aenter__(self) -> Burrow:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- topology ---------------------------------------------------------------------

    def queue_type(self, queue: str) -> QueueType:
        """The type ``queue`` and its dead-letter queue are declared with.

        The most specific setting wins: ``BURROW_QUEUE_TYPES`` (``settings.queue_types``),
        then ``@app.task(queue_type=...)``, then ``BURROW_QUEUE_TYPE``.
        """
        return self._queue_type_and_source(queue)[0]

    def _queue_type_and_source(self, queue: str) -> tuple[QueueType, str]:
        s = self.settings
        if queue in s.queue_types:
            return s.queue_types[queue], "BURROW_QUEUE_TYPES"
        if queue in self._queue_types:
            kind, task_name = self._queue_types[queue]
            return kind, f"queue_type= of task {task_name!r}"
        return s.queue_type, "BURROW_QUEUE_TYPE, the default"

    def lanes(self, queue: str) -> tuple[str, ...]:
        """The priority lanes of ``queue``, highest first (just the normal one for a
        queue without priorities)."""
        return LANES if queue in self.priority_queues else (NORMAL_LANE,)

    def route(self, queue: str, priority: int | None) -> str:
        """The work queue a task message of ``priority`` goes to (its lane's)."""
        if queue in self.priority_queues:
            return self.names.lane(queue, lane_of(priority))
        return self.names.queue(queue)

    def work_queue_spec(self, queue: str, lane: str = NORMAL_LANE) -> QueueSpec:
        return work_queue(
            self.names,
            queue,
            queue_type=self.queue_type(queue),
            delivery_limit=self.settings.delivery_limit,
            lane=lane,
        )

    async def declare_queue(self, queue: str) -> None:
        """Declare ``queue``'s work queue and dead-letter queue (once per connection).

        Raises:
            ConfigurationError: one of them exists on the broker with another type.
            BrokerError: any other refusal or failure of the broker.
        """
        if queue in self._declared and self.broker.is_declared(self.names.queue(queue)):
            return
        kind = self.queue_type(queue)
        await self._declare(queue, dead_letter_queue(self.names, queue, queue_type=kind))
        for lane in self.lanes(queue):
            await self._declare(queue, self.work_queue_spec(queue, lane))
        self._declared.add(queue)

    async def _declare(self, queue: str, spec: QueueSpec) -> None:
        try:
            await self.broker.declare_queue(spec)
        except BrokerError as exc:
            requested, source = self._queue_type_and_source(queue)
            existing = existing_queue_type(str(exc), requested=requested)
            if existing is None:
                raise
            raise ConfigurationError(
                type_mismatch_message(spec.name, queue, existing, requested, source)
            ) from exc

    # -- producing --------------------------------------------------------------------

    async def submit(
        self,
        name: str,
        payload: Any = None,
        *,
        delay: float | None = None,
        eta: float | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        headers: dict[str, Any] | None = None,
        callback_url: str | None = None,
    ) -> TaskHandle:
        """Submit one task; returns once the broker confirmed the message.

        Args:
            name: a registered task name.
            payload: validated against the task's payload model (dict or model instance).
            delay: seconds from now before the task may start.
            eta: Unix time before which the task may not start (wins over ``delay``).
            idempotency_key: a repeated key returns the first task instead of a new one.
            priority: 0-9 (9 highest), for queues that support priorities.
            task_id: choose the id (default: a new UUID4). If a task with this id exists,
                it is returned (``existing=True``), its record unchanged; its message is
                published again only while it is still ``queued`` (which repairs a
                submit that crashed between the record and the publish).
            headers: extra message headers (e.g. ``traceparent``, application headers a
                handler reads); burrow's own ``x-burrow-*`` and headers the broker acts on
                (``CC``, ``BCC``, ``x-match``, ...) are refused.
            callback_url: http(s) URL that gets a signed POST when the task ends
                (docs/webhooks.md); checked against SSRF here and at every delivery.

        Raises:
            UnknownTask: no such task. PayloadInvalid: the payload does not validate.
            CallbackRefused: ``callback_url`` is refused (SSRF rules), or no
                ``BURROW_WEBHOOK_SECRET`` is set.
            HeaderRefused: (a ``ConfigurationError``) a header a client may not send.
            ConfigurationError: ``task_id`` is not printable text of at most 255 bytes.
            BrokerUnavailable, PublishTimeout, PublishRejected, StateUnavailable.
        """
        if task_id is not None and (problem := task_id_problem(task_id)) is not None:
            raise ConfigurationError(f"task_id refused: {problem}")
        check_client_headers(headers)
        definition = self.registry.get(name)
        body = self._encode(definition, payload)
        if callback_url is not None:
            checked = await asyncio.to_thread(check_submitted_callback, self.settings, callback_url)
            headers = {**(headers or {}), HDR_CALLBACK: checked}
        return await self._submit_encoded(
            definition,
            body,
            due=self._due(delay, eta),
            idempotency_key=idempotency_key,
            priority=priority,
            task_id=task_id,
            headers=headers,
        )

    async def _submit_encoded(
        self,
        definition: TaskDefinition,
        body: bytes,
        *,
        due: float | None,
        idempotency_key: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> TaskHandle:
        """``submit`` of a payload already validated and encoded (``body``, the JSON of
        the payload as ``_encode`` makes it), with ``due`` from ``_due``. For callers that
        validated the payload themselves (the HTTP API): nothing here validates it again.

        Raises:
            ConfigurationError: ``body`` is over ``max_message_bytes``. Otherwise as ``submit``.
        """
        self._check_size(body)
        name = definition.name
        tid = task_id or new_task_id()
        if idempotency_key is not None:
            existing = await self._claim_key(idempotency_key, tid)
            if existing is not None:
                return TaskHandle(existing, name, definition.queue, existing=True)
        await self.connect()
        try:
            created_at = await self._create_and_publish(
                definition, tid, body, due, priority, headers
            )
        except BaseException:
            if idempotency_key is not None:
                await self.state.release_idempotency(idempotency_key, tid)
            raise
        return TaskHandle(
            tid, name, definition.queue, existing=created_at is None, created_at=created_at
        )

    async def submit_many(
        self,
        name: str,
        payloads: Iterable[Any],
        *,
        delay: float | None = None,
        priority: int | None = None,
    ) -> list[TaskHandle]:
        """Submit many tasks of one kind; records are written and confirms awaited in
        pipelined windows. Returns the handles in order. ``delay`` and ``priority`` apply
        to every task, as in ``submit``.

        Raises:
            The errors of ``submit``. On a failure mid-way the tasks of earlier windows,
            and those of the failing window that the broker confirmed, stay submitted;
            the records of the ones it did not take are deleted.
        """
        definition = self.registry.get(name)
        bodies = [self._encode(definition, p) for p in payloads]
        due = self._due(delay, None)
        ids = await self._submit_many_encoded(definition, bodies, due=due, priority=priority)
        return [TaskHandle(i, name, definition.queue) for i in ids]

    async def _submit_many_encoded(
        self,
        definition: TaskDefinition,
        bodies: list[bytes],
        *,
        due: float | None,
        priority: int | None = None,
    ) -> list[str]:
        """``submit_many`` of payloads already validated and encoded (``bodies``, each
        within ``max_message_bytes``), with ``due`` from ``_due``; returns the task ids in
        order. Raises as ``submit_many``."""
        for body in bodies:
            self._check_size(body)
        await self.connect()
        await self.declare_queue(definition.queue)
        submitted: list[str] = []
        # One span for the batch (if tracing): every task's traceparent is its context.
        with tracing.batch_span(name=definition.name, queue=definition.queue, count=len(bodies)):
            for start in range(0, len(bodies), SUBMIT_WINDOW):
                window = bodies[start : start + SUBMIT_WINDOW]
                ids = [new_task_id() for _ in window]
                if due is None:
                    await self._submit_window(definition, ids, window, priority)
                else:
                    await asyncio.gather(
                        *(
                            self._create_and_publish(definition, i, b, due, priority, None)
                            for i, b in zip(ids, window, strict=True)
                        )
                    )
                submitted += ids
        return submitted

    async def _submit_window(
        self,
        definition: TaskDefinition,
        ids: list[str],
        bodies: list[bytes],
        priority: int | None = None,
    ) -> None:
        """Records for a window of tasks in one pipeline, then their messages pipelined on
        one confirm channel; records of messages the broker did not take are deleted."""
        messages: list[OutgoingMessage] = []
        records: list[NewTask] = []
        shared = tracing.current_traceparent()  # the batch span's (if tracing)
        for task_id, body in zip(ids, bodies, strict=True):
            traceparent = shared or new_traceparent()
            records.append(
                NewTask(
                    id=task_id,
                    name=definition.name,
                    queue=definition.queue,
                    payload=body,
                    max_retries=definition.max_retries,
                    trace_id=trace_id_of(traceparent) or "",
                )
            )
            headers = {HDR_TRACEPARENT: traceparent, HDR_ATTEMPT: 1}
            messages.append(OutgoingMessage(body, task_id, headers))
        failed = [e for e in await self.state.create_many(records) if e is not None]
        if failed:
            await asyncio.gather(*(self._forget(i) for i in ids))
            raise failed[0]
        errors = await self.broker.publish_many(
            self.route(definition.queue, priority),
            messages,
            type_=definition.name,
            priority=priority,
        )
        lost = [i for i, e in zip(ids, errors, strict=True) if e is not None]
        if lost:
            await asyncio.shield(asyncio.gather(*(self._forget(i) for i in lost)))
            raise next(e for e in errors if e is not None)

    def _encode(self, definition: TaskDefinition, payload: Any) -> bytes:
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        definition.validate_python(payload)
        return self._check_size(pydantic_core.to_json(payload))

    def _check_size(self, body: bytes) -> bytes:
        if len(body) > self.settings.max_message_bytes:
            raise ConfigurationError(
                f"payload is {len(body)} bytes; the limit is {self.settings.max_message_bytes}"
            )
        return body

    def _due(self, delay: float | None, eta: float | None) -> float | None:
        now = self.clock.time()
        if eta is None and delay is None:
            return None
        due = eta if eta is not None else now + float(delay or 0)
        if due - now > MAX_DELAY:
            raise ConfigurationError(f"delay longer than {MAX_DELAY:.0f} s")
        return due if due > now else None

    async def _claim_key(self, key: str, task_id: str) -> str | None:
        if not key or len(key) > 255 or not key.isascii():
            raise ConfigurationError("idempotency keys are 1-255 ASCII characters")
        await self.state.open()
        return await self.state.claim_idempotency(key, task_id)

    async def _create_and_publish(
        self,
        definition: TaskDefinition,
        task_id: str,
        body: bytes,
        due: float | None,
        priority: int | None,
        headers: dict[str, Any] | None,
    ) -> float | None:
        """Write the record, then publish; returns the record's ``created_at``, or None
        when a task with ``task_id`` already exists (see ``submit``'s ``task_id``)."""
        hdrs: dict[str, Any] = dict(headers or {})
        traceparent = tracing.ensure_traceparent(hdrs)
        hdrs[HDR_ATTEMPT] = 1
        await self.declare_queue(definition.queue)
        created_at = await self.state.create(
            NewTask(
                id=task_id,
                name=definition.name,
                queue=definition.queue,
                payload=body,
                max_retries=definition.max_retries,
                trace_id=trace_id_of(traceparent) or "",
                eta=due,
                callback_url=callback_header(hdrs),
            )
        )
        if created_at is None:
            existing = await self.state.get(task_id)
            if existing is not None and existing.status is TaskStatus.QUEUED:
                # Still queued: its message may have been lost (a crash between the record
                # and the publish). Publish again; workers run a task once, whatever the
                # copies. The record is not ours to delete if this fails.
                await self._publish_task(
                    definition.queue, definition.name, task_id, body, due, priority, hdrs
                )
            return None
        try:
            # The publish span (if tracing) puts its own context in hdrs' traceparent.
            with tracing.publish_span(
                hdrs, name=definition.name, queue=definition.queue, task_id=task_id
            ):
                await self._publish_task(
                    definition.queue, definition.name, task_id, body, due, priority, hdrs
                )
        except BaseException:
            # Not accepted: forget the record so nothing claims a task that never existed.
            await asyncio.shield(self._forget(task_id))
            raise
        return created_at

    async def _publish_task(
        self,
        queue: str,
        name: str,
        task_id: str,
        body: bytes,
        due: float | None,
        priority: int | None,
        hdrs: dict[str, Any],
    ) -> None:
        """Publish a task message (through a delay tier when ``due``), confirmed."""
        if due is None:
            await self.broker.publish(
                self.route(queue, priority),
                body,
                message_id=task_id,
                type_=name,
                headers=hdrs,
                priority=priority,
            )
            return
        hdrs[HDR_ETA] = eta_header(due)
        await Republisher(self.broker, self.names).publish_delayed(
            self.route(queue, priority),
            body,
            hdrs,
            due,
            message_id=task_id,
            type_=name,
            priority=priority,
        )

    async def _forget(self, task_id: str) -> None:
        try:
            await self.state.delete(task_id)
        except BurrowError as exc:
            log.warning(
                "could not delete the record of an unpublished task",
                task_id=task_id,
                error=str(exc),
            )

    # -- reading ----------------------------------------------------------------------

    async def get(self, task_id: str) -> TaskRecord:
        """The task's record.

        Raises:
            TaskNotFound: no such task (or its record expired).
        """
        await self.state.open()
        record = await self.state.get(task_id)
        if record is None:
            raise TaskNotFound(task_id)
        return record

    async def history(self, task_id: str) -> list[TaskEvent]:
        await self.state.open()
        return await self.state.history(task_id)

    async def wait(
        self, task_id: str, timeout: float = 30.0, *, missing_ok: bool | None = None
    ) -> TaskRecord:
        """Wait for the task's terminal record.

        Args:
            missing_ok: keep waiting while the task has no record yet instead of raising
                ``TaskNotFound``. Default: True for the run of an event by one of this
                app's subscribers (``"{event_id}:{subscriber}"``), which a worker records
                only when it receives the event; False otherwise.

        Raises:
            TaskNotFound: no such task (and not ``missing_ok``).
            OperationTimeout: (a ``TimeoutError``) not terminal within ``timeout`` seconds.
        """
        if missing_ok is None:
            _, sep, tail = task_id.rpartition(":")
            missing_ok = bool(sep) and self.handlers.subscriber(tail) is not None
        await self.state.open()
        return await self.state.wait(task_id, timeout, missing_ok=missing_ok)

    async def list_tasks(
        self,
        *,
        status: TaskStatus | None = None,
        name: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """Task records, newest first (by ``created_at``), optionally filtered.

        Pass the page's ``next_cursor`` back as ``cursor`` for the next page. Each task is
        listed at most once across the pages of one listing, also while tasks are submitted
        in between (they sort before the first page). The scan per call is bounded, so a
        narrow filter can return a short or empty page whose ``next_cursor`` is still set;
        the listing is complete only when ``next_cursor`` is None. Records that expired
        (``BURROW_RESULT_TTL``) are not listed.

        Args:
            status: only tasks in this status.
            name: only tasks of this name.
            queue: only tasks of this queue (unprefixed).
            limit: page size, 1-500.
            cursor: the ``next_cursor`` of the previous page (None: the newest tasks).

        Raises:
            ConfigurationError: ``limit`` out of range or a malformed ``cursor``.
            StateUnavailable: Redis cannot be reached.
        """
        check_limit(limit)
        after = decode_cursor(cursor) if cursor is not None else None
        try:
            wanted = TaskStatus(status) if status is not None else None
        except ValueError:
            raise ConfigurationError(
                f"unknown status {status!r}; one of {', '.join(TaskStatus)}"
            ) from None
        where = TaskFilter(status=wanted, name=name, queue=queue)
        await self.state.open()
        records, position = await self.state.list_tasks(after=after, limit=limit, where=where)
        return TaskPage(records, encode_cursor(position) if position is not None else None)

    async def cancel(self, task_id: str) -> TaskRecord:
        """Cancel a task that has not finished; returns its ``cancelled`` record.

        A queued or retrying task never runs: its message is acked unrun when a worker
        meets it. For a running task every worker is told through the ``{ns}.control``
        exchange; an async handler is cancelled at once (it sees ``CancelledError``), while
        a sync handler cannot be interrupted: it runs to its end and its result or error is
        discarded. Either way the record stays ``cancelled`` (terminal, write-once), and
        ``wait`` returns it.

        If the broker cannot be reached to tell the workers, the task is still cancelled (a
        warning is logged): the running handler is just not interrupted, and its outcome is
        discarded all the same.

        Raises:
            TaskNotFound: no such task (or its record expired).
            TaskConflict: the task already finished (succeeded, failed or cancelled).
            StateUnavailable: Redis cannot be reached.
        """
        await self.state.open()
        done = await self.state.cancel(task_id, "cancelled on request")
        if done.code == "missing":
            raise TaskNotFound(task_id)
        if done.code == "terminal":
            raise TaskConflict(task_id, done.status, "cancel")
        if done.status == TaskStatus.RUNNING.value and done.lease:
            await self._tell_workers_cancel(task_id, done.lease)
        await self._cancel_webhook(task_id)
        return await self.get(task_id)

    async def _cancel_webhook(self, task_id: str) -> None:
        """Enqueue the webhook of a task cancelled here, if it has a callback URL. Should
        that fail, a worker enqueues it when it meets the task's message (acked unrun)."""
        url = await self.state.callback_url(task_id) or self.settings.callback_url
        if not url:
            return
        notifier = WebhookNotifier(
            broker=self.broker, state=self.state, names=self.names, settings=self.settings
        )
        try:
            await self.broker.connect(timeout=self.settings.publish_timeout)
            await notifier.notify(task_id, url)
        except BurrowError as exc:
            log.warning(
                "task cancelled, but its webhook could not be enqueued yet",
                task_id=task_id,
                error=str(exc),
            )

    async def _tell_workers_cancel(self, task_id: str, lease: str) -> None:
        body = orjson.dumps({"task_id": task_id, "lease": lease})
        try:
            await self.broker.connect(timeout=self.settings.publish_timeout)
            await self.broker.broadcast(control_exchange(self.names), body, type_=CONTROL_CANCEL)
        except BrokerError as exc:
            log.warning(
                "task cancelled, but the workers could not be told to stop it",
                task_id=task_id,
                error=str(exc),
            )

    async def retry(self, task_id: str) -> TaskHandle:
        """Run a failed or cancelled task again, under the same id.

        The record is reopened (``queued``, run count reset to 0, the old result and error
        cleared; the history keeps them) and the stored payload is published again as a new
        message with attempt 1. If that publish fails, the record is put back to its
        previous status and the error raised.

        Raises:
            TaskNotFound: no such task (or its record expired).
            TaskConflict: the task is not failed or cancelled.
            BrokerUnavailable, PublishTimeout, PublishRejected, StateUnavailable.
        """
        await self.connect()
        reopened = await self.state.reopen_for_run(task_id, "retried on request")
        if reopened is None:
            raise TaskNotFound(task_id)
        if isinstance(reopened, str):
            raise TaskConflict(task_id, reopened, "retry")
        traceparent = new_traceparent()
        kept = f"00-{reopened.trace_id}-{traceparent[36:52]}-01"
        if trace_id_of(kept) is not None:  # keep the task's trace, as a new span
            traceparent = kept
        headers: dict[str, Any] = {HDR_TRACEPARENT: traceparent, HDR_ATTEMPT: 1}
        try:
            await self.declare_queue(reopened.queue)
            await self._publish_task(
                reopened.queue, reopened.name, task_id, reopened.payload, None, None, headers
            )
        except BaseException as exc:
            await asyncio.shield(self._undo_reopen(task_id, reopened, exc))
            raise
        return TaskHandle(task_id, reopened.name, reopened.queue)

    async def _undo_reopen(self, task_id: str, reopened: Reopened, exc: BaseException) -> None:
        """Put a reopened task back to its terminal status: its message never went out."""
        try:
            await self.state.finish(
                task_id,
                token="",
                status=TaskStatus(reopened.previous),
                error=reopened.error,
                note=f"retry not published: {type(exc).__name__}: {exc}"[:500],
            )
        except BurrowError as undo:
            log.exception(
                "retry not published and the record could not be restored; it stays queued",
                task_id=task_id,
                error=str(undo),
            )

    # -- compensation -------------------------------------------------------------------

    async def run_on_dead(self, name: str, task_id: str) -> None:
        """Run the ``on_dead`` hooks of a dead (``failed``) task, once: claimed in Redis, so
        the worker may call this for every delivery of a finished task and only the first
        call for a failed one runs them. A crash while a hook runs leaves it claimed (not
        run again): hooks should be idempotent anyway."""
        hooks = self.registry.on_dead(name)
        if not hooks:
            return
        record = await self.state.get(task_id)
        if record is None or record.status is not TaskStatus.FAILED:
            return
        if not await self.state.claim_on_dead(task_id):
            return
        outcome = "done"
        for hook in hooks:
            try:
                result = hook(record)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                outcome = f"error: {type(exc).__name__}: {exc}"[:500]
                log.exception("on_dead hook failed", task=name, task_id=task_id)
        await self.state.set_on_dead(task_id, outcome)


__all__ = ["Burrow", "DeadLetter", "TaskHandle", "TaskPage"]
