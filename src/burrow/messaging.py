"""Events and RPC on the app: ``@app.subscriber``, ``app.publish``, ``@app.rpc``, ``app.call``.

``Messaging`` is a mixin of ``Burrow`` (the composition root), kept in its own module so the
producer and registration API of events and RPC lives apart from the task API.

Choices (docs/architecture.md, docs/wire-format.md):

* **Events are untyped at publish.** One event may reach subscribers with different
  payload models, so ``publish`` only encodes the payload as JSON; each subscriber
  validates it against its own model, and a payload it cannot take is dead-lettered from
  that subscriber's queue (``validation_error``), never retried.
* **Unroutable events are not errors.** ``publish`` is confirmed, persistent and has a
  timeout, but is not ``mandatory``: an event that no queue is bound for is dropped by the
  broker, the usual publish/subscribe meaning (nobody is interested). Tasks differ: an
  unroutable task is an error.
* **RPC calls validate when they can.** When this app registered the handler, ``call``
  validates the payload first (``PayloadInvalid``); otherwise it is sent as it is, and the
  server's validation error comes back as an ``RpcError``.
* **RPC replies are at-most-once** and keep no Redis record: a call that gets no reply in
  time raises ``RpcTimeout``; the request may or may not have run.
* **Headers are checked before anything is sent.** ``publish`` and ``call`` refuse a header
  a client may not send (``tasks.headers.check_client_headers``: ``CC``/``BCC``, the broker's
  ``x-`` names, burrow's own ``x-burrow-*``, an invalid ``traceparent``...) with
  ``HeaderRefused``, and a routing key, exchange name or event id AMQP cannot carry with a
  ``ConfigurationError``: a bad message never reaches the shared publish channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import pydantic_core
from pydantic import BaseModel

from burrow import tracing
from burrow.broker.amqp.rpc import RpcClient, RpcReply
from burrow.broker.topology import (
    Exchange,
    broadcast_base,
    check_routing_key,
    event_exchange,
)
from burrow.errors import (
    BrokerError,
    ConfigurationError,
    PayloadInvalid,
    RpcError,
    RpcTimeout,
    TaskDefinitionError,
    UnknownExchange,
    Unroutable,
)
from burrow.tasks.definition import build_definition
from burrow.tasks.envelope import new_task_id, task_id_problem
from burrow.tasks.handlers import (
    HDR_DEADLINE,
    HDR_RPC_STATUS,
    RPC_ERROR,
    HandlerRegistry,
    HeadersMatch,
    Subscriber,
    subscriber_binding,
)
from burrow.tasks.headers import check_client_headers
from burrow.tasks.retry import RetryPolicy

if TYPE_CHECKING:
    from burrow.broker.amqp import AmqpBroker
    from burrow.broker.topology import Names
    from burrow.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

#: Default seconds ``call`` waits for a reply.
CALL_TIMEOUT = 30.0


class Messaging:
    """Events and RPC of a ``Burrow`` app (mixin; see the module docstring)."""

    if TYPE_CHECKING:
        settings: Settings
        names: Names

        @property
        def broker(self) -> AmqpBroker: ...

        def _policy(
            self, max_retries: int | None, base: float | None, cap: float | None
        ) -> RetryPolicy: ...

    def _init_messaging(self) -> None:
        #: Subscribers and RPC handlers (tasks stay in ``registry``).
        self.handlers = HandlerRegistry()
        self._rpc_client: RpcClient | None = None
        self._rpc_lock = asyncio.Lock()
        self._exchanges_seen: set[str] = set()

    # -- registration -----------------------------------------------------------------

    def subscriber(
        self,
        exchange: Exchange,
        binding: str | list[str] | dict[str, Any] | None = None,
        queue: str | None = None,
        *,
        name: str | None = None,
        headers_match: HeadersMatch = "all",
        max_retries: int | None = None,
        timeout: float | None = None,
        retry_base: float | None = None,
        retry_cap: float | None = None,
        rate_limit: str | None = None,
    ) -> Callable[[F], F]:
        """Register an event handler on ``exchange`` (async, or sync in the thread pool).

        The handler takes a payload (validated against its annotation, like a task's) and
        optionally a ``TaskContext``; retries, timeouts and dead letters work as for tasks,
        and each event runs at most once to completion per subscriber (dedupe by the
        event's ``message_id``).

        Args:
            exchange: the ``Exchange`` (declared as ``{ns}.{name}``).
            binding: routing key or list of keys (direct, topic: ``*`` one word, ``#``
                zero or more), a dict of header values (headers), ignored for fanout.
            queue: a shared durable queue ``{ns}.{queue}``: the running instances split
                the events. Without it every worker process gets its own exclusive queue
                (broadcast: each instance gets every event).
            name: the subscriber's name (default: the function's name): the name of its
                records and of its dedupe key.
            headers_match: ``"all"`` or ``"any"`` for a headers binding without ``x-match``.
            max_retries, timeout, retry_base, retry_cap, rate_limit: as for ``@app.task``
                (the rate limit is shared by every instance of this subscriber).

        Raises:
            TaskDefinitionError: a bad binding for the exchange type, name, queue or
                signature, or a name or shared queue already taken.
        """

        def register(func: F) -> F:
            sub_name = name or func.__name__
            try:
                event_exchange(self.names, exchange)  # the AMQP limit on the full name
            except ConfigurationError as exc:
                raise TaskDefinitionError(f"subscriber {sub_name!r}: {exc}") from None
            keys, headers = subscriber_binding(exchange, binding, headers_match)
            try:
                policy = self._policy(max_retries, retry_base, retry_cap)
            except ValueError as exc:
                raise TaskDefinitionError(f"subscriber {sub_name!r}: {exc}") from None
            definition = build_definition(
                func,
                name=sub_name,
                queue=queue or broadcast_base(sub_name),
                retry=policy,
                timeout=timeout,
                rate_limit=rate_limit,
            )
            self.handlers.add_subscriber(
                Subscriber(definition, exchange, keys, headers, shared=queue is not None)
            )
            return func

        return register

    def rpc(self, name: str | None = None, *, timeout: float | None = None) -> Callable[[F], F]:
        """Register an RPC handler consuming ``{ns}.rpc.{name}``; its return value (any
        JSON-serialisable value or model) is the reply, and an exception it raises goes
        back to the caller as an ``RpcError``.

        Args:
            name: the RPC name (default: the function's name).
            timeout: seconds one call may run (default ``BURROW_TASK_TIMEOUT``).

        Raises:
            TaskDefinitionError: a bad name or signature, or the name is taken.
        """

        def register(func: F) -> F:
            rpc_name = name or func.__name__
            definition = build_definition(
                func,
                name=rpc_name,
                queue=f"rpc.{rpc_name}",
                retry=RetryPolicy(max_retries=0),
                timeout=timeout,
            )
            self.handlers.add_rpc(definition)
            return func

        return register

    # -- events -----------------------------------------------------------------------

    async def publish(
        self,
        exchange: Exchange | str,
        routing_key: str = "",
        payload: Any = None,
        *,
        headers: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> str:
        """Publish an event; returns once the broker confirmed it, with its id.

        Not ``mandatory``: an event no queue is bound for is dropped (not an error).

        Args:
            exchange: an ``Exchange`` (declared if needed) or the name of one that this
                app's subscribers use or that exists on the broker.
            routing_key: the event's routing key (ignored by fanout and headers exchanges).
            payload: any JSON-serialisable value or pydantic model (not validated here).
            headers: message headers (what a headers exchange matches on): names of
                letters, digits and ``_ . : -``; text, integer, float or boolean values;
                never ``CC``/``BCC``, a name RabbitMQ interprets, or burrow's own
                ``x-burrow-*`` (docs/wire-format.md, "Headers").
            message_id: the event id (default: a new UUID4). Subscribers dedupe by it, so
                publishing the same id again runs no subscriber twice. Printable text; a
                subscriber runs the event as ``{message_id}:{subscriber}``, which must
                stay within 255 bytes.

        Raises:
            UnknownExchange: ``exchange`` is a name nobody declared.
            HeaderRefused: a header a client may not send (a ``ConfigurationError``).
            ConfigurationError: the payload is not JSON-serialisable or too large, the
                routing key is over 255 bytes, the exchange name is not one an event
                exchange may have (or too long with the namespace), or ``message_id`` is
                not a valid id.
            BrokerUnavailable, PublishTimeout, PublishRejected.
        """
        hdrs: dict[str, Any] = dict(headers or {})
        check_client_headers(hdrs)
        check_routing_key(routing_key)
        if message_id is not None:
            problem = task_id_problem(message_id)
            if problem is not None:
                raise ConfigurationError(f"message_id refused: {problem}")
        body = self._event_body(payload)
        await self.broker.connect(timeout=self.settings.publish_timeout)
        full_name = await self._ensure_exchange(exchange)
        event_id = message_id or new_task_id()
        # The publish span (if tracing) puts its own context in hdrs' traceparent.
        with tracing.event_span(
            hdrs, exchange=full_name, routing_key=routing_key, event_id=event_id
        ):
            tracing.ensure_traceparent(hdrs)
            await self.broker.publish(
                routing_key,
                body,
                exchange=full_name,
                message_id=event_id,
                type_=routing_key or None,
                headers=hdrs,
                mandatory=False,
            )
        return event_id

    def _event_body(self, payload: Any) -> bytes:
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        try:
            body = pydantic_core.to_json(payload)
        except pydantic_core.PydanticSerializationError as exc:
            raise ConfigurationError(f"payload is not JSON-serialisable: {exc}") from None
        if len(body) > self.settings.max_message_bytes:
            raise ConfigurationError(
                f"payload is {len(body)} bytes; the limit is {self.settings.max_message_bytes}"
            )
        return body

    async def declare_exchange(self, exchange: Exchange) -> str:
        """Declare ``exchange`` (durable, ``{ns}.{name}``; once per connection); returns
        its full name.

        Raises:
            BrokerError: it exists with another type (PRECONDITION_FAILED), or the broker
                failed.
        """
        spec = event_exchange(self.names, exchange)
        if not self.broker.is_declared(f"exchange:{spec.name}"):
            await self.broker.declare_exchange(spec)
        return spec.name

    async def _ensure_exchange(self, exchange: Exchange | str) -> str:
        if isinstance(exchange, Exchange):
            return await self.declare_exchange(exchange)
        known = self.handlers.exchanges().get(exchange)
        if known is not None:
            return await self.declare_exchange(known)
        # The rules of ``Exchange`` names (no amq., not burrow's delay or control exchange)
        # and the AMQP length limit, before the broker is asked.
        spec = event_exchange(self.names, Exchange(exchange))
        full_name = spec.name
        if full_name not in self._exchanges_seen:
            if not await self.broker.exchange_exists(full_name):
                raise UnknownExchange(exchange)
            self._exchanges_seen.add(full_name)
        return full_name

    # -- rpc --------------------------------------------------------------------------

    async def call(
        self,
        name: str,
        payload: Any = None,
        *,
        timeout: float = CALL_TIMEOUT,
        headers: dict[str, Any] | None = None,
    ) -> Any:
        """Call RPC handler ``name`` and return its reply (decoded JSON).

        Many calls may be in flight at once; they share one channel and reply consumer.

        Raises:
            RpcTimeout: no reply within ``timeout`` seconds (a ``TimeoutError``).
            RpcError: the handler raised (``.type``, ``.message``), or the server refused
                the payload (``PayloadInvalid``).
            PayloadInvalid: this app registered the handler and the payload does not
                validate against its model.
            Unroutable: no server ever declared ``{ns}.rpc.{name}``.
            HeaderRefused: a header a client may not send (as for ``publish``).
            BrokerUnavailable: not connected, or the connection dropped during the call.
        """
        if timeout <= 0:
            raise ConfigurationError("timeout must be > 0")
        check_client_headers(headers)
        body = self._rpc_body(name, payload)
        client = await self._rpc()
        hdrs: dict[str, Any] = dict(headers or {})
        queue = self.names.rpc_queue(name)
        # The call span (if tracing) puts its own context in hdrs' traceparent; an
        # exception leaving it (error reply, timeout) marks it failed.
        with tracing.rpc_client_span(hdrs, name=name, queue=queue):
            tracing.ensure_traceparent(hdrs)
            hdrs[HDR_DEADLINE] = int((time.time() + timeout) * 1000)
            try:
                reply = await client.call(queue, body, timeout=timeout, headers=hdrs, type_=name)
            except TimeoutError:
                raise RpcTimeout(name, timeout) from None
            except Unroutable as exc:
                raise Unroutable(
                    f"rpc {name!r}: no server listens ({queue} does not exist)", queue=queue
                ) from exc
            try:
                return _decode_reply(name, reply)
            except RpcError as exc:
                tracing.record_failure(exc.type, exc.message)
                raise

    def _rpc_body(self, name: str, payload: Any) -> bytes:
        definition = self.handlers.rpc(name)
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        if definition is not None:
            definition.validate_python(payload)
        try:
            return pydantic_core.to_json(payload)
        except pydantic_core.PydanticSerializationError as exc:
            raise PayloadInvalid(name, [{"loc": [], "msg": str(exc), "type": "json"}]) from None

    async def _rpc(self) -> RpcClient:
        async with self._rpc_lock:
            if self._rpc_client is None:
                await self.broker.connect(timeout=self.settings.publish_timeout)
                self._rpc_client = await self.broker.open_rpc_client()
            return self._rpc_client

    async def _close_messaging(self) -> None:
        client, self._rpc_client = self._rpc_client, None
        self._exchanges_seen.clear()
        if client is not None:
            with contextlib.suppress(BrokerError):  # the connection may be gone already
                await client.close()


def _decode_reply(name: str, reply: RpcReply) -> Any:
    try:
        value = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        raise RpcError(name, "BadReply", "the reply is not JSON") from None
    if reply.headers.get(HDR_RPC_STATUS) == RPC_ERROR:
        if isinstance(value, dict):
            raise RpcError(name, str(value.get("type", "Error")), str(value.get("message", "")))
        raise RpcError(name, "Error", str(value))
    return value


__all__ = ["CALL_TIMEOUT", "Messaging"]
