"""``Burrow``: the composition root. Owns the settings, registry, broker and state store of
one app, and is the producer-side API (submit, wait, dead letters).

Nothing connects at construction or import; the first operation that needs a server opens
it, and ``close()`` (or leaving ``async with app:``) closes everything.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import pydantic_core
import structlog
from pydantic import BaseModel

from burrow._clock import Clock, SystemClock
from burrow.broker.amqp import AmqpBroker
from burrow.broker.amqp.broker import QueueStats
from burrow.broker.topology import Names, QueueSpec, dead_letter_queue, work_queue
from burrow.config import Settings
from burrow.errors import BurrowError, ConfigurationError, TaskDefinitionError, TaskNotFound
from burrow.state.redis import NewTask, RedisStateStore
from burrow.tasks.definition import TaskDefinition, build_definition, check_name
from burrow.tasks.envelope import (
    HDR_ATTEMPT,
    HDR_ETA,
    HDR_ORIGIN,
    HDR_REASON,
    HDR_TRACEPARENT,
    eta_header,
    new_task_id,
    new_traceparent,
    trace_id_of,
)
from burrow.tasks.record import TaskEvent, TaskRecord
from burrow.tasks.registry import TaskRegistry
from burrow.tasks.retry import RetryPolicy
from burrow.worker.publishing import Republisher

log = structlog.get_logger("burrow")

F = TypeVar("F", bound=Callable[..., Any])

#: Longest delay accepted at submit (7 days; RELIABILITY §5 limits).
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


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message in a dead-letter queue."""

    task_id: str | None
    name: str | None
    queue: str
    reason: str
    error: dict[str, Any] | None
    runs: int | None
    body: bytes


class Burrow:
    """A burrow application: tasks, and the connections to run and submit them.

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

    # -- registration -----------------------------------------------------------------

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
    ) -> Any:
        """Register a task handler (``@app.task`` or ``@app.task(queue=..., ...)``).

        Args:
            name: task name (default: the function's name).
            queue: queue the task is consumed from (unprefixed).
            max_retries: retries after the first run (N allows N+1 runs).
            timeout: seconds one run may take.
            retry_base: first backoff delay in seconds (doubles per retry, with jitter).
            retry_cap: longest backoff delay.

        Raises:
            TaskDefinitionError: bad name, options or handler signature.
        """

        def register(func: F) -> F:
            try:
                policy = self._policy(max_retries, retry_base, retry_cap)
            except ValueError as exc:
                raise TaskDefinitionError(f"task {name or func.__name__!r}: {exc}") from None
            self.registry.add(
                build_definition(
                    func, name=name or func.__name__, queue=queue, retry=policy, timeout=timeout
                )
            )
            return func

        return register(fn) if fn is not None else register

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

    def work_queue_spec(self, queue: str) -> QueueSpec:
        s = self.settings
        return work_queue(
            self.names, queue, queue_type=s.queue_type, delivery_limit=s.delivery_limit
        )

    async def declare_queue(self, queue: str) -> None:
        """Declare ``queue``'s work queue and dead-letter queue (once per connection)."""
        if queue in self._declared and self.broker.is_declared(self.names.queue(queue)):
            return
        await self.broker.declare_queue(
            dead_letter_queue(self.names, queue, queue_type=self.settings.queue_type)
        )
        await self.broker.declare_queue(self.work_queue_spec(queue))
        self._declared.add(queue)

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
    ) -> TaskHandle:
        """Submit one task; returns once the broker confirmed the message.

        Args:
            name: a registered task name.
            payload: validated against the task's payload model (dict or model instance).
            delay: seconds from now before the task may start.
            eta: Unix time before which the task may not start (wins over ``delay``).
            idempotency_key: a repeated key returns the first task instead of a new one.
            priority: 0-9 (9 highest), for queues that support priorities.
            task_id: choose the id (default: a new UUID4).
            headers: extra message headers (e.g. ``traceparent``).

        Raises:
            UnknownTask: no such task. PayloadInvalid: the payload does not validate.
            BrokerUnavailable, PublishTimeout, PublishRejected, StateUnavailable.
        """
        definition = self.registry.get(name)
        body = self._encode(definition, payload)
        due = self._due(delay, eta)
        tid = task_id or new_task_id()
        if idempotency_key is not None:
            existing = await self._claim_key(idempotency_key, tid)
            if existing is not None:
                return TaskHandle(existing, name, definition.queue, existing=True)
        await self.connect()
        try:
            await self._create_and_publish(definition, tid, body, due, priority, headers)
        except BaseException:
            if idempotency_key is not None:
                await self.state.release_idempotency(idempotency_key, tid)
            raise
        return TaskHandle(tid, name, definition.queue)

    async def submit_many(
        self, name: str, payloads: Iterable[Any], *, delay: float | None = None
    ) -> list[TaskHandle]:
        """Submit many tasks of one kind; records are written and confirms awaited in
        pipelined windows. Returns the handles in order.

        Raises:
            The errors of ``submit``; on a failure mid-way, earlier windows stay submitted.
        """
        definition = self.registry.get(name)
        bodies = [self._encode(definition, p) for p in payloads]
        due = self._due(delay, None)
        await self.connect()
        handles: list[TaskHandle] = []
        for start in range(0, len(bodies), SUBMIT_WINDOW):
            window = bodies[start : start + SUBMIT_WINDOW]
            ids = [new_task_id() for _ in window]
            await asyncio.gather(
                *(
                    self._create_and_publish(definition, i, b, due, None, None)
                    for i, b in zip(ids, window, strict=True)
                )
            )
            handles += [TaskHandle(i, name, definition.queue) for i in ids]
        return handles

    def _encode(self, definition: TaskDefinition, payload: Any) -> bytes:
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        definition.validate_python(payload)
        body = pydantic_core.to_json(payload)
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
    ) -> None:
        hdrs: dict[str, Any] = dict(headers or {})
        traceparent = hdrs.get(HDR_TRACEPARENT)
        if trace_id_of(traceparent) is None:
            traceparent = hdrs[HDR_TRACEPARENT] = new_traceparent()
        hdrs[HDR_ATTEMPT] = 1
        await self.declare_queue(definition.queue)
        await self.state.create(
            NewTask(
                id=task_id,
                name=definition.name,
                queue=definition.queue,
                payload=body,
                max_retries=definition.max_retries,
                trace_id=trace_id_of(traceparent) or "",
                eta=due,
            )
        )
        try:
            if due is None:
                await self.broker.publish(
                    self.names.queue(definition.queue),
                    body,
                    message_id=task_id,
                    type_=definition.name,
                    headers=hdrs,
                    priority=priority,
                )
            else:
                hdrs[HDR_ETA] = eta_header(due)
                await Republisher(self.broker, self.names).publish_delayed(
                    self.names.queue(definition.queue),
                    body,
                    hdrs,
                    due,
                    message_id=task_id,
                    type_=definition.name,
                    priority=priority,
                )
        except BaseException:
            # Not accepted: forget the record so nothing claims a task that never existed.
            await asyncio.shield(self._forget(task_id))
            raise

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

    async def wait(self, task_id: str, timeout: float = 30.0) -> TaskRecord:
        """Wait for the task's terminal record.

        Raises:
            TaskNotFound: no such task.
            OperationTimeout: (a ``TimeoutError``) not terminal within ``timeout`` seconds.
        """
        await self.state.open()
        return await self.state.wait(task_id, timeout)

    # -- compensation -------------------------------------------------------------------

    async def run_on_dead(self, name: str, task_id: str) -> None:
        """Run the ``on_dead`` hooks of a task that just died, once (claimed in Redis)."""
        hooks = self.registry.on_dead(name)
        if not hooks or not await self.state.claim_on_dead(task_id):
            return
        record = await self.state.get(task_id)
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

    # -- operations -------------------------------------------------------------------

    def all_queues(self, queues: Sequence[str] | None = None) -> list[str]:
        return list(queues or self.registry.queues() or ["default"])

    async def queue_stats(self, queue: str) -> tuple[QueueStats | None, QueueStats | None]:
        """(work queue, dead-letter queue) statistics; None for a queue that does not exist."""
        await self.broker.connect(timeout=self.settings.publish_timeout)
        return (
            await self.broker.queue_stats(self.names.queue(queue)),
            await self.broker.queue_stats(self.names.dlq(queue)),
        )

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """The first ``limit`` dead letters of ``queue``, left in place."""
        await self.broker.connect(timeout=self.settings.publish_timeout)
        found = await self.broker.peek(self.names.dlq(queue), limit)
        return [_dead_letter(d, queue) for d in found]

    async def replay_dead_letters(self, queue: str, *, limit: int = 1000) -> int:
        """Move up to ``limit`` dead letters back to ``queue`` as fresh runs; returns how many.

        Each task's record is reopened (``failed`` -> ``queued``, run count reset) before its
        message is republished, and the dead letter is acked only after the confirm.
        """
        await self.connect()
        await self.declare_queue(queue)

        async def replay(delivery: Any) -> bool:
            headers = {
                k: v
                for k, v in (delivery.headers or {}).items()
                if not k.startswith(("x-burrow-", "x-death", "x-first-death", "x-last-death"))
            }
            headers[HDR_ATTEMPT] = 1
            if delivery.message_id:
                await self.state.reopen(delivery.message_id, "replayed from the dead letters")
            await self.broker.publish(
                self.names.queue(queue),
                delivery.body,
                message_id=delivery.message_id,
                type_=delivery.type,
                headers=headers,
                content_type=delivery.content_type,
            )
            return True

        return await self.broker.drain(self.names.dlq(queue), limit, replay)

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; returns how many."""
        await self.broker.connect(timeout=self.settings.publish_timeout)
        return await self.broker.purge(self.names.dlq(queue))


def _dead_letter(delivery: Any, queue: str) -> DeadLetter:
    headers = delivery.headers or {}
    error = headers.get("x-burrow-error")
    reason = headers.get(HDR_REASON)
    if reason is None:  # dead-lettered by the broker itself (delivery limit)
        deaths = headers.get("x-death") or [{}]
        reason = str(deaths[0].get("reason", "unknown")) if isinstance(deaths, list) else "unknown"
    return DeadLetter(
        task_id=delivery.message_id,
        name=delivery.type,
        queue=str(headers.get(HDR_ORIGIN, queue)),
        reason=str(reason),
        error=orjson.loads(error) if isinstance(error, str | bytes) else None,
        runs=headers.get("x-burrow-runs"),
        body=delivery.body,
    )


__all__ = ["Burrow", "DeadLetter", "TaskHandle"]
