"""Event subscribers and RPC handlers of one app, as pure data (no I/O).

A subscriber is a ``TaskDefinition`` (same payload validation, retry policy and timeout as a
task) plus where its events come from: an ``Exchange``, the binding, and either a shared
queue (``queue=``: instances split the work) or none (broadcast: every worker process gets
its own exclusive queue). An RPC handler is a ``TaskDefinition`` whose result is the reply.

Dedupe of events is per (event, subscriber): the worker runs an event under the task id
``{message_id}:{key}`` (``event_task_id``), so one event delivered to three subscribers has
three independent records, and a redelivery to the same subscriber finds its record
terminal and is acked without running again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from burrow.broker.topology import BindingSpec, Exchange, Names, event_exchange
from burrow.errors import TaskDefinitionError
from burrow.tasks.definition import TaskDefinition, check_name

HeadersMatch = Literal["all", "any"]

#: Reply header of an RPC handler's error; the body is then ``{"type", "message"}``.
HDR_RPC_STATUS = "x-burrow-rpc-status"
RPC_OK = "ok"
RPC_ERROR = "error"
#: Request header: Unix ms after which the caller no longer waits (set by ``app.call``);
#: a server drops a request it takes after that unrun.
HDR_DEADLINE = "x-burrow-deadline"
#: ``reply_to`` values an RPC server answers to. Direct reply-to, and server-named queues
#: (``amq.gen-...``: the RabbitMQ tutorials' own exclusive reply queue). Clients cannot
#: declare ``amq.`` names themselves, so neither can be one of burrow's work queues: a
#: request can never make a server publish into a task queue.
REPLY_TO_PREFIXES = ("amq.rabbitmq.reply-to", "amq.gen-")


def reply_to_allowed(reply_to: str | None) -> bool:
    """True when an RPC server may publish its reply to ``reply_to``."""
    return bool(reply_to) and str(reply_to).startswith(REPLY_TO_PREFIXES)


def event_task_id(message_id: str | None, key: str) -> str | None:
    """The task id one subscriber runs an event under (None: the event has no id).

    Copies the worker publishes (retries, delays, dead letters) already carry this id, so
    an id that ends with ``:{key}`` is kept as it is.
    """
    if not message_id:
        return None
    tail = f":{key}"
    return message_id if message_id.endswith(tail) else message_id + tail


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A registered event subscriber.

    Attributes:
        definition: the handler, payload model, retry policy and timeout; its ``name`` is
            the subscriber's name (the record name) and its ``queue`` the shared queue, or
            ``sub.{name}`` for a broadcast subscriber.
        exchange: where its events are published.
        routing_keys: binding keys (direct, topic); ``("",)`` for fanout and headers.
        headers: binding arguments of a headers exchange, ``x-match`` included.
        shared: True with ``queue=`` (instances share one durable queue).
    """

    definition: TaskDefinition
    exchange: Exchange
    routing_keys: tuple[str, ...]
    headers: Mapping[str, Any]
    shared: bool

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def queue(self) -> str:
        """The unprefixed queue: shared queue, or the stem of the broadcast queues."""
        return self.definition.queue

    def bindings(self, names: Names, queue_name: str) -> list[BindingSpec]:
        """The bindings of ``queue_name`` (the full queue name) to the exchange."""
        exchange = event_exchange(names, self.exchange).name
        return [
            BindingSpec(queue_name, exchange, key, dict(self.headers)) for key in self.routing_keys
        ]


def subscriber_binding(
    exchange: Exchange, binding: str | list[str] | dict[str, Any] | None, match: HeadersMatch
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Routing keys and header arguments for ``binding`` on ``exchange``.

    Direct and topic take a routing key (or a list of them); headers takes a dict of header
    values, with ``x-match`` from the dict or else ``match``; fanout ignores the binding.

    Raises:
        TaskDefinitionError: the binding does not fit the exchange type.
    """
    kind = exchange.type
    if kind == "fanout":
        return ("",), {}
    if kind == "headers":
        if not isinstance(binding, dict):
            raise TaskDefinitionError(
                f"a headers exchange ({exchange.name!r}) binds with a dict of header values"
            )
        args = dict(binding)
        wanted = args.setdefault("x-match", match)
        if wanted not in ("all", "any"):
            raise TaskDefinitionError(f"x-match must be 'all' or 'any', not {wanted!r}")
        return ("",), args
    keys = [binding] if isinstance(binding, str) else binding
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise TaskDefinitionError(
            f"a {kind} exchange ({exchange.name!r}) binds with a routing key or a list of them"
        )
    return tuple(dict.fromkeys(keys)), {}


class HandlerRegistry:
    """Subscribers and RPC handlers by name (one per app, never a global)."""

    def __init__(self) -> None:
        self._subscribers: dict[str, Subscriber] = {}
        self._rpc: dict[str, TaskDefinition] = {}

    def add_subscriber(self, subscriber: Subscriber) -> None:
        """Register a subscriber.

        Raises:
            TaskDefinitionError: the name is taken, or another subscriber already uses its
                shared queue (a queue has one handler: its messages carry no handler name).
        """
        if subscriber.name in self._subscribers:
            raise TaskDefinitionError(f"subscriber {subscriber.name!r} is already registered")
        for other in self._subscribers.values():
            if other.shared and subscriber.shared and other.queue == subscriber.queue:
                raise TaskDefinitionError(
                    f"subscriber {subscriber.name!r}: queue {subscriber.queue!r} is already "
                    f"used by subscriber {other.name!r}; give each subscriber its own queue"
                )
        self._subscribers[subscriber.name] = subscriber

    def add_rpc(self, definition: TaskDefinition) -> None:
        """Register an RPC handler (``definition.name`` is the RPC name).

        Raises:
            TaskDefinitionError: an RPC handler of that name exists.
        """
        check_name("rpc", definition.name)
        if definition.name in self._rpc:
            raise TaskDefinitionError(f"rpc handler {definition.name!r} is already registered")
        self._rpc[definition.name] = definition

    def subscribers(self) -> list[Subscriber]:
        return list(self._subscribers.values())

    def subscriber(self, name: str) -> Subscriber | None:
        return self._subscribers.get(name)

    def rpc_handlers(self) -> list[TaskDefinition]:
        return list(self._rpc.values())

    def rpc(self, name: str) -> TaskDefinition | None:
        return self._rpc.get(name)

    def exchanges(self) -> dict[str, Exchange]:
        """The exchanges the subscribers bind to, by (unprefixed) name."""
        return {s.exchange.name: s.exchange for s in self._subscribers.values()}

    def __iter__(self) -> Iterator[Subscriber]:
        return iter(self._subscribers.values())


__all__ = [
    "HDR_DEADLINE",
    "HDR_RPC_STATUS",
    "REPLY_TO_PREFIXES",
    "RPC_ERROR",
    "RPC_OK",
    "HandlerRegistry",
    "HeadersMatch",
    "Subscriber",
    "event_task_id",
    "reply_to_allowed",
    "subscriber_binding",
]
