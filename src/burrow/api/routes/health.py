"""``/healthz``, ``/readyz`` and ``/metrics`` (outside ``/api/v1``)."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.responses import Response

from burrow.api.deps import ApiState, Read, State
from burrow.api.envelope import Envelope, error, error_responses, ok
from burrow.errors import BurrowError

router = APIRouter(tags=["health"])

#: Seconds each readiness probe may take.
PROBE_TIMEOUT = 1.0


class Readiness(BaseModel):
    broker: Literal["ok", "unavailable"]
    redis: Literal["ok", "unavailable"]


@router.get("/healthz", response_model=Envelope[dict[str, str]])
async def healthz() -> Response:
    """The process is alive (no I/O, no key needed)."""
    return ok({"status": "ok"})


async def _broker_ok(state: ApiState) -> bool:
    broker = state.burrow.broker
    if broker.connected:
        return True
    try:
        await broker.connect(timeout=PROBE_TIMEOUT)
    except BurrowError:
        return False
    return broker.connected


async def _redis_ok(state: ApiState) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await state.burrow.state.open()
            return await state.burrow.state.ping()
    except (BurrowError, TimeoutError):
        return False


@router.get(
    "/readyz",
    response_model=Envelope[Readiness],
    responses=error_responses(503),
)
async def readyz(state: ApiState = State) -> Response:
    """The broker is connected and Redis answers a PING within a second; else 503 naming
    which one failed (no key needed)."""
    broker, redis = await asyncio.gather(_broker_ok(state), _redis_ok(state))
    result = Readiness(
        broker="ok" if broker else "unavailable", redis="ok" if redis else "unavailable"
    )
    if broker and redis:
        return ok(result, message="ready")
    down = " and ".join(n for n, up in (("broker", broker), ("redis", redis)) if not up)
    return error(
        503,
        f"not ready: {down} unavailable",
        "not_ready",
        result.model_dump(),
        headers={"Retry-After": "2"},
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        **error_responses(401, 403),
    },
)
async def metrics(state: ApiState = State, _who: str = Read) -> Response:
    """Prometheus metrics of this API process (needs the read scope when keys are set)."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
