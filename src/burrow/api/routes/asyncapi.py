"""``GET /asyncapi.json`` and ``GET /asyncapi``: the AsyncAPI document of the app's
messaging side (tasks, events, RPC, dead letters) and its HTML page.

Both are built from the app's registrations at each request (a few milliseconds), so a
handler registered after ``create_app`` shows too. Like ``/openapi.json`` and ``/docs`` they
need no key: the document holds names and schemas, no secret, and not the broker's
address. Left out of the OpenAPI schema, as FastAPI's own documentation routes are.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import HTMLResponse, JSONResponse, Response

from burrow.api.asyncapi import build_document
from burrow.api.asyncapi_page import CSP, render_page
from burrow.api.deps import ApiState, State

JSON_PATH = "/asyncapi.json"
PAGE_PATH = "/asyncapi"

router = APIRouter(tags=["asyncapi"])

#: Headers of the page: only its own inline style, no framing, no referrer.
PAGE_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@router.get(JSON_PATH, include_in_schema=False)
async def asyncapi_json(state: ApiState = State) -> Response:
    """The AsyncAPI 3.0.0 document (JSON)."""
    return JSONResponse(build_document(state.burrow), headers={"cache-control": "no-cache"})


@router.get(PAGE_PATH, include_in_schema=False)
async def asyncapi_page(state: ApiState = State) -> Response:
    """The document as a readable HTML page."""
    return HTMLResponse(render_page(build_document(state.burrow)), headers=PAGE_HEADERS)
