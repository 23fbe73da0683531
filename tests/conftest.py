"""Shared fixtures: a unique namespace per test, apps that clean up after themselves, and
in-process workers. RabbitMQ and Redis must answer: a missing server fails the run."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

from burrow import Burrow, Settings
from burrow.testing import purge
from burrow.testing import running_worker as running_worker  # the tests' in-process worker
from tests import _leaks
from tests._leaks import new_namespace

AMQP = ("127.0.0.1", 5672)
REDIS = ("127.0.0.1", 6379)


def _answers(addr: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(addr, timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def _servers_up() -> None:
    """Integration tests need the real servers; `make test` starts them (never skip)."""
    missing = [
        f"{n} on {h}:{p}"
        for n, (h, p) in (("RabbitMQ", AMQP), ("Redis", REDIS))
        if not _answers((h, p))
    ]
    if missing:
        pytest.fail(f"not answering: {', '.join(missing)} (run scripts/services.sh)")


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    """At the end of the run, nothing of the run's namespaces is left on the broker or in
    Redis: what is found is deleted and the run fails naming it (see tests/_leaks.py)."""
    yield
    found = _leaks.leftovers(_leaks.NAMESPACES)
    if found:
        _leaks.delete(found)
        pytest.fail(
            "tests left these behind (deleted now): "
            f"queues {found.queues}, exchanges {found.exchanges}, Redis keys {found.keys[:20]}"
        )


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A namespace no other test or run uses."""
    return new_namespace("t")


def fast_settings(namespace: str, **overrides: Any) -> Settings:
    """Settings tuned for tests: short backoff, leases and grace."""
    values: dict[str, Any] = {
        "namespace": namespace,
        "retry_base": 0.1,
        "retry_cap": 1.0,
        "lease_ttl": 5.0,
        "reaper_interval": 1.0,
        "grace": 5.0,
        "worker_heartbeat": 1.0,
        "publish_timeout": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


async def cleanup(
    namespace: str,
    queues: list[str],
    *,
    rpc: Sequence[str] = (),
    exchanges: Sequence[str] = (),
) -> None:
    """Delete everything a test's namespace declared in RabbitMQ and Redis: the work and
    dead-letter queues of ``queues``, the request queues of ``rpc`` handlers, the event
    ``exchanges`` (unprefixed names), the delay tiers."""
    await purge(
        Burrow(settings=Settings(namespace=namespace)),
        queues=queues,
        rpc=rpc,
        exchanges=exchanges,
    )


@pytest.fixture
async def make_app(namespace: str) -> AsyncIterator[Callable[..., Burrow]]:
    """Build apps on the test's namespace; everything they declared is deleted afterwards.
    A queue or exchange a test declares by hand goes in ``make_app.extra_queues`` or
    ``make_app.extra_exchanges`` (unprefixed names)."""
    apps: list[Burrow] = []
    extra_queues: set[str] = set()
    extra_exchanges: set[str] = set()

    def factory(**overrides: Any) -> Burrow:
        app = Burrow(settings=fast_settings(namespace, **overrides))
        apps.append(app)
        return app

    factory.extra_queues = extra_queues  # type: ignore[attr-defined]
    factory.extra_exchanges = extra_exchanges  # type: ignore[attr-defined]
    yield factory
    queues = {q for app in apps for q in app.registry.queues()} | extra_queues | {"default"}
    # Subscribers: shared queues, or the stem of broadcast queues (whose .dlq is shared).
    queues |= {s.queue for app in apps for s in app.handlers.subscribers()}
    rpc = {d.name for app in apps for d in app.handlers.rpc_handlers()}
    exchanges = {e for app in apps for e in app.handlers.exchanges()} | extra_exchanges
    for app in apps:
        await app.close()
    await cleanup(namespace, sorted(queues), rpc=sorted(rpc), exchanges=sorted(exchanges))


async def eventually(
    check: Callable[[], Any], *, timeout: float, what: str, pool: Any = None
) -> Any:
    """Poll ``check`` (sync or async) until it returns something true; fail the test with
    the logs of ``pool`` (anything with ``output()``) when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            logs = f"\n{pool.output()}" if pool else ""
            pytest.fail(f"{what}: not within {timeout} s (last value: {value!r}){logs}")
        await asyncio.sleep(0.05)
