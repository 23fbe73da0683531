"""Rate limits: parsing ``"N/unit"`` and validating it when a task is registered."""

from __future__ import annotations

import pytest

from burrow import Burrow, Settings
from burrow.errors import TaskDefinitionError
from burrow.tasks.definition import build_definition
from burrow.tasks.ratelimit import (
    SPACING_MARGIN,
    RateLimit,
    parse_rate_limit,
    rate_sleepers,
)
from burrow.tasks.retry import RetryPolicy


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("10/s", 10, 1.0),
        ("100/m", 100, 60.0),
        ("1000/h", 1000, 3600.0),
        (" 5 / sec ", 5, 1.0),
        ("3/min", 3, 60.0),
        ("2/hour", 2, 3600.0),
        ("7/S", 7, 1.0),
    ],
)
def test_parses_count_and_period(text: str, count: int, period: float) -> None:
    limit = parse_rate_limit(text)
    assert (limit.count, limit.period) == (count, period)


def test_interval_spaces_starts_evenly_over_the_period() -> None:
    assert parse_rate_limit("5/s").interval == pytest.approx(0.2)
    assert parse_rate_limit("120/m").interval == pytest.approx(0.5)
    assert RateLimit(count=1000, period=3600.0, text="1000/h").interval == pytest.approx(3.6)


def test_slots_are_spaced_a_little_wider_than_the_limit_needs() -> None:
    limit = parse_rate_limit("5/s")
    assert limit.spacing == pytest.approx(0.2 * (1 + SPACING_MARGIN))
    # N slots still fit in little more than one period: the limit is not much lowered.
    assert limit.count * limit.spacing <= limit.period * 1.05


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("10", "N/s, N/m or N/h"),
        ("10/d", "N/s, N/m or N/h"),
        ("ten/s", "N/s, N/m or N/h"),
        ("1.5/s", "N/s, N/m or N/h"),
        ("-1/s", "N/s, N/m or N/h"),
        ("0/s", "at least 1"),
        ("5000/s", "above 1000/s"),
        ("", "N/s, N/m or N/h"),
    ],
)
def test_refuses_malformed_limits_saying_what_is_accepted(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_rate_limit(text)


def test_refuses_a_limit_that_is_not_text() -> None:
    with pytest.raises(TypeError, match="string such as '10/s'"):
        parse_rate_limit(10)  # type: ignore[arg-type]


def _handler(p: dict[str, int]) -> None:
    return None


def test_definition_carries_the_parsed_limit() -> None:
    definition = build_definition(
        _handler, name="t", queue="q", retry=RetryPolicy(), timeout=None, rate_limit="10/m"
    )
    assert definition.rate_limit == parse_rate_limit("10/m")
    plain = build_definition(_handler, name="u", queue="q", retry=RetryPolicy(), timeout=None)
    assert plain.rate_limit is None


def test_app_task_refuses_a_bad_limit_naming_the_task() -> None:
    app = Burrow(settings=Settings(namespace="unit"))
    with pytest.raises(TaskDefinitionError, match=r"task 'limited': rate_limit '10 per s'"):

        @app.task(rate_limit="10 per s")
        async def limited(p: dict[str, int]) -> None:
            return None

    assert "limited" not in app.registry


def test_app_task_accepts_a_limit() -> None:
    app = Burrow(settings=Settings(namespace="unit"))

    @app.task(rate_limit="5/s")
    async def limited(p: dict[str, int]) -> None:
        return None

    limit = app.registry.get("limited").rate_limit
    assert limit is not None
    assert limit.count == 5


@pytest.mark.parametrize(("concurrency", "sleepers"), [(1, 1), (4, 1), (8, 2), (64, 16)])
def test_sleeping_for_a_slot_never_takes_every_concurrency_slot(
    concurrency: int, sleepers: int
) -> None:
    assert rate_sleepers(concurrency) == sleepers
    assert rate_sleepers(concurrency) < concurrency or concurrency == 1
