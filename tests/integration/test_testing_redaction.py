"""``burrow.testing.running_worker`` logs as ``burrow worker`` does: payloads and secrets
hidden (unless ``BURROW_LOG_PAYLOADS``), under structlog's default set-up and under the log
capture of ``burrow.testing``; structlog's set-up is left as it was found."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
import structlog.testing

from burrow import Burrow, Reject
from burrow.observability import HIDDEN
from burrow.testing import capture_logs, running_worker

pytestmark = pytest.mark.integration

CARD = "4111-1111-1111-1111"


@pytest.fixture
def structlog_defaults() -> Iterator[None]:
    """structlog as an application that never configured it has it; put back afterwards."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        yield
    finally:
        structlog.configure(**saved)


def with_charge(app: Burrow) -> Burrow:
    @app.task(queue="billing", max_retries=0)
    async def charge(p: dict[str, Any]) -> None:
        raise Reject("card declined")

    return app


async def fail_one(app: Burrow) -> None:
    """Submit a charge with a card number in its payload and wait until it failed."""
    handle = await app.submit("charge", {"card": CARD, "amount": 12})
    record = await app.wait(handle.id, timeout=30)
    assert record.status == "failed"


def failure_of(events: list[Any]) -> dict[str, Any]:
    found = [e for e in events if e.get("event") == "task failed for good"]
    assert len(found) == 1, [e.get("event") for e in events]
    return dict(found[0])


async def test_worker_output_hides_the_payload_with_structlog_unconfigured(
    make_app: Callable[..., Burrow],
    structlog_defaults: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With structlog's defaults (nothing configured), the line about the failed task says
    the payload is hidden and never shows the card number."""
    before = list(structlog.get_config()["processors"])
    app = with_charge(make_app())
    async with running_worker(app):
        await fail_one(app)
    out = capsys.readouterr().out
    assert "task failed for good" in out
    assert HIDDEN in out
    assert CARD not in out
    assert structlog.get_config()["processors"] == before


async def test_captured_lines_of_running_worker_hide_the_payload(
    make_app: Callable[..., Burrow],
) -> None:
    """The failure line captured around the worker (structlog's capture or
    ``burrow.testing.capture_logs``) or inside it carries the task context and a hidden
    payload."""
    app = with_charge(make_app())
    with structlog.testing.capture_logs() as raw:
        async with running_worker(app):
            await fail_one(app)
    with capture_logs() as around:
        async with running_worker(app):
            await fail_one(app)
    async with running_worker(app):
        with capture_logs() as inside:
            await fail_one(app)
    for events in (raw, around, inside):
        line = failure_of(events)
        assert line["payload"] == HIDDEN
        assert line["task"] == "charge"
        assert CARD not in repr(events)


async def test_log_payloads_setting_shows_the_payload(make_app: Callable[..., Burrow]) -> None:
    """With ``log_payloads`` set on the app, the worker's failure line shows the payload
    as text, as ``BURROW_LOG_PAYLOADS=true`` makes ``burrow worker`` do."""
    app = with_charge(make_app(log_payloads=True))
    with structlog.testing.capture_logs() as events:
        async with running_worker(app):
            await fail_one(app)
    line = failure_of(events)
    assert CARD in line["payload"]
    assert isinstance(line["payload"], str)
