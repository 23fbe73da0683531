"""Per-queue queue types on the real RabbitMQ: a classic and a quorum queue in one app, each
of the type asked for (checked on the broker) and running tasks; a type clash is explained."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aio_pika
import aiormq.exceptions
import pytest

from burrow import Burrow, TaskStatus
from burrow.errors import ConfigurationError
from tests.conftest import running_worker

pytestmark = pytest.mark.integration

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def expected_arguments(ns: str, queue: str, kind: str, delivery_limit: int) -> dict[str, Any]:
    """Written out by hand (not from burrow's topology) so the test checks the broker."""
    args: dict[str, Any] = {
        "x-queue-type": kind,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{ns}.{queue}.dlq",
    }
    if kind == "quorum":
        args |= {
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    return args


async def has_arguments(conn: aio_pika.abc.AbstractConnection, name: str, args: Any) -> bool:
    """Whether queue ``name`` exists with exactly ``args`` (x-queue-type included).

    A passive declare first, so that nothing is created; then RabbitMQ's own equivalence
    check: re-declaring an existing queue succeeds only when these arguments, the type
    among them, match what it has, and fails with PRECONDITION_FAILED otherwise.
    """
    channel = await conn.channel()
    try:
        await channel.declare_queue(name, passive=True)
        await channel.declare_queue(name, durable=True, arguments=args)
    except aiormq.exceptions.ChannelPreconditionFailed:
        return False
    else:
        await channel.close()
        return True


async def test_classic_and_quorum_queues_in_one_app(
    make_app: Callable[..., Burrow], namespace: str, request: pytest.FixtureRequest
) -> None:
    """queue_type= makes one queue (and its DLQ) classic beside a quorum one; both run tasks."""
    app = make_app(delivery_limit=7)

    @app.task(queue="reports", queue_type="classic")
    async def report(p: dict[str, int]) -> int:
        return p["n"] * 10

    @app.task(queue="math")
    async def add(p: dict[str, int]) -> int:
        return p["a"] + p["b"]

    async with running_worker(app):
        first = await app.submit("report", {"n": 4})
        second = await app.submit("add", {"a": 2, "b": 3})
        done = [await app.wait(h.id, timeout=15) for h in (first, second)]
    assert [r.status for r in done] == [TaskStatus.SUCCEEDED, TaskStatus.SUCCEEDED]
    assert [r.result for r in done] == [40, 5]
    assert [r.queue for r in done] == ["reports", "math"]

    conn = await aio_pika.connect(
        AMQP_URL, client_properties={"connection_name": request.node.nodeid}
    )
    try:
        for queue, kind, other in (("reports", "classic", "quorum"), ("math", "quorum", "classic")):
            work, dlq = f"{namespace}.{queue}", f"{namespace}.{queue}.dlq"
            assert await has_arguments(conn, work, expected_arguments(namespace, queue, kind, 7))
            assert not await has_arguments(
                conn, work, expected_arguments(namespace, queue, other, 7)
            )
            assert await has_arguments(conn, dlq, {"x-queue-type": kind})
            assert not await has_arguments(conn, dlq, {"x-queue-type": other})
    finally:
        await conn.close()


async def test_settings_type_overrides_the_task_type_on_the_broker(
    make_app: Callable[..., Burrow], namespace: str
) -> None:
    """BURROW_QUEUE_TYPES (settings.queue_types) wins over queue_type= in code."""
    app = make_app(queue_types={"reports": "quorum"})

    @app.task(queue="reports", queue_type="classic")
    async def report(p: dict[str, int]) -> int:
        return p["n"]

    async with running_worker(app):
        record = await app.wait((await app.submit("report", {"n": 1})).id, timeout=15)
    assert record.status is TaskStatus.SUCCEEDED

    conn = await aio_pika.connect(AMQP_URL)
    try:
        assert await has_arguments(conn, f"{namespace}.reports.dlq", {"x-queue-type": "quorum"})
    finally:
        await conn.close()


async def test_existing_queue_of_another_type_is_explained(
    make_app: Callable[..., Burrow], namespace: str
) -> None:
    """Declaring a quorum queue as classic fails with which queue, both types and the fix,
    for the producer and for a worker alike."""
    quorum_app = make_app()
    await quorum_app.connect()
    await quorum_app.declare_queue("reports")

    classic_app = make_app(queue_types={"reports": "classic"})

    @classic_app.task(queue="reports")
    async def report(p: dict[str, int]) -> int:
        return p["n"]

    with pytest.raises(ConfigurationError) as info:
        await classic_app.submit("report", {"n": 1})
    message = str(info.value)
    assert f"'{namespace}.reports.dlq' already exists on the broker as a quorum queue" in message
    assert "declares it classic (from BURROW_QUEUE_TYPES)" in message
    assert "BURROW_QUEUE_TYPES=reports:quorum" in message
    assert f"rabbitmqctl delete_queue {namespace}.reports.dlq" in message
    assert isinstance(info.value.__cause__, Exception)

    # The work queue is refused over x-dead-letter-strategy, not x-queue-type; still named.
    await quorum_app.broker.delete_queue(f"{namespace}.reports.dlq")
    with pytest.raises(ConfigurationError, match=f"'{namespace}.reports' already exists"):
        async with running_worker(make_app(queue_types={"reports": "classic"}), queues=["reports"]):
            pass
