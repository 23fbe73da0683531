"""Queue statistics and dead letters of a ``Burrow`` app (a mixin of ``Burrow``).

The app's queues (``app_queues``) are its task queues, its event subscribers' queues and
its RPC handlers' request queues, each with its ``QueueKind``. Reading queue figures and
listing, replaying and removing dead letters are operations on the broker that the CLI
(``burrow queues``, ``burrow dlq``), the HTTP API and the dashboard share.

Dead letters:

* Every queue but an RPC request queue has them (RPC replies are at-most-once: a request is
  never dead-lettered). A task queue and a shared subscriber queue (``queue=``) keep theirs
  in ``{ns}.{queue}.dlq``; the per-worker queues of a broadcast subscriber (no ``queue=``)
  all send theirs to ``{ns}.sub.{name}.dlq``, listed as queue ``sub.{name}``.
* Each listed dead letter carries its task's current status: one whose task has since
  succeeded (replayed, or retried with ``Burrow.retry``) is ``resolved``.
* Replay sends a dead letter back to the queue it died in as a fresh run, its record
  reopened first. A broadcast subscriber's dead letter goes back to the exclusive queue of
  the worker process it failed in (its task id ``{event}:{name}@{worker id}`` names it),
  while that process runs: every other process got its own copy of the event, and one that
  stopped has nothing left to redo it for.
* A replay never drops a dead letter unseen: one whose task has since succeeded
  (``resolved``) or whose worker process is gone (``worker_gone``) stays in place and is
  counted as kept. ``remove_dead_letters`` deletes chosen ones (by task id, or the
  resolved ones); ``purge_dead_letters`` without options deletes them all.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

from burrow.broker.amqp.broker import QueueStats
from burrow.broker.topology import NORMAL_LANE
from burrow.errors import ConfigurationError, Unroutable
from burrow.state.redis import Reopened
from burrow.tasks.envelope import HDR_ATTEMPT, HDR_DEAD_AT, HDR_HISTORY, HDR_ORIGIN, HDR_REASON
from burrow.tasks.headers import replayable
from burrow.tasks.status import TaskStatus

if TYPE_CHECKING:
    from burrow.broker.amqp import AmqpBroker, Delivery
    from burrow.broker.topology import Names
    from burrow.config import Settings
    from burrow.state.redis import RedisStateStore
    from burrow.tasks.handlers import HandlerRegistry
    from burrow.tasks.registry import TaskRegistry

#: The event of a record reopened by a replay.
REPLAY_NOTE = "replayed from the dead letters"


class QueueKind(StrEnum):
    """What consumes a queue of the app."""

    #: ``@app.task(queue=...)``: tasks; dead letters in ``{ns}.{queue}.dlq``.
    TASK = "task"
    #: ``@app.subscriber(..., queue=...)``: events, one durable queue the instances share;
    #: dead letters in ``{ns}.{queue}.dlq``.
    SUBSCRIBER = "subscriber"
    #: ``@app.subscriber(...)`` without ``queue=``: an exclusive queue per worker process,
    #: ``{ns}.sub.{name}.{worker id}``; dead letters in ``{ns}.sub.{name}.dlq``.
    BROADCAST = "broadcast"
    #: ``@app.rpc``: the request queue ``{ns}.rpc.{name}``; no dead letters.
    RPC = "rpc"


class Kept(StrEnum):
    """Why a replay left a dead letter where it was."""

    #: Its task has succeeded since it died: running it again would run it twice.
    RESOLVED = "resolved"
    #: A broadcast subscriber's dead letter whose worker process no longer runs.
    WORKER_GONE = "worker_gone"


@dataclass(frozen=True, slots=True)
class AppQueue:
    """One queue of the app, by the unprefixed name the CLI and HTTP API take.

    Attributes:
        name: ``{queue}`` of a task or shared subscriber queue, ``sub.{name}`` of a
            broadcast subscriber, ``rpc.{name}`` of an RPC handler.
        kind: what consumes it.
        handlers: the tasks, the subscriber or the RPC handler it feeds, by name.
    """

    name: str
    kind: QueueKind
    handlers: tuple[str, ...]

    @property
    def has_dead_letters(self) -> bool:
        return self.kind is not QueueKind.RPC


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """A queue of the app with its figures from the broker (None: no such queue yet; a
    broadcast subscriber's per-worker queues are exclusive to their workers and cannot be
    read from another connection)."""

    queue: AppQueue
    broker_name: str
    type: str
    depth: int | None
    consumers: int | None
    dead_letters: int | None
    dead_letter_queue: str | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message in a dead-letter queue.

    ``status`` is its task's status when it was listed (None: no record, e.g. expired);
    ``dead_at`` the Unix time it was dead-lettered (None: not recorded).
    """

    task_id: str | None
    name: str | None
    queue: str
    reason: str
    error: dict[str, Any] | None
    runs: int | None
    body: bytes
    history: list[dict[str, Any]] = field(default_factory=list)
    status: str | None = None
    dead_at: float | None = None

    @property
    def resolved(self) -> bool:
        """True when the task has succeeded since it was dead-lettered."""
        return self.status == TaskStatus.SUCCEEDED


@dataclass(slots=True)
class DeadLetterReport:
    """What one pass over a dead-letter queue did.

    Attributes:
        done: dead letters replayed (or removed).
        kept: dead letters a replay left in place, by ``Kept`` reason.
        matched: the task ids of the dead letters the pass selected (done or kept).
    """

    done: int = 0
    kept: Counter[str] = field(default_factory=Counter)
    matched: set[str] = field(default_factory=set)


class Operations:
    """Queue statistics and dead letters (mixin of ``Burrow``)."""

    if TYPE_CHECKING:
        settings: Settings
        names: Names
        registry: TaskRegistry
        handlers: HandlerRegistry

        @property
        def broker(self) -> AmqpBroker: ...

        @property
        def state(self) -> RedisStateStore: ...

        async def connect(self, *, timeout: float | None = None) -> None: ...

        async def declare_queue(self, queue: str) -> None: ...

        def lanes(self, queue: str) -> tuple[str, ...]: ...

        def route(self, queue: str, priority: int | None) -> str: ...

        def queue_type(self, queue: str) -> str: ...

        async def _undo_reopen(
            self, task_id: str, reopened: Reopened, exc: BaseException
        ) -> None: ...

    # -- the app's queues --------------------------------------------------------------

    def app_queues(self) -> list[AppQueue]:
        """Every queue of the app: task queues (sorted), then subscriber queues, then RPC
        request queues; ``default`` alone for an app with no handler at all."""
        tasks: dict[str, list[str]] = {}
        for definition in self.registry:
            tasks.setdefault(definition.queue, []).append(definition.name)
        found = [AppQueue(q, QueueKind.TASK, tuple(sorted(tasks[q]))) for q in sorted(tasks)]
        for sub in self.handlers.subscribers():
            kind = QueueKind.SUBSCRIBER if sub.shared else QueueKind.BROADCAST
            found.append(AppQueue(sub.queue, kind, (sub.name,)))
        found += [AppQueue(d.queue, QueueKind.RPC, (d.name,)) for d in self.handlers.rpc_handlers()]
        return found or [AppQueue("default", QueueKind.TASK, ())]

    def app_queue(self, name: str) -> AppQueue | None:
        """The queue of the app called ``name`` (unprefixed), or None."""
        return next((q for q in self.app_queues() if q.name == name), None)

    def all_queues(self, queues: Sequence[str] | None = None) -> list[str]:
        """``queues``, or the names of every queue of the app (``app_queues``)."""
        return list(queues or [q.name for q in self.app_queues()])

    def dead_letter_queues(self) -> list[str]:
        """The names of the app's queues that have dead letters (all but RPC queues)."""
        return [q.name for q in self.app_queues() if q.has_dead_letters]

    # -- statistics --------------------------------------------------------------------

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

    async def queue_summary(self, queue: AppQueue) -> QueueSummary:
        """``queue`` with its figures read from the broker."""
        work, dead = await self.queue_stats(queue.name)
        if queue.kind is QueueKind.BROADCAST:
            broker_name, kind = f"{self.names.queue(queue.name)}.{{worker id}}", "classic"
        elif queue.kind is QueueKind.RPC:
            broker_name, kind = self.names.rpc_queue(queue.handlers[0]), "classic"
        else:
            broker_name, kind = self.names.queue(queue.name), self.queue_type(queue.name)
        return QueueSummary(
            queue=queue,
            broker_name=broker_name,
            type=kind,
            depth=work.messages if work else None,
            consumers=work.consumers if work else None,
            dead_letters=dead.messages if dead else None,
            dead_letter_queue=self.names.dlq(queue.name) if queue.has_dead_letters else None,
        )

    # -- dead letters ------------------------------------------------------------------

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """The first ``limit`` dead letters of ``queue``, left in place, each with its
        task's current status (``DeadLetter.status``, ``DeadLetter.resolved``)."""
        await self.connect()
        found = [
            _dead_letter(d, queue) for d in await self.broker.peek(self.names.dlq(queue), limit)
        ]
        ids = sorted({d.task_id for d in found if d.task_id})
        statuses = await self.state.statuses(ids) if ids else {}
        return [replace(d, status=statuses.get(d.task_id or "")) for d in found]

    async def replay_dead_letters(
        self, queue: str, *, limit: int = 1000, ids: Collection[str] | None = None
    ) -> int:
        """Move up to ``limit`` dead letters (those of tasks ``ids`` only, when given) back
        to ``queue`` as fresh runs; returns how many. See ``replay_dead_letters_report``."""
        return (await self.replay_dead_letters_report(queue, limit=limit, ids=ids)).done

    async def replay_dead_letters_report(
        self, queue: str, *, limit: int = 1000, ids: Collection[str] | None = None
    ) -> DeadLetterReport:
        """Move up to ``limit`` dead letters of ``queue`` (those of tasks ``ids`` only, when
        given) back to their queue as fresh runs.

        Each task's record is reopened (``failed`` -> ``queued``, run count reset) before
        its message is republished (and put back if the publish fails), and the dead letter
        is acked only after the confirm. Dead letters of tasks that have succeeded since,
        and broadcast ones whose worker process is gone, stay (``DeadLetterReport.kept``).
        """
        await self.connect()
        target = self.app_queue(queue)
        if target is not None and target.kind is QueueKind.BROADCAST:
            live = {str(w.get("id")) for w in await self.state.workers()}
            pass_ = _Replay(self, queue, ids, broadcast=(target.handlers[0], live))
        else:
            await self.declare_queue(queue)
            pass_ = _Replay(self, queue, ids)
        pass_.report.done = await self.broker.take(self.names.dlq(queue), pass_.one, limit=limit)
        return pass_.report

    async def remove_dead_letters(
        self, queue: str, *, ids: Collection[str] | None = None, resolved: bool = False
    ) -> DeadLetterReport:
        """Delete the dead letters of ``queue`` whose task is one of ``ids`` and, with
        ``resolved``, whose task has succeeded since (both: those of ``ids`` that did);
        every other dead letter stays.

        Raises:
            ConfigurationError: neither ``ids`` nor ``resolved`` (``purge_dead_letters``
                deletes every dead letter).
        """
        if ids is None and not resolved:
            raise ConfigurationError("name the dead letters to remove (ids) or resolved=True")
        await self.connect()
        report = DeadLetterReport()
        wanted = set(ids) if ids is not None else None

        async def remove(delivery: Delivery) -> bool:
            task_id = delivery.message_id
            if not _selected(task_id, wanted, report):
                return False
            if not resolved:
                return True
            status = (await self.state.statuses([task_id]))[task_id] if task_id else None
            return status == TaskStatus.SUCCEEDED

        report.done = await self.broker.take(self.names.dlq(queue), remove, limit=sys.maxsize)
        return report

    async def purge_dead_letters(
        self, queue: str, *, ids: Collection[str] | None = None, resolved: bool = False
    ) -> int:
        """Delete every dead letter of ``queue`` (only some with ``ids`` or ``resolved``:
        see ``remove_dead_letters``); returns how many."""
        if ids is not None or resolved:
            return (await self.remove_dead_letters(queue, ids=ids, resolved=resolved)).done
        await self.broker.connect(timeout=self.settings.publish_timeout)
        return await self.broker.purge(self.names.dlq(queue))


class _Replay:
    """One replay pass over a dead-letter queue: ``one`` decides and replays each letter."""

    def __init__(
        self,
        app: Operations,
        queue: str,
        ids: Collection[str] | None,
        *,
        broadcast: tuple[str, set[str]] | None = None,
    ) -> None:
        self.app = app
        self.queue = queue
        self.wanted = set(ids) if ids is not None else None
        #: (subscriber name, ids of the live workers) for a broadcast subscriber's letters.
        self.broadcast = broadcast
        self.report = DeadLetterReport()

    def _target(self, delivery: Delivery) -> str | None:
        """The queue the letter goes back to (None: its worker process is gone)."""
        if self.broadcast is None:
            return self.app.route(self.queue, delivery.priority)
        subscriber, live = self.broadcast
        worker = _worker_of(delivery.message_id, subscriber)
        if worker is None or worker not in live:
            return None
        return self.app.names.queue(f"{self.queue}.{worker}")

    async def one(self, delivery: Delivery) -> bool:
        """Replay ``delivery`` (True: done, ack it) or leave it (False)."""
        task_id = delivery.message_id
        if not _selected(task_id, self.wanted, self.report):
            return False
        target = self._target(delivery)
        if target is None:
            self.report.kept[Kept.WORKER_GONE] += 1
            return False
        state = self.app.state
        reopened = await state.reopen_for_run(task_id, REPLAY_NOTE) if task_id else None
        if reopened == TaskStatus.SUCCEEDED:
            self.report.kept[Kept.RESOLVED] += 1
            return False
        # Any other status that cannot be reopened (queued, running: run again meanwhile)
        # is republished as before; the worker's dedupe by task id runs it at most once.
        try:
            await self._publish(delivery, target)
        except Unroutable as exc:
            if self.broadcast is None:
                raise
            await self._undo(task_id, reopened, exc)  # the worker stopped since its heartbeat
            self.report.kept[Kept.WORKER_GONE] += 1
            return False
        except BaseException as exc:
            await asyncio.shield(self._undo(task_id, reopened, exc))
            raise
        return True

    async def _publish(self, delivery: Delivery, target: str) -> None:
        # A fresh run: the dead run's x-burrow-* headers stay behind, and so does anything
        # the broker would act on again (CC/BCC would plant copies in other queues).
        headers = replayable(delivery.headers)
        headers[HDR_ATTEMPT] = 1
        await self.app.broker.publish(
            target,
            delivery.body,
            message_id=delivery.message_id,
            type_=delivery.type,
            headers=headers,
            content_type=delivery.content_type,
            priority=delivery.priority,
        )

    async def _undo(
        self, task_id: str | None, reopened: Reopened | str | None, exc: BaseException
    ) -> None:
        """Put a record reopened for a publish that failed back to its terminal status."""
        if task_id and isinstance(reopened, Reopened):
            await self.app._undo_reopen(task_id, reopened, exc)


def _selected(task_id: str | None, wanted: set[str] | None, report: DeadLetterReport) -> bool:
    """True when the letter of ``task_id`` is one the pass works on (all, or ``wanted``)."""
    if wanted is not None and task_id not in wanted:
        return False
    if task_id:
        report.matched.add(task_id)
    return True


def _worker_of(task_id: str | None, subscriber: str) -> str | None:
    """The worker id in a broadcast subscriber's task id ``{event}:{subscriber}@{worker}``."""
    marker = f":{subscriber}@"
    if not task_id or marker not in task_id:
        return None
    return task_id.rsplit(marker, 1)[1] or None


def _dead_letter(delivery: Any, queue: str) -> DeadLetter:
    headers = delivery.headers or {}
    error = headers.get("x-burrow-error")
    reason = headers.get(HDR_REASON)
    if reason is None:  # dead-lettered by the broker itself (delivery limit)
        deaths = headers.get("x-death") or [{}]
        reason = str(deaths[0].get("reason", "unknown")) if isinstance(deaths, list) else "unknown"
    dead_at = headers.get(HDR_DEAD_AT)
    return DeadLetter(
        task_id=delivery.message_id,
        name=delivery.type,
        queue=str(headers.get(HDR_ORIGIN, queue)),
        reason=str(reason),
        error=orjson.loads(error) if isinstance(error, str | bytes) else None,
        runs=headers.get("x-burrow-runs"),
        body=delivery.body,
        history=_history(headers.get(HDR_HISTORY)),
        dead_at=dead_at / 1000 if isinstance(dead_at, int | float) else None,
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


__all__ = [
    "AppQueue",
    "DeadLetter",
    "DeadLetterReport",
    "Kept",
    "Operations",
    "QueueKind",
    "QueueSummary",
]
