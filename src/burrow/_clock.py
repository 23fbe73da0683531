"""Time as a dependency: the ``Clock`` protocol and the real ``SystemClock``.

Retry backoff, ETAs and reconnect delays read time through a ``Clock`` so tests can drive
them with ``burrow.testing.FakeClock`` instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock time (seconds since the epoch) and monotonic time."""

    def time(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary fixed point; never goes backwards."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
