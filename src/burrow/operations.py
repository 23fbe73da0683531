"""Queue statistics and dead letters of a ``Burrow`` app (a mixin of ``Burrow``).

Listing, replaying and purging dead letters, and reading queue depths, are operations on
the broker that the CLI (``burrow queues``, ``burrow dlq``) and the HTTP API share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson

from burrow.broker.amqp.broker import QueueStats
from burrow.broker.topology import NORMAL_LANE
from burrow.tasks.envelope import HDR_ATTEMPT, HDR_HISTORY, HDR_ORIGIN, HDR_REASON

if TYPE_CHECKING:
    from burrow.broker.amqp import AmqpBroker
    from burrow.broker.topology import Names
    from burrow.config import Settings
    from burrow.state.redis import RedisStateStore
    from burrow.tasks.registry import TaskRegistry


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message in a dead-letter queue."""

    task_id: str | None
    name: str | None
    queue: str
    reason: str
    error: dict[str, Any] | None
    runs: int | None
    body: bytes
    history: list[dict[str, Any]] = field(default_factory=list)


class Operations:
    """Queue statistics and dead letters (mixin of ``Burrow``)."""

    if TYPE_CHECKING:
        settings: Settings
        names: Names
        registry: TaskRegistry

        @property
        def broker(self) -> AmqpBroker: ...

        @property
        def state(self) -> RedisStateStore: ...

        async def connect(self, *, timeout: float | None = None) -> None: ...

        async def declare_queue(self, queue: str) -> None: ...

        def lanes(self, queue: str) -> tuple[str, ...]: ...

        def route(self, queue: str, priority: int | None) -> str: ...

    def all_queues(self, queues: Sequence[str] | None = None) -> list[str]:
        return list(queues or self.registry.queues() or ["default"])

    async def queue_stats(self, queue: str) -> tuple[QueueStats | None, QueueStats | None]:
        """(work queue, dead-letter queue) statistics; None for a queue that does not exist.

        For a queue with priority lanes the work queue's figures cover every lane: the
        ready messages of all lanes, and the consumers of the normal lane (each worker
        consumes every lane).
        """
        await self.broker.connect(timeout=self.settings.publish_timeout)
        return await self.work_queue_stats(queue), await self.broker.queue_stats(
            self.names.dlq(queue)
        )

    async def work_queue_stats(self, queue: str) -> QueueStats | None:
        """The work queue's statistics, lanes added up (see ``queue_stats``); None when it
        does not exist. Expects a connected broker."""
        work = await self.broker.queue_stats(self.names.queue(queue))
        if work is not None:
            for lane in self.lanes(queue):
                if lane == NORMAL_LANE:
                    continue
                extra = await self.broker.queue_stats(self.names.lane(queue, lane))
                if extra is not None:
                    work = replace(work, messages=work.messages + extra.messages)
        return work

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """The first ``limit`` dead letters of ``queue``, left in place."""
        await self.broker.connect(timeout=self.settings.publish_timeout)
        found = await self.broker.peek(self.names.dlq(queue), limit)
        return [_dead_letter(d, queue) for d in found]

    async def replay_dead_letters(self, queue: str, *, limit: int = 1000) -> int:
        """Move up to ``limit`` dead letters back to ``queue`` as fresh runs; returns how many.

        Each task's record is reopened (``failed`` -> ``queued``, run count reset) before its
        message is republished, and the dead letter is acked only after the confirm.
        """
        await self.connect()
        await self.declare_queue(queue)

        async def replay(delivery: Any) -> bool:
            headers = {
                k: v
                for k, v in (delivery.headers or {}).items()
                if not k.startswith(("x-burrow-", "x-death", "x-first-death", "x-last-death"))
            }
            headers[HDR_ATTEMPT] = 1
            if delivery.message_id:
                await self.state.reopen(delivery.message_id, "replayed from the dead letters")
            await self.broker.publish(
                self.route(queue, delivery.priority),
                delivery.body,
                message_id=delivery.message_id,
                type_=delivery.type,
                headers=headers,
                content_type=delivery.content_type,
                priority=delivery.priority,
            )
            return True

        return await self.broker.drain(self.names.dlq(queue), limit, replay)

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; returns how many."""
        await self.broker.connect(timeout=self.settings.publish_timeout)
        return await self.broker.purge(self.names.dlq(queue))


def _dead_letter(delivery: Any, queue: str) -> DeadLetter:
    headers = delivery.headers or {}
    error = headers.get("x-burrow-error")
    reason = headers.get(HDR_REASON)
    if reason is None:  # dead-lettered by the broker itself (delivery limit)
        deaths = headers.get("x-death") or [{}]
        reason = str(deaths[0].get("reason", "unknown")) if isinstance(deaths, list) else "unknown"
    return DeadLetter(
        task_id=delivery.message_id,
        name=delivery.type,
        queue=str(headers.get(HDR_ORIGIN, queue)),
        reason=str(reason),
        error=orjson.loads(error) if isinstance(error, str | bytes) else None,
        runs=headers.get("x-burrow-runs"),
        body=delivery.body,
        history=_history(headers.get(HDR_HISTORY)),
    )


def _history(raw: Any) -> list[dict[str, Any]]:
    """The failed runs listed in ``x-burrow-history`` (empty when absent or unreadable)."""
    if not isinstance(raw, str | bytes):
        return []
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


__all__ = ["DeadLetter", "Operations"]
