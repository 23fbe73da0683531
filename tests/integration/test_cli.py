"""The CLI's fixed command shapes (names scripts rely on), run as real subprocesses."""

from __future__ import annotations

from typing import Any

import pytest

from burrow import Burrow
from burrow.config import Settings
from tests.conftest import cleanup
from tests.integration._procs import burrow

pytestmark = pytest.mark.integration

APP = "examples.demo.app:app"
RANKED_APP = "tests.integration.test_cli:ranked_app"

ranked_app = Burrow()


@ranked_app.task(queue="ranked_cli", priorities=True)
async def ranked(p: dict[str, Any]) -> None:
    """A task whose queue has priority lanes."""


@pytest.fixture
async def cli_namespace(namespace: str):  # type: ignore[no-untyped-def]
    yield namespace
    await cleanup(namespace, ["default", "math", "ranked_cli", "ranked_cli.high", "ranked_cli.low"])


def test_submit_status_queues_and_dlq_commands(cli_namespace: str) -> None:
    """submit prints an id, status shows it queued, queues counts it, dlq APP list/purge work."""
    ns = cli_namespace
    sub = burrow(ns, "submit", APP, "add", "--payload", '{"a": 1, "b": 2}')
    assert sub.returncode == 0, sub.stderr
    task_id = sub.stdout.strip().splitlines()[-1]
    status = burrow(ns, "status", APP, task_id)
    assert status.returncode == 0, status.stderr
    assert '"status": "queued"' in status.stdout
    queues = burrow(ns, "queues", APP)
    assert queues.returncode == 0, queues.stderr
    math_row = next(line for line in queues.stdout.splitlines() if f"{ns}.math" in line)
    assert " 1 " in math_row  # one ready message, no consumer
    listed = burrow(ns, "dlq", APP, "list")
    assert listed.returncode == 0, listed.stderr
    purged = burrow(ns, "dlq", APP, "purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert "purged 0" in purged.stdout


def test_bad_input_gets_a_clear_error(cli_namespace: str) -> None:
    """Invalid JSON, an unknown task and an invalid payload each fail with a clear message."""
    ns = cli_namespace
    bad_json = burrow(ns, "submit", APP, "add", "--payload", "{nope")
    assert bad_json.returncode == 2
    assert "not valid JSON" in bad_json.stderr
    unknown = burrow(ns, "submit", APP, "nosuch", "--payload", "{}")
    assert unknown.returncode == 1
    assert "unknown task 'nosuch'" in unknown.stderr
    invalid = burrow(ns, "submit", APP, "add", "--payload", '{"a": "x"}')
    assert invalid.returncode == 1
    assert "invalid payload for task 'add'" in invalid.stderr


async def test_submit_with_priority_goes_to_its_lane(cli_namespace: str) -> None:
    """--priority 9 puts the task on the high lane; a priority outside 0-9 is refused."""
    ns = cli_namespace
    sub = burrow(ns, "submit", RANKED_APP, "ranked", "--priority", "9")
    assert sub.returncode == 0, sub.stderr
    app = Burrow(settings=Settings(namespace=ns))
    try:
        await app.connect(timeout=10)
        high = await app.broker.queue_stats(app.names.lane("ranked_cli", "high"))
        normal = await app.broker.queue_stats(app.names.queue("ranked_cli"))
    finally:
        await app.close()
    assert high is not None
    assert high.messages == 1
    assert normal is not None
    assert normal.messages == 0
    bad = burrow(ns, "submit", RANKED_APP, "ranked", "--priority", "11")
    assert bad.returncode == 2
    assert "--priority" in bad.stderr
