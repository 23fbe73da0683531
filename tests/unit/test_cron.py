"""Cron parsing, time zones, the misfire plan and ``@app.periodic`` registration (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel

from burrow import Burrow, TaskDefinitionError
from burrow.scheduler.cron import Cron, Misfire, Schedule, Source, plan

T0 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()  # a Monday, 00:00:00 UTC


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "out of range"),
        ("* * *", "5, 6 or 7 columns"),
        ("a b c d e", "not acceptable"),
        ("", "empty"),
        ("0 0 31 2 *", "never fires"),
    ],
)
def test_bad_expressions_say_why(expression: str, reason: str) -> None:
    """A bad cron expression is refused with a message naming the cause."""
    with pytest.raises(ValueError, match=reason):
        Cron(expression)


def test_unknown_time_zone_is_refused() -> None:
    """A time zone that is no IANA name is refused, naming it."""
    with pytest.raises(ValueError, match="Mars/Olympus"):
        Cron("* * * * *", "Mars/Olympus")


def test_next_and_latest_ticks() -> None:
    """next_after is strictly after; latest_at_or_before includes an exact tick."""
    cron = Cron("*/5 * * * *")
    assert cron.next_after(T0) == T0 + 300
    assert cron.next_after(T0 + 1) == T0 + 300
    assert cron.latest_at_or_before(T0) == T0
    assert cron.latest_at_or_before(T0 + 299.9) == T0
    assert cron.latest_at_or_before(T0 + 300) == T0 + 300


def test_sixth_field_is_seconds() -> None:
    """croniter's sixth field counts seconds: '* * * * * */2' ticks every 2 s."""
    cron = Cron("* * * * * */2")
    assert cron.next_after(T0) == T0 + 2
    assert cron.next_after(T0 + 2.5) == T0 + 4


def test_ticks_follow_the_time_zone_across_dst() -> None:
    """'0 9 * * *' in Europe/Berlin is 08:00 UTC in winter and 07:00 UTC in summer."""
    cron = Cron("0 9 * * *", "Europe/Berlin")
    winter = datetime.fromtimestamp(cron.next_after(T0), UTC)
    assert (winter.hour, winter.day) == (8, 1)
    summer_start = datetime(2024, 7, 1, tzinfo=ZoneInfo("UTC")).timestamp()
    assert datetime.fromtimestamp(cron.next_after(summer_start), UTC).hour == 7


def test_plan_nothing_due() -> None:
    """Before the next tick nothing fires and the cursor stays."""
    step = plan(Cron("*/5 * * * *"), T0, T0 + 100, Misfire.LAST, 60)
    assert (step.fire, step.cursor) == (None, T0)


def test_plan_fires_a_tick_on_time() -> None:
    """Just after a tick it fires, under either policy."""
    for policy in Misfire:
        step = plan(Cron("*/5 * * * *"), T0, T0 + 300.2, policy, 60)
        assert (step.fire, step.cursor, step.skipped) == (T0 + 300, T0 + 300, 0)


def test_plan_after_downtime_fires_only_the_latest_tick() -> None:
    """Default policy after 10 hours down: one catch-up run (the latest tick), never a burst."""
    step = plan(Cron("*/5 * * * *"), T0, T0 + 36_000 + 10, Misfire.LAST, 60)
    assert step.fire == T0 + 36_000
    assert step.cursor == T0 + 36_000
    assert step.skipped == 100  # counted up to the cap, only for the log
    again = plan(Cron("*/5 * * * *"), step.cursor, T0 + 36_000 + 20, Misfire.LAST, 60)
    assert again.fire is None


def test_plan_skip_policy_drops_late_ticks() -> None:
    """With 'skip', a tick older than the grace is not fired, but the cursor moves on."""
    step = plan(Cron("*/5 * * * *"), T0, T0 + 3600 + 120, Misfire.SKIP, 60)
    assert step.fire is None
    assert step.cursor == T0 + 3600
    within = plan(Cron("*/5 * * * *"), T0, T0 + 3600 + 30, Misfire.SKIP, 60)
    assert within.fire == T0 + 3600


def test_schedule_json_round_trip() -> None:
    """A stored schedule reads back equal."""
    s = Schedule(
        "s1", "add", Cron("0 * * * *", "Asia/Tokyo"), {"a": 1}, Misfire.SKIP, Source.API, 5
    )
    assert Schedule.from_json(s.to_json()) == s


class Add(BaseModel):
    a: int
    b: int


def test_periodic_registers_the_task_and_the_schedule() -> None:
    """@app.periodic on a handler registers it as a task and schedules it under its name."""
    app = Burrow(namespace="unit")

    @app.periodic("*/5 * * * *", timezone="Europe/Paris")
    async def cleanup() -> None: ...

    assert "cleanup" in app.registry
    [schedule] = app.code_schedules()
    assert (schedule.id, schedule.task, schedule.cron.timezone) == (
        "cleanup",
        "cleanup",
        "Europe/Paris",
    )
    assert schedule.source is Source.CODE


def test_periodic_with_task_schedules_an_existing_task() -> None:
    """task= fires an existing task with a payload validated at registration; stacked on
    @app.task the handler is not registered twice."""
    app = Burrow(namespace="unit")

    @app.task
    async def add(p: Add) -> int:
        return p.a + p.b

    app.periodic("0 * * * *", task="add", name="hourly-add", payload={"a": 1, "b": 2})
    with pytest.raises(TaskDefinitionError, match="b"):
        app.periodic("0 * * * *", task="add", name="bad", payload={"a": 1})

    @app.periodic("* * * * *", name="also-add")
    @app.task(name="add2")
    async def add2(p: Add | None = None) -> None: ...

    assert sorted(s.id for s in app.code_schedules()) == ["also-add", "hourly-add"]
    assert {s.task for s in app.code_schedules()} == {"add", "add2"}


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"cron": "60 * * * *"}, "out of range"),
        ({"cron": "* * * * *", "timezone": "Nowhere/Town"}, "unknown time zone"),
        ({"cron": "* * * * *", "misfire": "burst"}, "misfire"),
        ({"cron": "* * * * *", "task": "missing"}, "unknown task"),
    ],
)
def test_periodic_refuses_bad_definitions(kwargs: dict[str, str], reason: str) -> None:
    """Registration fails with TaskDefinitionError saying why, at the call (before any
    function is registered as a task)."""
    app = Burrow(namespace="unit")
    with pytest.raises(TaskDefinitionError, match=reason):
        app.periodic(**kwargs)  # type: ignore[call-overload]
    assert len(app.registry) == 0


def test_two_schedules_with_one_id_are_refused() -> None:
    """A second schedule under the same id asks for another name=."""
    app = Burrow(namespace="unit")

    @app.task
    async def ping() -> None: ...

    app.periodic("* * * * *", task="ping")
    with pytest.raises(TaskDefinitionError, match="name="):
        app.periodic("0 * * * *", task="ping")
