"""The API docs (``/docs``, ``/redoc``) work without internet: their pages load Swagger UI
and ReDoc from the API's own origin, under a Content-Security-Policy that allows nothing
else, and render in a browser whose every request off localhost is blocked."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Page, Request, Route, expect

from burrow import Burrow
from tests.api.conftest import register_tasks, serve
from tests.ui.conftest import shot

pytestmark = pytest.mark.integration

RENDER = 30_000  # ms: Swagger UI's bundle is 1.5 MB of JavaScript; ample on a busy box
_REFERENCES = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.I)
_CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
}


@pytest.fixture
async def docs_base(make_app: Callable[..., Burrow]) -> AsyncIterator[str]:
    """The API of a test app on a free port (no worker: the docs need none)."""
    async with serve(register_tasks(make_app())) as url:
        yield url


def references(html: str) -> list[str]:
    """The ``src``/``href`` of every ``<script>`` and ``<link>`` of a page."""
    return _REFERENCES.findall(html)


@pytest.mark.parametrize("page_path", ["/docs", "/redoc"])
async def test_docs_pages_reference_only_their_own_origin(docs_base: str, page_path: str) -> None:
    """The page's scripts, styles and icon are served by the API itself, each answering 200
    with its content type; none is on another host."""
    async with httpx.AsyncClient(base_url=docs_base, timeout=30) as client:
        page = await client.get(page_path)
        assert page.status_code == 200
        found = references(page.text)
        assert found, page.text
        for url in found:
            assert "//" not in url, f"{page_path} loads {url} from another origin"
            asset = await client.get(url)
            assert asset.status_code == 200, url
            suffix = url[url.rindex(".") :]
            assert asset.headers["content-type"].startswith(_CONTENT_TYPES[suffix]), url
            assert asset.headers["x-content-type-options"] == "nosniff"
    assert "http://" not in page.text.replace("http://www.w3.org", "")
    assert "https://" not in page.text


async def test_docs_page_policy_allows_its_own_origin_only(docs_base: str) -> None:
    """``/docs`` carries a Content-Security-Policy whose sources are 'self', ``data:``
    images and the hash of its one inline script: no host, no 'unsafe-inline'."""
    async with httpx.AsyncClient(base_url=docs_base, timeout=30) as client:
        response = await client.get("/docs")
        redirect = await client.get("/docs/oauth2-redirect")
    for answer in (response, redirect):
        policy = answer.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
        sources = {s for value in directives.values() for s in value.split()}
        allowed = {"'self'", "'none'", "data:"}
        extra = {s for s in sources - allowed if not s.startswith("'sha256-")}
        assert extra == set(), policy
        scripts = directives["script-src"].split()
        assert len([s for s in scripts if s.startswith("'sha256-")]) == 1, policy
        assert answer.headers["x-content-type-options"] == "nosniff"


async def _offline(page: Page, origin: str) -> list[str]:
    """Block every request of ``page`` that leaves ``origin``; returns the list the blocked
    URLs are added to."""
    blocked: list[str] = []
    own = urlsplit(origin).netloc

    async def only_local(route: Route, request: Request) -> None:
        if urlsplit(request.url).netloc == own or request.url.startswith(("data:", "blob:")):
            await route.continue_()
        else:
            blocked.append(request.url)
            await route.abort("internetdisconnected")

    await page.route("**/*", only_local)
    return blocked


def _policy_violations(page: Page) -> list[str]:
    messages: list[str] = []
    page.on(
        "console",
        lambda m: messages.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return messages


async def test_swagger_ui_renders_the_operations_offline(docs_base: str, page: Page) -> None:
    """With every request off localhost blocked, ``/docs`` renders the API's operations
    (and nothing it needs is refused by its Content-Security-Policy)."""
    blocked = await _offline(page, docs_base)
    violations = _policy_violations(page)
    await page.goto(f"{docs_base}/docs")
    operations = page.locator(".opblock")
    await expect(operations.first).to_be_visible(timeout=RENDER)
    assert await operations.count() > 10
    submit_add = page.locator('.opblock-summary-path[data-path="/api/v1/tasks/add"]')
    await expect(submit_add).to_have_count(1)
    await submit_add.click()
    await expect(page.get_by_role("button", name="Try it out")).to_be_visible(timeout=RENDER)
    await shot(page, "docs-offline")
    assert blocked == []
    assert violations == []


async def test_redoc_renders_offline(docs_base: str, page: Page) -> None:
    """With every request off localhost blocked, ``/redoc`` renders the API's title and its
    operations (no Google Fonts, no CDN), and its policy refuses what would leave."""
    blocked = await _offline(page, docs_base)
    violations = _policy_violations(page)
    await page.goto(f"{docs_base}/redoc")
    await expect(page.locator("h1", has_text="burrow")).to_be_visible(timeout=RENDER)
    await expect(page.get_by_text("/api/v1/tasks/add").first).to_be_attached(timeout=RENDER)
    assert blocked == []
    # ReDoc's side menu shows Redocly's logo from their CDN: the policy refuses it (so the
    # page never reaches out); nothing of the page's own is refused.
    assert [v for v in violations if "https://cdn.redoc.ly/" not in v] == []
