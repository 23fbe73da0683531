"""Broker names and declarations as pure data: namespaces, delay tiers, queue arguments."""

from __future__ import annotations

import pytest

from burrow.broker.topology import (
    TIER_BASE_MS,
    TIER_COUNT,
    TIERS_MS,
    Names,
    dead_letter_queue,
    delay_exchange,
    delay_tier,
    tier_for,
    work_queue,
)
from burrow.tasks.envelope import HDR_TIER

SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000


def test_names_with_a_namespace_are_prefixed_with_a_dot() -> None:
    """With namespace 'shop' every broker name starts with 'shop.'."""
    names = Names("shop")
    assert names.queue("default") == "shop.default"
    assert names.dlq("math") == "shop.math.dlq"
    assert names.delay_exchange == "shop.delay"
    assert names.delay_queue(800) == "shop.delay.800"
    assert names.prefixed("shop.events") == "shop.shop.events"


def test_an_empty_namespace_means_no_prefix() -> None:
    """With an empty namespace names are used as they are."""
    names = Names("")
    assert names.queue("default") == "default"
    assert names.dlq("math") == "math.dlq"
    assert names.delay_exchange == "delay"
    assert names.delay_queue(100) == "delay.100"


@pytest.mark.parametrize("namespace", ["", "shop", "a.b"])
def test_unprefixed_inverts_queue(namespace: str) -> None:
    """unprefixed(queue(q)) gives back q, with or without a namespace."""
    names = Names(namespace)
    assert names.unprefixed(names.queue("math")) == "math"


def test_unprefixed_leaves_foreign_names_alone() -> None:
    """A name without this namespace's prefix comes back unchanged."""
    assert Names("shop").unprefixed("other.math") == "other.math"


def test_tiers_are_100ms_times_powers_of_two_and_cover_seven_days() -> None:
    """Tiers are 100 ms * 2^k for k < TIER_COUNT, and the largest exceeds the 7-day limit."""
    assert TIER_BASE_MS == 100
    assert len(TIERS_MS) == TIER_COUNT
    assert tuple(100 * 2**k for k in range(TIER_COUNT)) == TIERS_MS
    assert TIERS_MS[-1] > SEVEN_DAYS_MS


@pytest.mark.parametrize("remaining", [-5.0, 0.0, 1.0, 99.0, 99.999])
def test_tier_for_is_none_below_the_smallest_tier(remaining: float) -> None:
    """Less than 100 ms left needs no tier."""
    assert tier_for(remaining) is None


@pytest.mark.parametrize(
    ("remaining", "tier"),
    [
        (100, 100),
        (199.9, 100),
        (200, 200),
        (1_000, 800),
        (1_600, 1_600),
        (60_000, 51_200),
        (SEVEN_DAYS_MS, 419_430_400),
        (10 * SEVEN_DAYS_MS, TIERS_MS[-1]),
    ],
)
def test_tier_for_picks_the_largest_tier_not_longer_than_the_remaining_time(
    remaining: float, tier: int
) -> None:
    """tier_for returns the largest tier <= the time left."""
    assert tier_for(remaining) == tier


def test_tier_for_is_largest_fitting_tier_over_a_sweep() -> None:
    """For many delays the chosen tier fits and the next tier up would not."""
    for remaining in [*range(100, 5_000, 37), *(TIERS_MS), *(t - 1 for t in TIERS_MS[1:])]:
        tier = tier_for(remaining)
        assert tier is not None
        assert tier <= remaining
        index = TIERS_MS.index(tier)
        if index + 1 < TIER_COUNT:
            assert TIERS_MS[index + 1] > remaining


def _hops(delay_ms: float) -> tuple[int, float]:
    """Follow the worker's greedy hops for ``delay_ms``: (number of hops, time left at the end)."""
    remaining, hops = delay_ms, 0
    while (tier := tier_for(remaining)) is not None:
        remaining -= tier
        hops += 1
    return hops, remaining


@pytest.mark.parametrize(
    "delay_ms",
    [0, 50, 100, 150, 250, 999, 1_000, 12_345, 61_000, 3_600_000, 86_399_999, SEVEN_DAYS_MS],
)
def test_greedy_hops_reach_the_eta_within_one_base_tier(delay_ms: int) -> None:
    """Chaining tier_for hops ends less than 100 ms before the ETA, never after it."""
    hops, left = _hops(delay_ms)
    assert 0 <= left < TIER_BASE_MS
    assert hops <= TIER_COUNT


def test_each_greedy_hop_at_least_halves_the_remaining_delay() -> None:
    """After a hop less than half of the previous remaining delay is left."""
    for delay_ms in range(100, 200_000, 997):
        tier = tier_for(delay_ms)
        assert tier is not None
        assert delay_ms - tier < delay_ms / 2 + 1e-9


def test_quorum_work_queue_has_delivery_limit_and_at_least_once_dead_lettering() -> None:
    """A quorum work queue sets x-delivery-limit, at-least-once dead-lettering and its DLQ."""
    spec = work_queue(Names("shop"), "math", queue_type="quorum", delivery_limit=7)
    assert spec.name == "shop.math"
    assert spec.durable
    assert spec.arguments == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "shop.math.dlq",
        "x-delivery-limit": 7,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def test_classic_work_queue_has_no_quorum_only_arguments() -> None:
    """A classic work queue dead-letters to its DLQ but has no quorum-only arguments."""
    spec = work_queue(Names(""), "math", queue_type="classic", delivery_limit=7)
    assert spec.name == "math"
    assert spec.arguments == {
        "x-queue-type": "classic",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "math.dlq",
    }
    for quorum_only in ("x-delivery-limit", "x-dead-letter-strategy", "x-overflow"):
        assert quorum_only not in spec.arguments


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
def test_dead_letter_queue_is_durable_and_of_the_work_queue_type(queue_type: str) -> None:
    """The DLQ is '{ns}.{queue}.dlq', durable, with the configured queue type."""
    spec = dead_letter_queue(Names("shop"), "math", queue_type=queue_type)  # type: ignore[arg-type]
    assert spec.name == "shop.math.dlq"
    assert spec.durable
    assert spec.arguments == {"x-queue-type": queue_type}


def test_delay_exchange_is_a_durable_headers_exchange() -> None:
    """Delayed messages go through the durable headers exchange '{ns}.delay'."""
    spec = delay_exchange(Names("shop"))
    assert (spec.name, spec.type, spec.durable) == ("shop.delay", "headers", True)


def test_delay_tier_queue_expires_back_to_the_original_routing_key() -> None:
    """A tier queue is classic with a fixed TTL, dead-letters to the default exchange without
    overriding the routing key, and is bound on the delay-tier header."""
    queue, binding = delay_tier(Names("shop"), 1_600)
    assert queue.name == "shop.delay.1600"
    assert queue.arguments == {
        "x-queue-type": "classic",
        "x-message-ttl": 1_600,
        "x-dead-letter-exchange": "",
    }
    assert "x-dead-letter-routing-key" not in queue.arguments
    assert binding.queue == "shop.delay.1600"
    assert binding.exchange == "shop.delay"
    assert binding.arguments == {"x-match": "all", HDR_TIER: "1600"}


@pytest.mark.parametrize("tier", [TIERS_MS[0], TIERS_MS[5], TIERS_MS[-1]])
def test_delay_tier_binding_matches_on_a_header_the_exchange_does_not_ignore(tier: int) -> None:
    """A headers exchange ignores binding arguments starting with 'x-' (other than x-match), so
    the tier header must not start with 'x-', or every tier would match every message."""
    _, binding = delay_tier(Names("shop"), tier)
    matched = {k: v for k, v in binding.arguments.items() if k != "x-match"}
    assert matched
    assert not any(key.lower().startswith("x-") for key in matched)


def test_each_tier_binding_is_distinct() -> None:
    """No two tiers share binding arguments, so a message reaches exactly one tier queue."""
    bindings = {tuple(sorted(delay_tier(Names("shop"), t)[1].arguments.items())) for t in TIERS_MS}
    assert len(bindings) == TIER_COUNT
