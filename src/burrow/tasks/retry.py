"""Retry policy: exponential backoff with jitter (pure; time-free)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times a task is retried and how long each retry waits.

    The delay before retry ``n`` (n = 1 for the first retry) is
    ``min(cap, base * factor ** (n - 1))`` scaled by a uniform factor in
    ``[1 - jitter, 1 + jitter]``, then capped again, so concurrent failures spread out
    instead of retrying in lockstep.
    """

    max_retries: int = 3
    base: float = 1.0
    factor: float = 2.0
    cap: float = 600.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if not 0 <= self.max_retries <= 25:
            raise ValueError("max_retries must be between 0 and 25")
        if self.base <= 0 or self.cap <= 0 or self.factor < 1:
            raise ValueError("base and cap must be > 0 and factor >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    @property
    def max_runs(self) -> int:
        """Runs allowed in all: the first one plus ``max_retries``."""
        return self.max_retries + 1

    def nominal_delay(self, retry: int) -> float:
        """The delay before retry ``retry`` (1-based) without jitter."""
        exponent = max(0, retry - 1)
        # Guard the power against overflow for large exponents.
        if exponent > 64:
            return self.cap
        return float(min(self.cap, self.base * self.factor**exponent))

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """The jittered delay before retry ``retry`` (1-based), in seconds."""
        nominal = self.nominal_delay(retry)
        if self.jitter == 0:
            return nominal
        draw = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return float(min(self.cap, nominal * draw))
