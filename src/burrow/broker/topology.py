"""Everything burrow declares on RabbitMQ, as pure data (namespace-aware).

Names (SPEC §5): the work queue of queue ``Q`` is ``{ns}.{Q}``; its dead letters go to
``{ns}.{Q}.dlq``; delayed messages (retries, ETAs) wait in ``{ns}.delay.{ms}`` tier queues
behind the ``{ns}.delay`` headers exchange. An empty namespace means no prefix.

Why tiers: on RabbitMQ 3.10 a queue expires messages only from its head, so one delay queue
with per-message TTLs makes a 1 s retry wait behind a 10 min one (RELIABILITY M5). Each
tier queue has one fixed ``x-message-ttl``, so its messages expire in arrival order. A delay
is split greedily into tiers of 100 ms * 2^k; on expiry the tier dead-letters the message to
the default exchange with its original routing key (the work queue), and the worker sends it
on to the next tier until the ETA is reached. Tiers are declared lazily on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from burrow.config import QueueType
from burrow.tasks.envelope import HDR_TIER

#: Smallest delay tier; delays shorter than this are not worth a round trip.
TIER_BASE_MS = 100
#: 100 ms * 2^23 is about 9.7 days, above the 7-day delay limit.
TIER_COUNT = 24
TIERS_MS: tuple[int, ...] = tuple(TIER_BASE_MS * 2**k for k in range(TIER_COUNT))


@dataclass(frozen=True, slots=True)
class Exchange:
    """An exchange that events are published to (``@app.subscriber``, ``app.publish``).

    Declared as ``{ns}.{name}``; HTTP paths take the name without the prefix.
    """

    name: str
    type: Literal["direct", "fanout", "topic", "headers"] = "topic"


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


def work_queue(
    names: Names, queue: str, *, queue_type: QueueType, delivery_limit: int
) -> QueueSpec:
    """The work queue of ``queue`` with its dead-letter routing.

    Dead letters go through the default exchange straight to ``{queue}.dlq``. On quorum
    queues ``x-delivery-limit`` is set explicitly because RabbitMQ 3.10 has no default
    (RELIABILITY M3): it stops a message that crashes its worker every time. Burrow's own
    attempt count in Redis normally fires first; the limit is the backstop.
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
    return QueueSpec(names.queue(queue), args)


def dead_letter_queue(names: Names, queue: str, *, queue_type: QueueType) -> QueueSpec:
    """The durable dead-letter queue of ``queue`` (same type as the work queue)."""
    return QueueSpec(names.dlq(queue), {"x-queue-type": queue_type})


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
