"""Run an example program as a newcomer would (``python -m examples...`` from the repo root)
on a namespace of its own, check that it left nothing behind, and clean up regardless."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from burrow import Burrow, Settings
from tests.conftest import cleanup

ROOT = Path(__file__).resolve().parents[2]
#: Seconds one program may take (each takes 1-2 s).
TIMEOUT = 30.0


@dataclass(frozen=True)
class Declared:
    """What a program declares (unprefixed names, as ``tests.conftest.cleanup`` takes them)."""

    queues: Sequence[str] = ()
    rpc: Sequence[str] = ()
    exchanges: Sequence[str] = ()


async def run_example(module: str, namespace: str, declared: Declared) -> str:
    """Run ``module`` to its end and return its stdout; fail on a non-zero exit, a timeout,
    or anything of its namespace still in RabbitMQ or Redis afterwards."""
    try:
        output = await _run(module, namespace)
        left = await _leftovers(namespace, declared)
        assert not left, f"{module} left behind: {left}"
        return output
    finally:
        await cleanup(
            namespace, list(declared.queues), rpc=declared.rpc, exchanges=declared.exchanges
        )


async def _run(module: str, namespace: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        cwd=ROOT,
        env={**os.environ, "BURROW_NAMESPACE": namespace},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"{module} still ran after {TIMEOUT} s\n{out.decode()}\n{err.decode()}")
    output = out.decode()
    assert proc.returncode == 0, f"{module} exited {proc.returncode}\n{output}\n{err.decode()}"
    return output


async def _leftovers(namespace: str, declared: Declared) -> list[str]:
    """Queues, exchanges and Redis keys of ``namespace`` that still exist."""
    app = Burrow(settings=Settings(namespace=namespace))
    names = app.names
    queues = [names.queue(q) for q in declared.queues] + [names.dlq(q) for q in declared.queues]
    queues += [names.rpc_queue(r) for r in declared.rpc]
    exchanges = [names.exchange(e) for e in declared.exchanges] + [names.delay_exchange]
    left: list[str] = []
    try:
        await app.broker.connect(timeout=10)
        left += [q for q in queues if await app.broker.queue_stats(q) is not None]
        left += [e for e in exchanges if await app.broker.exchange_exists(e)]
    finally:
        await app.close()
    redis = aioredis.Redis.from_url(app.settings.redis_url)
    try:
        left += [k.decode() async for k in redis.scan_iter(match=f"{namespace}:*", count=1000)]
    finally:
        await redis.aclose()
    return left


def routes(output: str) -> dict[str, str]:
    """The ``message → receivers`` lines a program printed, as a dict."""
    pairs = (line.split(" → ", 1) for line in output.splitlines() if " → " in line)
    return {message.strip(): receivers.strip() for message, receivers in pairs}
