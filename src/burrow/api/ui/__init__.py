"""The dashboard at ``/ui``: static files shipped in the package, no build step.

``static/`` holds plain HTML, CSS and JavaScript modules (no framework, nothing vendored):
the pages read the public ``/api/v1`` endpoints and ``/api/v1/events/stream``, like any
client. ``mount`` serves them at ``/ui/`` with headers that keep the page to itself: a
Content-Security-Policy allowing only its own scripts, styles and API, no framing, and
no referrer (task ids in URLs stay on the page).

It also serves the files of the API's documentation pages (Swagger UI and ReDoc, from the
``fastapi-offline`` package) at ``/ui/docs-assets/`` and installs those pages (``/docs``,
``/redoc``: ``burrow.api.docs``), so they work without internet too.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from burrow.api import docs

PATH = "/ui"
#: Where the API docs' Swagger UI and ReDoc files are served (under the dashboard's prefix,
#: which no application route may take).
DOCS_ASSETS = f"{PATH}/docs-assets"

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),  # revalidate: a new version shows after an upgrade
]


def static_dir() -> Path:
    """Where the dashboard's files are (inside the installed package)."""
    return Path(str(resources.files("burrow.api.ui") / "static"))


class _WithHeaders:
    """Adds ``SECURITY_HEADERS`` to every answer of the wrapped app, and names the mount as
    the request's route (metrics label dashboard files ``/ui``, not ``unmatched``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route: Mount | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.route is not None:
            scope["route"] = self.route

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _serve(api: FastAPI, path: str, directory: Path, *, name: str, html: bool) -> None:
    files = _WithHeaders(StaticFiles(directory=directory, html=html))
    files.route = Mount(path, app=files, name=name)
    api.router.routes.append(files.route)


def mount(api: FastAPI) -> None:
    """Serve the dashboard at ``/ui/`` (``/ui`` redirects there), and the API docs pages
    with their files.

    Raises:
        ConfigurationError: the files of the API docs are missing (``docs.assets_dir``).
    """

    async def to_dashboard() -> Response:
        return RedirectResponse(f"{PATH}/", status_code=307)

    api.add_api_route(PATH, to_dashboard, include_in_schema=False)
    # Before the dashboard's mount, which would otherwise take these paths (and 404).
    _serve(api, DOCS_ASSETS, docs.assets_dir(), name="docs-assets", html=False)
    docs.install(api, assets=DOCS_ASSETS)
    _serve(api, PATH, static_dir(), name="ui", html=True)
