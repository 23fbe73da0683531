"""RetryPolicy: exponential backoff with a cap, bounded jitter, run counts, validation."""

from __future__ import annotations

import random
from typing import Any

import pytest

from burrow.tasks.retry import RetryPolicy


def test_nominal_delays_double_then_cap() -> None:
    """Without jitter the delay before retry n is base * factor**(n-1), never above the cap."""
    policy = RetryPolicy(max_retries=10, base=1.0, factor=2.0, cap=10.0, jitter=0.0)
    assert [policy.nominal_delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_nominal_delay_of_a_huge_retry_number_is_the_cap() -> None:
    """A retry number far past the cap returns the cap instead of overflowing."""
    policy = RetryPolicy(base=0.5, factor=3.0, cap=42.0)
    assert policy.nominal_delay(10_000) == 42.0


def test_retry_numbers_below_one_use_the_base_delay() -> None:
    """Retry 0 (or less) is treated like the first retry: the base delay."""
    policy = RetryPolicy(base=1.5, jitter=0.0)
    assert policy.nominal_delay(0) == 1.5
    assert policy.nominal_delay(-3) == 1.5


def test_factor_one_gives_a_constant_delay() -> None:
    """With factor 1 every retry waits the base delay."""
    policy = RetryPolicy(base=2.0, factor=1.0, cap=100.0, jitter=0.0)
    assert {policy.nominal_delay(n) for n in range(1, 20)} == {2.0}


@pytest.mark.parametrize("jitter", [0.1, 0.25, 0.5, 0.99])
def test_jitter_stays_within_its_band_and_under_the_cap(jitter: float) -> None:
    """A jittered delay lies in [1-j, 1+j] x the nominal delay and never exceeds the cap."""
    policy = RetryPolicy(max_retries=25, base=1.0, factor=2.0, cap=30.0, jitter=jitter)
    rng = random.Random(1234)
    for retry in range(1, 12):
        nominal = policy.nominal_delay(retry)
        for _ in range(200):
            delay = policy.delay(retry, rng)
            assert (1 - jitter) * nominal <= delay <= (1 + jitter) * nominal
            assert delay <= policy.cap


def test_jitter_spreads_delays() -> None:
    """Concurrent failures get different delays, not one value in lockstep."""
    policy = RetryPolicy(base=1.0, jitter=0.25)
    rng = random.Random(7)
    assert len({policy.delay(1, rng) for _ in range(50)}) > 1


def test_delay_is_deterministic_for_a_seeded_rng() -> None:
    """The same seed gives the same delays (tests can pin the jitter)."""
    policy = RetryPolicy(jitter=0.25)
    first = [policy.delay(n, random.Random(99)) for n in range(1, 6)]
    second = [policy.delay(n, random.Random(99)) for n in range(1, 6)]
    assert first == second


@pytest.mark.parametrize(("max_retries", "runs"), [(0, 1), (1, 2), (3, 4), (25, 26)])
def test_max_runs_is_the_first_run_plus_the_retries(max_retries: int, runs: int) -> None:
    """max_retries=N allows N+1 runs in all."""
    assert RetryPolicy(max_retries=max_retries).max_runs == runs


def test_defaults_match_the_documented_settings() -> None:
    """The defaults are 3 retries, 1 s base, factor 2, 600 s cap and 25 % jitter."""
    policy = RetryPolicy()
    assert (policy.max_retries, policy.base, policy.factor, policy.cap, policy.jitter) == (
        3,
        1.0,
        2.0,
        600.0,
        0.25,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"max_retries": 26},
        {"base": 0.0},
        {"base": -1.0},
        {"cap": 0.0},
        {"factor": 0.5},
        {"jitter": -0.1},
        {"jitter": 1.0},
    ],
)
def test_invalid_values_raise(kwargs: dict[str, Any]) -> None:
    """Out-of-range retries, base, cap, factor or jitter are refused with ValueError."""
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**kwargs)
