"""``/api/v1/tasks`` lifecycle: list with filters and cursor paging, cancel and retry."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.responses import Response

from burrow.api.deps import ApiState, Read, State, Write, ensure_available
from burrow.api.envelope import Envelope, error_responses, ok
from burrow.api.routes.tasks import PREFIX, READ_RESPONSES, TaskId
from burrow.tasks.record import TaskRecord
from burrow.tasks.status import TaskStatus

router = APIRouter(prefix=PREFIX, tags=["tasks"])


class TaskList(BaseModel):
    items: list[TaskRecord]
    next_cursor: str | None


@router.get(
    "/tasks",
    response_model=Envelope[TaskList],
    responses=READ_RESPONSES,
    summary="List tasks, newest first, with filters and cursor paging",
)
async def list_tasks(
    status: TaskStatus | None = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    queue: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    state: ApiState = State,
    _who: str = Read,
) -> Response:
    async with asyncio.timeout(state.timeout):
        await state.burrow.state.open()
    page = await state.burrow.list_tasks(
        status=status, name=name, queue=queue, limit=limit, cursor=cursor
    )
    return ok(TaskList(items=page.items, next_cursor=page.next_cursor))


@router.post(
    "/tasks/{task_id}/cancel",
    response_model=Envelope[TaskRecord],
    responses=error_responses(401, 403, 404, 409, 422, 429, 503),
    summary="Cancel a queued or running task (409 when it already finished)",
)
async def cancel_task(task_id: TaskId, state: ApiState = State, _who: str = Write) -> Response:
    await ensure_available(state)
    return ok(await state.burrow.cancel(task_id), message="cancelled")


@router.post(
    "/tasks/{task_id}/retry",
    status_code=202,
    response_model=Envelope[TaskRecord],
    responses=error_responses(401, 403, 404, 409, 422, 429, 503),
    summary="Run a failed (or cancelled) task again",
)
async def retry_task(task_id: TaskId, state: ApiState = State, _who: str = Write) -> Response:
    await ensure_available(state)
    handle = await state.burrow.retry(task_id)
    record = await state.burrow.get(handle.id)
    return ok(
        record,
        status=202,
        message="retrying",
        # Percent-encoded: a task id may hold any character (a foreign producer's
        # message_id, a Python task_id) and a raw CR or LF in a header value breaks the
        # response.
        headers={"Location": f"{PREFIX}/tasks/{quote(handle.id, safe='')}"},
    )
