"""``/api/v1/queues``, ``/api/v1/dead-letters`` and ``/api/v1/workers``: operations."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from burrow.api.deps import Admin, ApiState, Read, State, ensure_available
from burrow.api.envelope import ApiError, Envelope, error_responses, ok
from burrow.app import DeadLetter

router = APIRouter(prefix="/api/v1", tags=["operations"])

QueueParam = Annotated[
    str | None, Query(max_length=200, description="One queue (default: every queue of the app).")
]
RESPONSES = error_responses(401, 403, 404, 422, 429, 503)


class QueueInfo(BaseModel):
    name: str
    broker_name: str
    type: str
    depth: int | None = Field(description="Ready messages (null: not declared yet).")
    consumers: int | None
    dead_letters: int | None


class DeadLetterInfo(BaseModel):
    task_id: str | None
    name: str | None
    queue: str
    reason: str
    error: Any = None
    runs: int | None = None
    payload: Any = None
    history: list[dict[str, Any]] = []


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=1000, ge=1, le=100_000)


class CountByQueue(BaseModel):
    total: int
    queues: dict[str, int]


def _queues(state: ApiState, queue: str | None) -> list[str]:
    known = state.burrow.all_queues()
    if queue is None:
        return known
    if queue not in known:
        raise ApiError(404, "unknown_queue", f"no task uses queue {queue!r}", {"known": known})
    return [queue]


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
    )


@router.get("/queues", response_model=Envelope[list[QueueInfo]], responses=RESPONSES)
async def list_queues(state: ApiState = State, _who: str = Read) -> Response:
    """Each queue of the app: depth, consumers and dead letters, read from the broker."""
    app = state.burrow
    await ensure_available(state)
    found: list[QueueInfo] = []
    async with asyncio.timeout(state.timeout):
        for queue in app.all_queues():
            work, dead = await app.queue_stats(queue)
            if work is not None:
                state.metrics.queue_depth.labels(queue).set(work.messages)
            found.append(
                QueueInfo(
                    name=queue,
                    broker_name=app.names.queue(queue),
                    type=app.queue_type(queue),
                    depth=work.messages if work else None,
                    consumers=work.consumers if work else None,
                    dead_letters=dead.messages if dead else None,
                )
            )
    return ok(found)


@router.get("/dead-letters", response_model=Envelope[list[DeadLetterInfo]], responses=RESPONSES)
async def list_dead_letters(
    queue: QueueParam = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    state: ApiState = State,
    _who: str = Read,
) -> Response:
    """Dead letters (left in place), with their reason, error and run history."""
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
    """Send dead letters back to their queue as fresh runs (records reopened)."""
    request = body or ReplayRequest()
    queues = _queues(state, request.queue)
    await ensure_available(state)
    counts = {q: await state.burrow.replay_dead_letters(q, limit=request.limit) for q in queues}
    return ok(CountByQueue(total=sum(counts.values()), queues=counts), message="replayed")


@router.delete("/dead-letters", response_model=Envelope[CountByQueue], responses=RESPONSES)
async def purge_dead_letters(
    queue: QueueParam = None, state: ApiState = State, _who: str = Admin
) -> Response:
    """Delete dead letters for good."""
    queues = _queues(state, queue)
    await ensure_available(state)
    counts = {q: await state.burrow.purge_dead_letters(q) for q in queues}
    return ok(CountByQueue(total=sum(counts.values()), queues=counts), message="purged")


@router.get("/workers", response_model=Envelope[list[dict[str, Any]]], responses=RESPONSES)
async def list_workers(state: ApiState = State, _who: str = Read) -> Response:
    """Live workers, from their heartbeats."""
    async with asyncio.timeout(state.timeout):
        await state.burrow.state.open()
        return ok(await state.burrow.state.workers())
