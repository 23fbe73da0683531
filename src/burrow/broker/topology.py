"""Everything burrow declares on RabbitMQ, as pure data (namespace-aware).

Names (docs/wire-format.md): the work queue of queue ``Q`` is ``{ns}.{Q}``; its dead letters go to
``{ns}.{Q}.dlq``; delayed messages (retries, ETAs) wait in ``{ns}.delay.{ms}`` tier queues
behind the ``{ns}.delay`` headers exchange. An empty namespace means no prefix.

Why tiers: on RabbitMQ 3.10 a queue expires messages only from its head, so one delay queue
with per-message TTLs makes a 1 s retry wait behind a 10 min one. Each
tier queue has one fixed ``x-message-ttl``, so its messages expire in arrival order. A delay
is split greedily into tiers of 100 ms * 2^k; on expiry the tier dead-letters the message to
the default exchange with its original routing key (the work queue), and the worker sends it
on to the next tier until the ETA is reached. Tiers are declared lazily on first use.

Events and RPC (docs/wire-format.md): ``Exchange("shop.events", ...)`` is declared as
``{ns}.shop.events``; a subscriber with ``queue="inventory"`` shares the durable work queue
``{ns}.inventory`` (with its ``.dlq``) among its instances, and one without gets an
exclusive ``{ns}.sub.{subscriber}.{worker id}`` per worker process whose dead letters go to
the durable ``{ns}.sub.{subscriber}.dlq``. RPC handler ``name`` consumes ``{ns}.rpc.{name}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from burrow.config import QUEUE_TYPES, QueueType
from burrow.errors import ConfigurationError
from burrow.tasks.definition import NAME_RE
from burrow.tasks.envelope import HDR_TIER

#: Smallest delay tier; delays shorter than this are not worth a round trip.
TIER_BASE_MS = 100
#: 100 ms * 2^23 is about 9.7 days, above the 7-day delay limit.
TIER_COUNT = 24
TIERS_MS: tuple[int, ...] = tuple(TIER_BASE_MS * 2**k for k in range(TIER_COUNT))

#: ``type`` of the control message that stops a running attempt; its JSON body is
#: ``{"task_id": ..., "lease": ...}`` (the lease token of the attempt to stop).
CONTROL_CANCEL = "cancel"

#: Priority lanes of a queue with ``priorities``, highest first: ``normal`` is the work
#: queue ``{ns}.{Q}`` itself, the others are ``{ns}.{Q}.high`` and ``{ns}.{Q}.low``. A
#: message goes to the lane of its priority's band (``lane_of``); one without a priority is
#: normal. Lanes work the same on quorum queues (which have no priorities on RabbitMQ 3.10)
#: and classic ones, and add queues instead of changing the arguments of an existing one.
LANES: tuple[str, ...] = ("high", "normal", "low")
NORMAL_LANE = "normal"
#: The priority of a task submitted without one (0-9, 9 highest).
DEFAULT_PRIORITY = 5
#: Lowest priority of the high band and highest of the low band: 7-9 high, 4-6 normal,
#: 0-3 low.
HIGH_FROM = 7
LOW_UPTO = 3

#: Arguments ``work_queue`` sets on quorum queues only.
QUORUM_ONLY_ARGUMENTS = frozenset({"x-delivery-limit", "x-dead-letter-strategy", "x-overflow"})

# RabbitMQ's refusal to re-declare a queue with other arguments, e.g. "PRECONDITION_FAILED -
# inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received 'classic' but current
# is 'quorum'". A value is `none`, `'v'` or `the value 'v' of type 't'`.
_VALUE = r"(?:none|the value '[^']*' of type '[^']*'|'[^']*')"
_INEQUIVALENT = re.compile(
    rf"inequivalent arg '(?P<arg>[^']+)' for queue '[^']*' in vhost '[^']*': "
    rf"received (?P<received>{_VALUE}) but current is (?P<current>{_VALUE})"
)


ExchangeType = Literal["direct", "fanout", "topic", "headers"]
EXCHANGE_TYPES: tuple[str, ...] = ("direct", "fanout", "topic", "headers")
#: The longest exchange name AMQP 0-9-1 allows (its ``exchange-name`` domain; pamqp refuses
#: longer ones before anything is sent), namespace prefix included.
MAX_EXCHANGE_NAME = 127
#: The longest routing key: an AMQP short string, 255 bytes in UTF-8 (not characters).
MAX_ROUTING_KEY_BYTES = 255
#: Unprefixed names of burrow's own exchanges (``{ns}.delay``, ``{ns}.control``): never
#: event exchanges, so nobody publishes into the delay tiers or to the workers' control
#: messages through ``app.publish`` or the events route.
RESERVED_EXCHANGES = frozenset({"delay", "control"})


def check_exchange_name(full_name: str) -> str:
    """``full_name`` (with its namespace prefix) when AMQP allows it as an exchange name.

    Raises:
        ConfigurationError: it is longer than ``MAX_EXCHANGE_NAME`` characters.
    """
    if len(full_name) > MAX_EXCHANGE_NAME:
        raise ConfigurationError(
            f"exchange name {full_name[:40]!r}... is {len(full_name)} characters with the "
            f"namespace prefix; AMQP allows at most {MAX_EXCHANGE_NAME}"
        )
    return full_name


def check_routing_key(routing_key: str) -> str:
    """``routing_key`` when AMQP can carry it.

    Raises:
        ConfigurationError: it is longer than ``MAX_ROUTING_KEY_BYTES`` bytes in UTF-8.
    """
    if len(routing_key) > MAX_ROUTING_KEY_BYTES // 4:  # shorter: at most 4 bytes a character
        size = len(routing_key.encode("utf-8", "surrogatepass"))
        if size > MAX_ROUTING_KEY_BYTES:
            raise ConfigurationError(
                f"the routing key is {size} bytes in UTF-8; AMQP allows at most "
                f"{MAX_ROUTING_KEY_BYTES}"
            )
    return routing_key


@dataclass(frozen=True, slots=True)
class Exchange:
    """An exchange that events are published to (``@app.subscriber``, ``app.publish``).

    Declared durable as ``{ns}.{name}``; HTTP paths take the name without the prefix.

    Raises:
        ConfigurationError: an unknown type, or a name outside ``[A-Za-z0-9_.:-]`` (1-200
            characters, not starting with ``.``, ``:`` or ``-``; ``amq.`` is reserved, and
            so are burrow's own ``delay`` and ``control``). The AMQP limit on the name with
            its namespace prefix (``MAX_EXCHANGE_NAME``) is checked where the namespace is
            known (``event_exchange``).
    """

    name: str
    type: ExchangeType = "topic"

    def __post_init__(self) -> None:
        if self.type not in EXCHANGE_TYPES:
            raise ConfigurationError(
                f"exchange type must be one of {', '.join(EXCHANGE_TYPES)}, not {self.type!r}"
            )
        if not NAME_RE.match(self.name) or self.name.startswith("amq."):
            raise ConfigurationError(
                f"exchange name {self.name!r} must be 1-200 characters of letters, digits "
                "and _ . : - (and not start with amq.)"
            )
        if self.name in RESERVED_EXCHANGES:
            raise ConfigurationError(
                f"exchange name {self.name!r} is reserved: burrow's own exchange "
                f"{{namespace}}.{self.name} has it"
            )


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A durable queue to declare; ``arguments`` are its ``x-`` arguments."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """An exchange to declare."""

    name: str
    type: str
    durable: bool = True
    auto_delete: bool = False


@dataclass(frozen=True, slots=True)
class BindingSpec:
    """A queue bound to an exchange."""

    queue: str
    exchange: str
    routing_key: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Names:
    """The broker names of one namespace."""

    namespace: str

    def prefixed(self, name: str) -> str:
        return f"{self.namespace}.{name}" if self.namespace else name

    def queue(self, queue: str) -> str:
        """The work queue of ``queue``."""
        return self.prefixed(queue)

    def lane(self, queue: str, lane: str) -> str:
        """The work queue of ``queue``'s priority lane ``lane`` (``LANES``)."""
        return self.prefixed(queue if lane == NORMAL_LANE else f"{queue}.{lane}")

    def dlq(self, queue: str) -> str:
        """The dead-letter queue of ``queue``."""
        return self.prefixed(f"{queue}.dlq")

    def unprefixed(self, full_name: str) -> str:
        """The inverse of ``queue``."""
        prefix = f"{self.namespace}." if self.namespace else ""
        return full_name[len(prefix) :] if prefix and full_name.startswith(prefix) else full_name

    @property
    def delay_exchange(self) -> str:
        return self.prefixed("delay")

    def delay_queue(self, tier_ms: int) -> str:
        return self.prefixed(f"delay.{tier_ms}")

    @property
    def control_exchange(self) -> str:
        """The fanout exchange of messages to every worker (e.g. cancel a running task)."""
        return self.prefixed("control")

    def control_queue(self, worker_id: str) -> str:
        """The private queue one worker receives control messages on."""
        return self.prefixed(f"control.{worker_id}")

    def exchange(self, name: str) -> str:
        """The exchange of ``Exchange(name, ...)``."""
        return self.prefixed(name)

    def rpc_queue(self, name: str) -> str:
        """The request queue of RPC handler ``name``."""
        return self.prefixed(f"rpc.{name}")


def event_exchange(names: Names, exchange: Exchange) -> ExchangeSpec:
    """The durable exchange ``{ns}.{name}`` of an ``Exchange``.

    Raises:
        ConfigurationError: the name with its prefix is too long for AMQP.
    """
    return ExchangeSpec(check_exchange_name(names.exchange(exchange.name)), exchange.type)


def broadcast_base(subscriber: str) -> str:
    """The unprefixed name stem of a broadcast subscriber's queues (``sub.{subscriber}``):
    ``{stem}.{worker id}`` is the exclusive queue of one worker, ``{stem}.dlq`` the shared
    dead-letter queue."""
    return f"sub.{subscriber}"


def broadcast_queue(names: Names, subscriber: str, worker_id: str) -> QueueSpec:
    """One worker's own queue of a subscriber without ``queue=`` (broadcast).

    Exclusive (so classic), auto-delete: it lives as long as the worker's connection, and
    every running worker gets its own copy of each event. Non-durable for the same reason.
    """
    return QueueSpec(
        names.queue(f"{broadcast_base(subscriber)}.{worker_id}"),
        {"x-queue-type": "classic"},
        durable=False,
        exclusive=True,
        auto_delete=True,
    )


def rpc_queue(names: Names, name: str) -> QueueSpec:
    """The request queue ``{ns}.rpc.{name}`` of an RPC handler, shared by its servers.

    Classic and durable: replies are at-most-once (a request is acked when it is taken), so
    the replication of a quorum queue would buy nothing but latency, and requests carry an
    ``expiration`` equal to the caller's timeout, so nothing piles up while no server runs.
    """
    return QueueSpec(names.rpc_queue(name), {"x-queue-type": "classic"})


def lane_of(priority: int | None) -> str:
    """The lane (``LANES``) of a message with AMQP priority ``priority``: 7-9 high, 0-3
    low, anything else (4-6, none, out of range above) normal."""
    if priority is None:
        return NORMAL_LANE
    if priority >= HIGH_FROM:
        return "high"
    return "low" if priority <= LOW_UPTO else NORMAL_LANE


def work_queue(
    names: Names,
    queue: str,
    *,
    queue_type: QueueType,
    delivery_limit: int,
    lane: str = NORMAL_LANE,
) -> QueueSpec:
    """The work queue of ``queue`` (of its priority lane ``lane``, for a queue with
    priorities) with its dead-letter routing; every lane shares ``{queue}.dlq``.

    Dead letters go through the default exchange straight to ``{queue}.dlq``. On quorum
    queues ``x-delivery-limit`` is set explicitly because RabbitMQ 3.10 has no default: it
    stops a message that crashes its worker every time. Burrow's own attempt count in Redis
    normally fires first; the limit is the backstop.
    """
    args: dict[str, Any] = {
        "x-queue-type": queue_type,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": names.dlq(queue),
    }
    if queue_type == "quorum":
        args["x-delivery-limit"] = delivery_limit
        # At-least-once dead-lettering (3.10+) needs reject-publish overflow.
        # https://www.rabbitmq.com/docs/quorum-queues#dead-lettering
        args["x-dead-letter-strategy"] = "at-least-once"
        args["x-overflow"] = "reject-publish"
    return QueueSpec(names.lane(queue, lane), args)


def dead_letter_queue(names: Names, queue: str, *, queue_type: QueueType) -> QueueSpec:
    """The durable dead-letter queue of ``queue`` (same type as the work queue)."""
    return QueueSpec(names.dlq(queue), {"x-queue-type": queue_type})


def existing_queue_type(refusal: str, *, requested: QueueType) -> str | None:
    """The type of an existing queue, read from the broker's refusal to declare it as
    ``requested``; None when the refusal is about something else (or unreadable).

    RabbitMQ names only the first argument that differs, and not always ``x-queue-type``:
    re-declaring a quorum work queue as classic is refused over ``x-dead-letter-strategy``
    (RabbitMQ 3.10). So an argument burrow sets on quorum queues only, present on one side
    and absent on the other, also gives the type away. A queue declared without
    ``x-queue-type`` is classic.
    """
    found = _INEQUIVALENT.search(refusal)
    if found is None:
        return None
    received, current = _argument_value(found["received"]), _argument_value(found["current"])
    if found["arg"] == "x-queue-type":
        existing = current or "classic"
    elif found["arg"] in QUORUM_ONLY_ARGUMENTS and (received is None) != (current is None):
        existing = "quorum" if current is not None else "classic"
    else:
        return None
    return existing if existing != requested else None


def type_mismatch_message(
    name: str, queue: str, existing: str, requested: QueueType, source: str
) -> str:
    """What to tell the user when queue ``name`` (of burrow queue ``queue``) exists as
    ``existing`` but ``source`` (a setting) asks for ``requested``, and how to fix it."""
    keep = (
        f"To keep it {existing}, set BURROW_QUEUE_TYPES={queue}:{existing}. "
        if existing in QUEUE_TYPES
        else ""
    )
    return (
        f"queue {name!r} already exists on the broker as a {existing} queue, but burrow "
        f"declares it {requested} (from {source}), and RabbitMQ cannot change the type of a "
        f"queue. {keep}To make it {requested}, stop its workers, let it empty and delete it "
        f"(rabbitmqctl delete_queue {name}): burrow then re-creates it {requested}."
    )


def _argument_value(text: str) -> str | None:
    return None if text == "none" else text.split("'")[1]


def delay_exchange(names: Names) -> ExchangeSpec:
    return ExchangeSpec(names.delay_exchange, "headers")


def delay_tier(names: Names, tier_ms: int) -> tuple[QueueSpec, BindingSpec]:
    """The tier queue holding messages for ``tier_ms`` and its binding.

    Classic queues: a fixed TTL per queue expires strictly in order, and dead-lettering to
    the default exchange keeps the original routing key (the target work queue).
    """
    spec = QueueSpec(
        names.delay_queue(tier_ms),
        {
            "x-queue-type": "classic",
            "x-message-ttl": tier_ms,
            "x-dead-letter-exchange": "",
        },
    )
    binding = BindingSpec(
        spec.name,
        names.delay_exchange,
        arguments={"x-match": "all", HDR_TIER: str(tier_ms)},
    )
    return spec, binding


def control_exchange(names: Names) -> ExchangeSpec:
    """The fanout exchange of control messages (``{ns}.control``).

    Transient and auto-delete: it exists while a worker is bound to it (workers declare it
    again after a reconnect), and a control message published while no worker listens has
    nobody to tell, so it is published without ``mandatory``.
    """
    return ExchangeSpec(names.control_exchange, "fanout", durable=False, auto_delete=True)


def control_queue(names: Names, worker_id: str) -> QueueSpec:
    """A worker's own control queue: exclusive to its connection and deleted with it.

    Classic, because exclusive queues cannot be quorum queues.
    """
    return QueueSpec(
        names.control_queue(worker_id),
        {"x-queue-type": "classic"},
        durable=False,
        exclusive=True,
        auto_delete=True,
    )


def webhook_queue(names: Names, *, queue_type: QueueType, delivery_limit: int) -> QueueSpec:
    """The internal queue of webhook deliveries, ``{ns}.webhooks``, consumed by every worker
    of a namespace with webhooks on (``burrow.webhooks``). ``webhooks`` is a reserved queue
    name. Durable, with the default queue type; on quorum queues ``x-delivery-limit`` drops
    a delivery that kills its worker every time (there is no dead-letter queue: the outcome
    of a webhook is recorded on its task)."""
    args: dict[str, Any] = {"x-queue-type": queue_type}
    if queue_type == "quorum":
        args["x-delivery-limit"] = delivery_limit
    return QueueSpec(names.queue("webhooks"), args)


def tier_for(remaining_ms: float) -> int | None:
    """The largest tier not longer than ``remaining_ms``, or None when below the smallest.

    Greedy choice: each hop at least halves the remaining delay, so a delay takes at most
    ``TIER_COUNT`` hops and ends within one ``TIER_BASE_MS`` of its ETA.
    """
    if remaining_ms < TIER_BASE_MS:
        return None
    best = TIERS_MS[0]
    for tier in TIERS_MS:
        if tier > remaining_ms:
            break
        best = tier
    return best
