"""The API's documentation pages, served without internet: ``/docs`` (Swagger UI),
``/docs/oauth2-redirect`` (its OAuth2 helper) and ``/redoc`` (ReDoc).

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine without internet
they stay blank. These are the same pages (``fastapi.openapi.docs``), pointed at copies of
the same files that the ``fastapi-offline`` package ships (``assets_dir``); the dashboard's
mount serves them at ``/ui/docs-assets/`` (``burrow.api.ui``), under a prefix no
application route may take.

Each page gets headers like the dashboard's: a Content-Security-Policy allowing scripts,
styles, images and calls from the API's own origin only (the page's one inline script,
which starts Swagger UI, is allowed by its SHA-256 hash, computed from the page as sent),
no framing, ``nosniff``, no referrer.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.responses import HTMLResponse

from burrow.errors import ConfigurationError

DOCS = "/docs"
REDOC = "/redoc"
#: The files of ``assets_dir`` that the pages load.
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"
ASSET_FILES = (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON)

#: Swagger UI: its own scripts and styles, images inline in its CSS (``data:``), the schema
#: and "Try it out" calls to this origin. Forms stay on this origin (the authorize dialog).
SWAGGER_POLICY = (
    "default-src 'none'; script-src 'self' {scripts}; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: ReDoc styles its elements with ``<style>`` tags it writes at run time (styled-components)
#: and runs its search index in a worker made from a ``blob:`` URL: both are made by its own
#: script, from this origin; nothing is loaded from anywhere else.
REDOC_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def assets_dir() -> Path:
    """Where Swagger UI's and ReDoc's files are (inside the installed ``fastapi-offline``).

    Raises:
        ConfigurationError: the package is missing or no longer ships one of the files.
    """
    try:
        folder = Path(str(resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        raise ConfigurationError(
            "the API docs need the fastapi-offline package (a dependency of burrow): "
            "reinstall burrow"
        ) from None
    missing = [name for name in ASSET_FILES if not (folder / name).is_file()]
    if missing:
        raise ConfigurationError(
            f"fastapi-offline at {folder} lacks {', '.join(missing)}: the API docs cannot "
            "be served offline (install a fastapi-offline release that ships them)"
        )
    return folder


def script_hashes(html: bytes) -> str:
    """The CSP sources (``'sha256-…'``) of the page's inline scripts."""
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(html)
    )


def _secured(page: HTMLResponse, policy: str) -> HTMLResponse:
    scripts = script_hashes(bytes(page.body))
    page.headers["Content-Security-Policy"] = policy.format(scripts=scripts)
    page.headers["X-Content-Type-Options"] = "nosniff"
    page.headers["Referrer-Policy"] = "no-referrer"
    page.headers["Cache-Control"] = "no-cache"
    return page


def install(api: FastAPI, *, assets: str) -> None:
    """Serve ``/docs``, ``/docs/oauth2-redirect`` and ``/redoc`` for ``api`` (created with
    ``docs_url=None, redoc_url=None``), loading their files from the URL path ``assets``
    (where the caller serves ``assets_dir()``). Nothing when ``api`` has no OpenAPI schema.
    """
    if api.openapi_url is None:
        return
    openapi_url = api.openapi_url
    redirect_url = api.swagger_ui_oauth2_redirect_url or f"{DOCS}/oauth2-redirect"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{api.title} - Swagger UI",
            oauth2_redirect_url=root + redirect_url,
            swagger_js_url=f"{root}{assets}/{SWAGGER_JS}",
            swagger_css_url=f"{root}{assets}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{assets}/{FAVICON}",
            init_oauth=api.swagger_ui_init_oauth,
            swagger_ui_parameters=api.swagger_ui_parameters,
        )
        return _secured(page, SWAGGER_POLICY)

    async def oauth2_redirect() -> HTMLResponse:
        return _secured(get_swagger_ui_oauth2_redirect_html(), SWAGGER_POLICY)

    async def redoc(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        page = get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{api.title} - ReDoc",
            redoc_js_url=f"{root}{assets}/{REDOC_JS}",
            redoc_favicon_url=f"{root}{assets}/{FAVICON}",
            with_google_fonts=False,
        )
        # The page's own <style> (a body margin) is inline: 'unsafe-inline' covers it.
        return _secured(page, REDOC_POLICY)

    api.add_api_route(DOCS, swagger_ui, include_in_schema=False)
    api.add_api_route(redirect_url, oauth2_redirect, include_in_schema=False)
    api.add_api_route(REDOC, redoc, include_in_schema=False)
