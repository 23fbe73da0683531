"""``/api/v1/queues``, ``/api/v1/dead-letters`` and ``/api/v1/workers``: operations.

Queues are every queue of the app (task, subscriber, broadcast subscriber and RPC queues,
``Operations.app_queues``); dead-letter routes take any of them but RPC request queues,
which have no dead letters. Replay and delete act on a whole queue or on the dead letters of
the task ids given (``ids`` / ``id=``); see ``burrow.operations`` for what a replay keeps.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from burrow.api.body import JsonRoute
from burrow.api.deps import Admin, ApiState, Read, State, ensure_available
from burrow.api.envelope import ApiError, Envelope, error_responses, ok
from burrow.app import DeadLetter
from burrow.operations import DeadLetterReport, QueueKind, QueueSummary

router = APIRouter(prefix="/api/v1", tags=["operations"], route_class=JsonRoute)

QueueParam = Annotated[
    str | None, Query(max_length=200, description="One queue (default: every queue of the app).")
]
RESPONSES = error_responses(401, 403, 404, 422, 429, 503)
#: Most task ids one request names.
MAX_IDS = 1000
TaskIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=400)]],
    Field(min_length=1, max_length=MAX_IDS),
]


class QueueInfo(BaseModel):
    name: str
    kind: QueueKind = Field(
        description="task, subscriber (shared queue=), broadcast (a subscriber without "
        "queue=: one exclusive queue per worker process) or rpc (no dead letters)."
    )
    handlers: list[str] = Field(description="The tasks, subscriber or RPC handler it feeds.")
    broker_name: str = Field(
        description="The queue on the broker (broadcast: the pattern of the per-worker queues)."
    )
    type: str
    depth: int | None = Field(
        description="Ready messages (null: not declared yet, or a broadcast subscriber's "
        "per-worker queues, which only their own worker can read)."
    )
    consumers: int | None
    dead_letters: int | None = Field(description="null: no dead-letter queue (yet).")
    dead_letter_queue: str | None = Field(description="Its dead-letter queue (null: rpc).")


class DeadLetterInfo(BaseModel):
    task_id: str | None
    name: str | None
    queue: str
    reason: str
    error: Any = None
    runs: int | None = None
    payload: Any = None
    history: list[dict[str, Any]] = []
    status: str | None = Field(
        default=None, description="The task's status now (null: no record, e.g. expired)."
    )
    resolved: bool = Field(
        default=False, description="The task has succeeded since (replayed, or retried)."
    )
    dead_at: float | None = Field(default=None, description="When it died (Unix seconds).")


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=1000, ge=1, le=100_000)
    ids: TaskIds | None = Field(
        default=None, description="Replay only the dead letters of these task ids."
    )


class CountByQueue(BaseModel):
    total: int
    queues: dict[str, int]
    kept: dict[str, dict[str, int]] = Field(
        default={},
        description="Replay: dead letters left in place, by queue and why (resolved: the "
        "task has succeeded since; worker_gone: a broadcast subscriber's worker stopped). "
        "Left out when none were.",
    )
    missing: list[str] = Field(
        default=[],
        description="Task ids asked for that have no dead letter there (left out when none).",
    )


def _queues(state: ApiState, queue: str | None) -> list[str]:
    """The queues a dead-letter request works on: ``queue`` or every one with dead letters.

    Raises:
        ApiError: 404 ``unknown_queue`` for a queue that is not the app's or has no dead
            letters (an RPC request queue).
    """
    app = state.burrow
    known = app.dead_letter_queues()
    if queue is None:
        return known
    if queue not in known:
        found = app.app_queue(queue)
        why = (
            f"{queue!r} is an RPC request queue: RPC requests are never dead-lettered"
            if found is not None
            else f"no task or subscriber of the app uses queue {queue!r}"
        )
        raise ApiError(404, "unknown_queue", why, {"known": known})
    return [queue]


def _counts(reports: dict[str, DeadLetterReport], ids: list[str] | None) -> dict[str, Any]:
    """The answer of a replay or removal (``kept`` and ``missing`` only when not empty);
    404 ``dead_letter_not_found`` when ``ids`` were given and none of them has a dead letter
    in the queues searched."""
    matched = set().union(*(r.matched for r in reports.values()))
    missing = [i for i in dict.fromkeys(ids or []) if i not in matched]
    if ids and len(missing) == len(set(ids)):
        raise ApiError(
            404,
            "dead_letter_not_found",
            f"no dead letter of task(s) {', '.join(missing[:10])} in {', '.join(reports)}",
            {"missing": missing},
        )
    counts = CountByQueue(
        total=sum(r.done for r in reports.values()),
        queues={q: r.done for q, r in reports.items()},
        kept={q: dict(r.kept) for q, r in reports.items() if r.kept},
        missing=missing,
    )
    return counts.model_dump(mode="json", exclude_defaults=True)


def _dead_letter(d: DeadLetter) -> DeadLetterInfo:
    try:
        payload: Any = orjson.loads(d.body)
    except orjson.JSONDecodeError:
        payload = d.body.decode("utf-8", errors="replace")
    return DeadLetterInfo(
        task_id=d.task_id,
        name=d.name,
        queue=d.queue,
        reason=d.reason,
        error=d.error,
        runs=d.runs if isinstance(d.runs, int) else None,
        payload=payload,
        history=d.history,
        status=d.status,
        resolved=d.resolved,
        dead_at=d.dead_at,
    )


def _queue_info(q: QueueSummary) -> QueueInfo:
    return QueueInfo(
        name=q.queue.name,
        kind=q.queue.kind,
        handlers=list(q.queue.handlers),
        broker_name=q.broker_name,
        type=q.type,
        depth=q.depth,
        consumers=q.consumers,
        dead_letters=q.dead_letters,
        dead_letter_queue=q.dead_letter_queue,
    )


@router.get("/queues", response_model=Envelope[list[QueueInfo]], responses=RESPONSES)
async def list_queues(state: ApiState = State, _who: str = Read) -> Response:
    """Each queue of the app (tasks, subscribers, RPC) with its kind, depth, consumers and
    dead letters, read from the broker."""
    app = state.burrow
    await ensure_available(state)
    found: list[QueueInfo] = []
    async with asyncio.timeout(state.timeout):
        for queue in app.app_queues():
            summary = await app.queue_summary(queue)
            if summary.depth is not None:
                state.metrics.queue_depth.labels(queue.name).set(summary.depth)
            found.append(_queue_info(summary))
    return ok(found)


@router.get("/dead-letters", response_model=Envelope[list[DeadLetterInfo]], responses=RESPONSES)
async def list_dead_letters(
    queue: QueueParam = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    state: ApiState = State,
    _who: str = Read,
) -> Response:
    """Dead letters (left in place), with their reason, error, run history and their task's
    current status (``resolved``: it has succeeded since)."""
    queues = _queues(state, queue)
    await ensure_available(state)
    found: list[DeadLetterInfo] = []
    for q in queues:
        found += [_dead_letter(d) for d in await state.burrow.dead_letters(q, limit=limit)]
    return ok(found[:limit])


@router.post(
    "/dead-letters/replay",
    response_model=Envelope[CountByQueue],
    responses=error_responses(401, 403, 404, 415, 422, 429, 503),
)
async def replay_dead_letters(
    body: ReplayRequest | None = None, state: ApiState = State, _who: str = Admin
) -> Response:
    """Send dead letters (all, or those of ``ids``) back to their queue as fresh runs,
    records reopened. Those whose task has succeeded since stay, as do a broadcast
    subscriber's whose worker process is gone (``kept``)."""
    request = body or ReplayRequest()
    queues = _queues(state, request.queue)
    await ensure_available(state)
    reports = {
        q: await state.burrow.replay_dead_letters_report(q, limit=request.limit, ids=request.ids)
        for q in queues
    }
    return ok(_counts(reports, request.ids), message="replayed")


@router.delete("/dead-letters", response_model=Envelope[CountByQueue], responses=RESPONSES)
async def purge_dead_letters(
    queue: QueueParam = None,
    ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=400)]] | None,
        Query(
            alias="id",
            max_length=MAX_IDS,
            description="Delete only the dead letters of this task id (repeatable).",
        ),
    ] = None,
    resolved: Annotated[
        bool, Query(description="Delete only those whose task has succeeded since.")
    ] = False,
    state: ApiState = State,
    _who: str = Admin,
) -> Response:
    """Delete dead letters for good: all of them, those of the task ids given, or the
    resolved ones."""
    queues = _queues(state, queue)
    await ensure_available(state)
    if ids is None and not resolved:
        counts = {q: await state.burrow.purge_dead_letters(q) for q in queues}
        return ok(CountByQueue(total=sum(counts.values()), queues=counts), message="purged")
    reports = {
        q: await state.burrow.remove_dead_letters(q, ids=ids, resolved=resolved) for q in queues
    }
    return ok(_counts(reports, ids), message="purged")


@router.get("/workers", response_model=Envelope[list[dict[str, Any]]], responses=RESPONSES)
async def list_workers(state: ApiState = State, _who: str = Read) -> Response:
    """Live workers, from their heartbeats."""
    async with asyncio.timeout(state.timeout):
        await state.burrow.state.open()
        return ok(await state.burrow.state.workers())
