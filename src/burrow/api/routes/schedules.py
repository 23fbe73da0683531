"""``/api/v1/schedules``: list, create and delete cron schedules (docs/scheduling.md).

Schedules defined in code (``@app.periodic``) are listed with ``"source": "code"``; they
cannot be deleted here (409: remove them from the code). Schedules created here are stored
in Redis and fired by ``burrow scheduler`` within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from burrow.api.body import JsonRoute
from burrow.api.deps import ApiState, Read, State, Write
from burrow.api.envelope import ApiError, Envelope, error_responses, ok
from burrow.app import Burrow
from burrow.errors import StateUnavailable, UnknownTask
from burrow.scheduler.cron import SCHEDULE_ID_RE
from burrow.scheduling import ScheduleInfo, ScheduleNotFound, ScheduleReadOnly

router = APIRouter(prefix="/api/v1", tags=["schedules"], route_class=JsonRoute)

ScheduleId = Annotated[str, Path(max_length=100, description="The schedule's id.")]


class ScheduleRequest(BaseModel):
    """A schedule to create: fire ``task`` with ``payload`` at each tick of ``cron``."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=200, description="A task of the app.")
    cron: str = Field(
        min_length=1,
        max_length=200,
        description="5 fields 'minute hour day month weekday' (e.g. '*/5 * * * *'), an "
        "optional 6th field for seconds, or @hourly/@daily/@weekly/@monthly/@yearly.",
    )
    payload: Any = Field(default=None, description="Validated against the task's model.")
    timezone: str = Field(default="UTC", max_length=100, description="IANA time zone name.")
    misfire: Literal["last", "skip"] = Field(
        default="last",
        description="After downtime: 'last' runs the latest missed tick once, 'skip' none.",
    )
    id: str | None = Field(
        default=None,
        pattern=SCHEDULE_ID_RE.pattern,
        description="Choose the id (default: a random one).",
    )


class ScheduleOut(BaseModel):
    """A schedule and its state (times are Unix seconds)."""

    id: str
    task: str
    cron: str
    timezone: str
    payload: Any = None
    misfire: Literal["last", "skip"]
    source: Literal["code", "api"] = Field(
        description="'code': @app.periodic (not deletable here); 'api': created at run time."
    )
    created_at: float | None = None
    last_fired: float | None = None
    next_fire: float | None = None


class Removed(BaseModel):
    id: str


def _out(info: ScheduleInfo) -> ScheduleOut:
    return ScheduleOut.model_validate(info.to_json())


@contextlib.asynccontextmanager
async def _redis(state: ApiState) -> AsyncIterator[Burrow]:
    """Open Redis and run the block within ``BURROW_API_TIMEOUT``; too slow is a 503."""
    try:
        async with asyncio.timeout(state.timeout):
            await state.burrow.state.open()
            yield state.burrow
    except TimeoutError:
        raise StateUnavailable(f"Redis did not answer within {state.timeout} s") from None


@router.get(
    "/schedules",
    response_model=Envelope[list[ScheduleOut]],
    responses=error_responses(401, 403, 429, 503),
)
async def list_schedules(state: ApiState = State, _who: str = Read) -> Response:
    """Every schedule (from code and created here), with its last and next fire."""
    async with _redis(state) as app:
        infos = await app.list_schedules()
    return ok([_out(i) for i in infos])


@router.post(
    "/schedules",
    status_code=201,
    response_model=Envelope[ScheduleOut],
    responses=error_responses(401, 403, 413, 415, 422, 429, 503),
)
async def create_schedule(
    body: ScheduleRequest, state: ApiState = State, _who: str = Write
) -> Response:
    """Create a schedule. 422 for a bad cron expression or time zone (the message says
    why), an unknown task, an invalid payload or an id that is taken."""
    app = state.burrow
    try:
        async with _redis(state):
            schedule = await app.add_schedule(
                body.task,
                body.cron,
                body.payload,
                timezone=body.timezone,
                misfire=body.misfire,
                schedule_id=body.id,
            )
    except UnknownTask as exc:
        raise ApiError(
            422,
            "unknown_task",
            f"{exc}; the app's tasks: {', '.join(sorted(d.name for d in app.registry))}",
            {"task": exc.name},
        ) from None
    info = ScheduleInfo(schedule, None, schedule.cron.next_after(app.clock.time()))
    return ok(_out(info), status=201, message="created")


@router.delete(
    "/schedules/{schedule_id}",
    response_model=Envelope[Removed],
    responses=error_responses(401, 403, 404, 409, 422, 429, 503),
)
async def delete_schedule(
    schedule_id: ScheduleId, state: ApiState = State, _who: str = Write
) -> Response:
    """Delete a schedule created at run time. 404 for an unknown id; 409 for a schedule
    defined in code (remove it from the code)."""
    try:
        async with _redis(state) as app:
            await app.remove_schedule(schedule_id)
    except ScheduleNotFound as exc:
        raise ApiError(404, "schedule_not_found", str(exc), {"id": schedule_id}) from None
    except ScheduleReadOnly as exc:
        raise ApiError(409, "schedule_in_code", str(exc), {"id": schedule_id}) from None
    return ok(Removed(id=schedule_id), message="deleted")
