"""Cron schedules as data, and the pure decisions of the scheduler: no I/O here.

``Cron`` wraps a croniter expression and a time zone and answers "when is the next tick
after t" and "what is the latest tick at or before t" in Unix time. ``plan`` decides, from
the last tick a schedule handled and the time now, which one tick (if any) to fire: the
misfire policy lives there, so it is tested without clocks or servers.

Expressions are the five classic fields (minute hour day-of-month month day-of-week), the
``@hourly``-style aliases, or croniter's six-field form whose sixth field is *seconds*
(``* * * * * */10``: every ten seconds). Ticks are computed in the schedule's time zone
(an IANA name such as ``Europe/Berlin``), so ``0 9 * * *`` stays at 09:00 local time
across daylight-saving changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from croniter import croniter


#: Schedule ids: like task names, at most 100 characters (they become Redis hash fields and
#: part of idempotency keys).
SCHEDULE_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}$")


class Misfire(StrEnum):
    """What a scheduler does with ticks that passed while no scheduler was running."""

    # Run the most recent missed tick once, skip the older ones (the default):
    # a scheduler that was down for an hour fires one catch-up run, never sixty.
    LAST = "last"
    # Skip every missed tick: a tick fires only when the scheduler reaches it within the
    # misfire grace (BURROW_SCHEDULER_MISFIRE_GRACE); later, the next regular tick waits.
    SKIP = "skip"


class Source(StrEnum):
    """Where a schedule was defined."""

    CODE = "code"  # @app.periodic: lives in the app's code, not deletable at run time
    API = "api"  # POST /api/v1/schedules or `burrow schedules add`: stored in Redis


def check_cron(expression: str) -> str:
    """Validate a cron expression; returns it stripped.

    Raises:
        ValueError: the expression does not parse or never fires; the message says why.
    """
    # croniter is imported when a schedule is first defined, so a process whose app has
    # none never loads it.
    from croniter import CroniterBadDateError, CroniterError, croniter

    expr = " ".join(expression.split())
    if not expr:
        raise ValueError("empty cron expression")
    try:
        it = croniter(expr, datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC")))
        it.get_next(float)
    except CroniterBadDateError:
        raise ValueError(f"cron expression {expr!r} never fires") from None
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"invalid cron expression {expr!r}: {exc} (use 5 fields 'minute hour day month "
            "weekday', e.g. '*/5 * * * *', an optional 6th field for seconds, or @hourly, "
            "@daily, @weekly, @monthly, @yearly)"
        ) from None
    return expr


def check_timezone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` of an IANA time zone name.

    Raises:
        ValueError: no such time zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as 'UTC' or 'Europe/Berlin')"
        ) from None


def check_schedule_id(value: str) -> str:
    """Validate a schedule id.

    Raises:
        ValueError: not 1-100 characters of letters, digits and ``_ . : -``.
    """
    if not SCHEDULE_ID_RE.match(value):
        raise ValueError(
            f"schedule id {value!r} must be 1-100 characters of letters, digits and _ . : -"
        )
    return value


@dataclass(frozen=True, slots=True)
class Cron:
    """A validated cron expression in a time zone; times are Unix seconds."""

    expression: str
    timezone: str = "UTC"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "expression", check_cron(self.expression))
        object.__setattr__(self, "_zone", check_timezone(self.timezone))

    def _iter(self, t: float) -> croniter:
        from croniter import croniter

        return croniter(self.expression, datetime.fromtimestamp(t, self._zone))

    def next_after(self, t: float) -> float:
        """The first tick strictly after ``t``."""
        return float(self._iter(t).get_next(float))

    def latest_at_or_before(self, t: float) -> float:
        """The last tick at or before ``t``."""
        previous = float(self._iter(t).get_prev(float))
        following = self.next_after(previous)
        return following if following <= t else previous


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule: fire task ``task`` with ``payload`` at each tick of ``cron``.

    Attributes:
        id: unique in the app (code schedules: the ``name=`` given, default the task name).
        task: the task fired.
        cron: expression and time zone.
        payload: the payload of every fired task (JSON-compatible).
        misfire: the misfire policy.
        source: defined in code or at run time.
        created_at: Unix time the schedule was created (None for code schedules).
    """

    id: str
    task: str
    cron: Cron
    payload: Any = None
    misfire: Misfire = Misfire.LAST
    source: Source = Source.CODE
    created_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored / served form."""
        return {
            "id": self.id,
            "task": self.task,
            "cron": self.cron.expression,
            "timezone": self.cron.timezone,
            "payload": self.payload,
            "misfire": self.misfire.value,
            "source": self.source.value,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schedule:
        """Inverse of ``to_json``.

        Raises:
            ValueError: a field is missing or invalid.
        """
        try:
            return cls(
                id=check_schedule_id(str(data["id"])),
                task=str(data["task"]),
                cron=Cron(str(data["cron"]), str(data.get("timezone") or "UTC")),
                payload=data.get("payload"),
                misfire=Misfire(data.get("misfire") or Misfire.LAST),
                source=Source(data.get("source") or Source.API),
                created_at=data.get("created_at"),
            )
        except KeyError as exc:
            raise ValueError(f"schedule is missing {exc.args[0]!r}") from None


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with a schedule now: fire ``fire`` (a tick time) or nothing, and move
    the schedule's cursor (the last tick handled) to ``cursor``."""

    fire: float | None
    cursor: float
    skipped: int = 0  # ticks passed over (misfired), for logs


def plan(cron: Cron, cursor: float, now: float, misfire: Misfire, grace: float) -> Plan:
    """Decide which tick of ``cron`` to fire at ``now``, given that every tick up to
    ``cursor`` was handled.

    At most one tick is fired per call, so a scheduler that was down never bursts: the
    ticks between ``cursor`` and the latest one are skipped. The latest tick is fired under
    ``Misfire.LAST`` whatever its age, and under ``Misfire.SKIP`` only when it is at most
    ``grace`` seconds old.
    """
    first = cron.next_after(cursor)
    if first > now:
        return Plan(None, cursor)
    latest = cron.latest_at_or_before(now)
    skipped = 0 if latest == first else _count_between(cron, first, latest)
    if misfire is Misfire.SKIP and now - latest > grace:
        return Plan(None, latest, skipped + 1)
    return Plan(latest, latest, skipped)


def _count_between(cron: Cron, first: float, latest: float, cap: int = 100) -> int:
    """Ticks in ``[first, latest)``, counted up to ``cap`` (only for logs)."""
    count, t = 0, first
    while t < latest and count < cap:
        count += 1
        t = cron.next_after(t)
    return count
