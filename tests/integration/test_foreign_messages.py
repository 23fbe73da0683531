"""Messages from foreign producers (plain pika, no burrow code) on the real RabbitMQ/Redis:
broken ones are dead-lettered once with the right reason, valid ones run."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pika
import pytest
from pydantic import BaseModel

from burrow import Burrow, TaskStatus
from tests._pika import AMQP_PARAMS
from tests.conftest import running_worker

pytestmark = pytest.mark.integration


class Echo(BaseModel):
    text: str


def pika_publish(queue: str, messages: list[tuple[bytes, pika.BasicProperties]]) -> None:
    """Publish ``messages`` to ``queue`` through the default exchange with plain pika."""
    connection = pika.BlockingConnection(AMQP_PARAMS)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for body, props in messages:
            channel.basic_publish(
                exchange="", routing_key=queue, body=body, properties=props, mandatory=True
            )
        channel.close()
    finally:
        connection.close()


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 15.0, interval: float = 0.1
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s (last value: {value!r})")
        await asyncio.sleep(interval)


def props(**kwargs: Any) -> pika.BasicProperties:
    return pika.BasicProperties(delivery_mode=2, **kwargs)


async def test_broken_foreign_messages_are_dead_lettered_once_and_worker_keeps_working(
    make_app: Callable[..., Burrow],
) -> None:
    """Each unusable foreign message lands in the DLQ exactly once with its reason, and the
    worker then still runs normal tasks."""
    app = make_app(max_message_bytes=1024)
    runs: list[str] = []

    @app.task(max_retries=5)
    async def echo(p: Echo) -> str:
        runs.append(p.text)
        return p.text

    ids = {
        reason: f"foreign-{reason}-{uuid.uuid4().hex[:8]}" for reason in ("m", "u", "v", "c", "t")
    }
    messages = [
        # (a) no type property
        (b'{"text": "a"}', props(message_id=ids["m"], content_type="application/json")),
        # (b) a type no task has
        (
            b'{"text": "b"}',
            props(message_id=ids["u"], type="no_such_task", content_type="application/json"),
        ),
        # (c) a real task, but the body is not JSON
        (
            b"\x80\x04this is not json",
            props(message_id=ids["v"], type="echo", content_type="application/json"),
        ),
        # (d) a pickled body, announced as such
        (
            b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94.",
            props(message_id=ids["c"], type="echo", content_type="application/x-python-serialize"),
        ),
        # (e) larger than max_message_bytes
        (
            json.dumps({"text": "x" * 2000}).encode(),
            props(message_id=ids["t"], type="echo", content_type="application/json"),
        ),
    ]
    expected = {
        ids["m"]: "missing_type",
        ids["u"]: "unknown_task",
        ids["v"]: "validation_error",
        ids["c"]: "bad_content_type",
        ids["t"]: "too_large",
    }

    async with running_worker(app) as worker:
        await asyncio.to_thread(pika_publish, app.names.queue("default"), messages)

        async def five_letters() -> Any:
            letters = await app.dead_letters("default")
            return letters if len(letters) >= 5 else None

        await eventually(five_letters, timeout=20)
        # Give a looping message time to show up a second time, should there be one.
        await asyncio.sleep(1.0)
        letters = await app.dead_letters("default")

        handle = await app.submit("echo", {"text": "after"})
        record = await app.wait(handle.id, timeout=15)

        async def settled() -> Any:
            # The record can turn terminal a moment before the worker counts it.
            st = worker.statistics()
            return st if st.in_flight == 0 and st.succeeded == 1 else None

        stats = await eventually(settled, timeout=5)

    assert sorted(letter.task_id or "" for letter in letters) == sorted(expected)
    assert {letter.task_id: letter.reason for letter in letters} == expected
    assert all(letter.queue == "default" for letter in letters)
    assert record.status is TaskStatus.SUCCEEDED
    assert record.result == "after"
    assert runs == ["after"]
    # 5 foreign messages + 1 normal task, each seen by the handler path exactly once.
    assert stats.received == 6
    assert stats.rejected_messages == 4
    assert stats.dead == 1
    assert stats.succeeded == 1
    bad_json = await app.get(ids["v"])
    assert bad_json.status is TaskStatus.FAILED
    assert bad_json.error is not None
    assert bad_json.error.reason == "validation_error"


async def test_valid_foreign_message_runs(make_app: Callable[..., Burrow]) -> None:
    """A pika message with type and JSON body (no burrow headers) runs and gets a record."""
    app = make_app()
    runs: list[str] = []

    @app.task
    async def echo(p: Echo) -> str:
        runs.append(p.text)
        return p.text.upper()

    task_id = f"interop-{uuid.uuid4().hex}"
    async with running_worker(app) as worker:
        await asyncio.to_thread(
            pika_publish,
            app.names.queue("default"),
            [
                (
                    json.dumps({"text": "hello"}).encode(),
                    props(message_id=task_id, type="echo", content_type="application/json"),
                )
            ],
        )

        async def terminal() -> Any:
            record = await app.state.get(task_id)
            return record if record is not None and record.terminal else None

        await app.state.open()
        record = await eventually(terminal, timeout=15)
        stats = worker.statistics()
    assert record.status is TaskStatus.SUCCEEDED
    assert record.result == "HELLO"
    assert record.name == "echo"
    assert record.attempts == 1
    assert runs == ["hello"]
    assert stats.received == 1
    assert await app.dead_letters("default") == []
