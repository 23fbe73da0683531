"""Rate limits per task name, as pure data: parsing ``"10/s"`` and the wire marker.

A rate limit ``"N/s"``, ``"N/m"`` or ``"N/h"`` means at most N starts of the task in any
window of that length, across every worker process: a sliding window, not a
bucket that bursts and then refills. Burrow enforces it by spacing start slots evenly, one
every ``period / N`` seconds plus ``SPACING_MARGIN`` (GCRA without burst,
``state/lua/ratelimit.lua``), which keeps every window of the period at N starts or fewer.
The margin absorbs the few milliseconds by which a start can follow its slot: without it,
a start a little late and the one N slots later on time would put N + 1 starts in a window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Set by the worker on the copy of a message it sent to wait for its reserved start slot;
#: the value equals the copy's ``x-burrow-eta``. A delivery that carries both with the same
#: value starts without reserving another slot. Internal: other producers leave it out.
HDR_RATE_SLOT = "x-burrow-rate-slot"

#: A wait for a start slot up to this long is slept in the worker instead of sending the
#: message through a delay tier (a tier hop costs a publish and a redelivery). Bounded per
#: worker (``rate_sleepers``) so sleeping never fills every concurrency slot.
RATE_SLEEP_MAX = 0.25

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_UNITS |= {"h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")
#: Start slots are this much (a fraction of ``period / N``) further apart than the limit
#: needs, so small lateness of a start does not push a window over N (2 % of 1/N s: 4 ms at
#: 5/s, summed over the N slots of a window: 20 ms).
SPACING_MARGIN = 0.02
#: Limits above this many starts per second are refused: the spacing would be below the
#: millisecond that Redis and the delay tiers work in.
MAX_PER_SECOND = 1000


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` starts per ``period`` seconds; ``text`` is how it was written."""

    count: int
    period: float
    text: str

    @property
    def interval(self) -> float:
        """Seconds between two starts (the spacing that keeps every window within limit)."""
        return self.period / self.count

    @property
    def spacing(self) -> float:
        """Seconds between two reserved start slots: ``interval`` plus ``SPACING_MARGIN``."""
        return self.interval * (1 + SPACING_MARGIN)


def parse_rate_limit(text: str) -> RateLimit:
    """Parse ``"10/s"``, ``"100/m"`` or ``"1000/h"`` (also ``/sec``, ``/min``, ``/hour``).

    Raises:
        TypeError: ``text`` is not a string.
        ValueError: not of the form ``N/unit``, N not a whole number above 0, an unknown
            unit, or more than ``MAX_PER_SECOND`` starts per second. The message says what
            is accepted.
    """
    if not isinstance(text, str):
        raise TypeError(f"rate_limit must be a string such as '10/s', not {text!r}")
    found = _RATE.match(text.lower())
    if found is None or found[2] not in _UNITS:
        raise ValueError(
            f"rate_limit {text!r} is not of the form N/s, N/m or N/h (e.g. '10/s', '100/m')"
        )
    count, period = int(found[1]), _UNITS[found[2]]
    if count < 1:
        raise ValueError(f"rate_limit {text!r} must allow at least 1 start per period")
    if count / period > MAX_PER_SECOND:
        raise ValueError(
            f"rate_limit {text!r} is above {MAX_PER_SECOND}/s; leave the limit out instead"
        )
    return RateLimit(count=count, period=period, text=text.strip())


def rate_sleepers(concurrency: int) -> int:
    """How many deliveries of one worker may sleep for a start slot at once: a quarter of
    its concurrency, at least one."""
    return max(1, concurrency // 4)


__all__ = [
    "HDR_RATE_SLOT",
    "MAX_PER_SECOND",
    "RATE_SLEEP_MAX",
    "SPACING_MARGIN",
    "RateLimit",
    "parse_rate_limit",
    "rate_sleepers",
]
