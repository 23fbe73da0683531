"""Structured task logs of a real worker process (``burrow worker --log-format json``).

A task that fails once and then succeeds: every log line about it (the worker's, the
handler's through ``TaskContext.logger``, ``structlog.get_logger()`` and stdlib
``logging``) is a JSON object with its task id, task name, attempt and trace id, and no
line shows its payload.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import BaseModel

from burrow import Burrow, TaskContext, TaskStatus
from tests.conftest import eventually
from tests.integration._procs import WorkerPool

pytestmark = pytest.mark.integration

CARD_NUMBER = "card-4111-1111-1111-1111"


class Charge(BaseModel):
    card: str
    amount: int


def register(app: Burrow) -> Burrow:
    @app.task(max_retries=2)
    async def charge(p: Charge, ctx: TaskContext) -> str:
        ctx.logger.info("charging", amount=p.amount)
        structlog.get_logger("shop").info("plain structlog line")
        logging.getLogger("shop.stdlib").warning("stdlib line")
        if ctx.attempt == 1:
            raise RuntimeError("card network down")
        return "ok"

    return app


#: The app the worker process runs (namespace from BURROW_NAMESPACE).
app = register(Burrow())


def _lines(path: Path) -> list[dict[str, Any]]:
    found = []
    for raw in path.read_text(errors="replace").splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            found.append(json.loads(raw))
    return found


async def test_every_line_about_a_task_has_its_context_and_no_payload(
    make_app: Callable[..., Burrow], namespace: str, tmp_path: Path
) -> None:
    client = register(make_app())
    pool = WorkerPool(namespace, "tests.integration.test_logs:app", tmp_path)
    pool.start(concurrency=4, retry_base="0.1", retry_cap="0.5")
    try:
        handle = await client.submit("charge", {"card": CARD_NUMBER, "amount": 42})
        record = await client.wait(handle.id, timeout=60)
        assert record.status is TaskStatus.SUCCEEDED, pool.output()
        assert record.attempts == 2
        log_file = tmp_path / "worker-0.log"

        def about_task() -> list[dict[str, Any]]:
            lines = [x for x in _lines(log_file) if handle.id in json.dumps(x)]
            return lines if len(lines) >= 7 else []  # 3 per run, plus the retry line

        lines = await eventually(about_task, timeout=15, what="the task's log lines", pool=pool)
    finally:
        pool.kill_all()
    raw = log_file.read_text(errors="replace")
    assert CARD_NUMBER not in raw
    for line in lines:
        assert line["task_id"] == handle.id, line
        assert line["task"] == "charge", line
        assert line["trace_id"] == record.trace_id, line
        assert line["attempt"] in (1, 2), line
        assert "payload" not in line or CARD_NUMBER not in str(line["payload"]), line
    events = [(x["event"], x["attempt"]) for x in lines]
    for attempt in (1, 2):
        assert ("charging", attempt) in events
        assert ("plain structlog line", attempt) in events
        assert ("stdlib line", attempt) in events
    assert ("task failed, retrying", 1) in events
    (retry_line,) = [x for x in lines if x["event"] == "task failed, retrying"]
    assert retry_line["error"] == "card network down"
    assert retry_line["level"] == "warning"
    stdlib = [x for x in lines if x["event"] == "stdlib line"]
    assert all(x["logger"] == "shop.stdlib" for x in stdlib)


async def test_payloads_are_logged_only_when_asked_for(
    make_app: Callable[..., Burrow], namespace: str, tmp_path: Path
) -> None:
    """BURROW_LOG_PAYLOADS=true: the retry line carries the payload as JSON text."""
    client = register(make_app())
    pool = WorkerPool(namespace, "tests.integration.test_logs:app", tmp_path)
    pool.start(concurrency=4, retry_base="0.1", retry_cap="0.5", log_payloads="true")
    try:
        handle = await client.submit("charge", {"card": CARD_NUMBER, "amount": 7})
        await client.wait(handle.id, timeout=60)

        def retry_lines() -> list[dict[str, Any]]:
            return [
                x
                for x in _lines(tmp_path / "worker-0.log")
                if x.get("event") == "task failed, retrying" and x.get("task_id") == handle.id
            ]

        (line,) = await eventually(retry_lines, timeout=15, what="the retry line", pool=pool)
    finally:
        pool.kill_all()
    assert json.loads(line["payload"]) == {"card": CARD_NUMBER, "amount": 7}
