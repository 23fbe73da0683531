"""Interop: a Node.js producer using ``amqplib`` from npm (no burrow code) submits a task
that a burrow worker runs to success.

The producer is the ``js`` block under "Node (amqplib)" in ``docs/wire-format.md``, run as
it stands except for the queue name (the test's namespace) and a 1 s delay instead of 60 s,
so the documented snippet is what is tested. amqplib is installed into a temp folder; the
test skips only when npm cannot install it (npm missing, offline, or too slow), with npm's
error as the reason.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

from burrow import Burrow, TaskRecord, TaskStatus
from tests.conftest import eventually, running_worker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "wire-format.md"
AMQPLIB = "amqplib@2"
NPM_TIMEOUT = 180
NODE_TIMEOUT = 30
DOC_QUEUE = "'burrow.math'"
DOC_DELAY = "Date.now() + 60000"


class Add(BaseModel):
    a: int
    b: int


def doc_snippet() -> str:
    """The ``js`` block of the "Node (amqplib)" section of docs/wire-format.md."""
    text = DOC.read_text()
    section = text[text.index("### Node (amqplib)") :]
    match = re.search(r"```js\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no ```js block under '### Node (amqplib)' in wire-format.md"
    return match.group(1)


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with amqplib installed by npm (skips only when npm cannot install it)."""
    folder = tmp_path_factory.mktemp("node")
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm cannot install {AMQPLIB}: npm is not on PATH")
    cmd = [npm, "install", "--prefix", str(folder), AMQPLIB, "--no-audit", "--no-fund"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm cannot install {AMQPLIB}: `npm install` took over {NPM_TIMEOUT} s")
    if done.returncode != 0 or not (folder / "node_modules" / "amqplib").is_dir():
        error = (done.stderr or done.stdout).strip()[-1500:]
        pytest.skip(f"npm cannot install {AMQPLIB} (exit {done.returncode}): {error}")
    return folder


def producer(node_dir: Path, queue: str) -> Path:
    """The documented script, publishing to ``queue`` with a 1 s delay; returns its path."""
    code = doc_snippet()
    assert DOC_QUEUE in code, "the doc snippet no longer publishes to 'burrow.math'"
    assert DOC_DELAY in code, f"the doc snippet no longer has {DOC_DELAY!r}"
    code = code.replace(DOC_QUEUE, repr(queue)).replace(DOC_DELAY, "Date.now() + 1000")
    code = code.replace("burrow.math", queue)  # the error message names the queue too
    script = node_dir / f"add-{queue}.js"
    script.write_text(code)
    return script


def node(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(script)],
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )


async def test_node_amqplib_producer_submits_a_task_that_runs(
    make_app: Callable[..., Burrow], node_dir: Path
) -> None:
    """The documented amqplib script: refused (mandatory) while no worker has declared the
    queue; with a worker, its task runs once after its 1 s ETA and succeeds with a + b."""
    app = make_app()
    runs: list[Add] = []

    @app.task(queue="math")
    async def add(p: Add) -> int:
        runs.append(p)
        return p.a + p.b

    script = producer(node_dir, app.names.queue("math"))
    refused = await asyncio.to_thread(node, script)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"unroutable: no worker has declared {app.names.queue('math')}" in refused.stderr

    async with running_worker(app):
        sent_at = time.time()
        done = await asyncio.to_thread(node, script)
        assert done.returncode == 0, done.stderr
        task_id = done.stdout.strip().splitlines()[-1]

        async def finished() -> TaskRecord | None:
            # A delayed task from a foreign producer has no record until it starts.
            record = await app.state.get(task_id)
            return record if record is not None and record.terminal else None

        await app.state.open()
        record = await eventually(finished, timeout=20, what=f"task {task_id} finished")

    assert record.status is TaskStatus.SUCCEEDED, record.error
    assert record.result == 3
    assert record.name == "add"
    assert record.queue == "math"
    assert record.attempts == 1
    assert record.started_at is not None
    assert record.started_at >= sent_at + 0.9  # not before its ETA
    assert runs == [Add(a=1, b=2)]
    assert await app.dead_letters("math") == []
