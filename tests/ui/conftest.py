"""Browser tests of the dashboard: a real API (uvicorn in this event loop) and a real worker
on RabbitMQ and Redis, driven by Playwright through Debian's Chromium.

Chromium comes from ``scripts/services.sh --browser`` (``make test`` runs it); without it
these tests fail and say how to install it (never skip). Screenshots go to
``test-artifacts/ui/`` (ignored by git).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright
from pydantic import BaseModel, Field

from burrow import Burrow, Reject, TaskContext
from tests.api.conftest import serve
from tests.conftest import running_worker

CHROMIUM = os.environ.get("BURROW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SECRET = "ui-secret-key"  # noqa: S105 - a test key
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


class Resize(BaseModel):
    image: str
    width: int = Field(ge=1, le=10_000)


class Email(BaseModel):
    to: str
    subject: str


class Nap(BaseModel):
    seconds: float = Field(ge=0, le=30)


def register_tasks(app: Burrow) -> Burrow:
    """The tasks of the dashboard tests (names a user would recognise in screenshots)."""

    @app.task(queue="images")
    async def resize_image(p: Resize) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"image": p.image, "width": p.width, "bytes": 48_213}

    @app.task(queue="email")
    async def send_email(p: Email) -> str:
        return f"sent to {p.to}"

    @app.task(queue="images", timeout=30)
    async def nap(p: Nap) -> str:
        await asyncio.sleep(p.seconds)
        return "rested"

    runs: dict[str, int] = {}

    @app.task(queue="billing", max_retries=0)
    async def charge_card(p: dict[str, Any], ctx: TaskContext) -> str:
        """Fails on its first run, succeeds when replayed (per task id)."""
        runs[ctx.task_id] = runs.get(ctx.task_id, 0) + 1
        if runs[ctx.task_id] == 1:
            raise Reject("card issuer timed out")
        return "charged"

    @app.task(queue="billing", max_retries=0)
    async def sync_inventory(p: dict[str, Any]) -> None:
        raise ValueError(f"warehouse {p.get('warehouse', '?')} answered 502 Bad Gateway")

    return app


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary; a missing one fails the run with the fix."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: run `bash scripts/services.sh --browser` "
            "(apt-get install chromium; `make test` does it) or set BURROW_CHROMIUM"
        )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        await context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@contextlib.asynccontextmanager
async def dashboard(app: Burrow) -> AsyncIterator[str]:
    """The API of ``app`` on a free port with a worker running; yields the base URL."""
    worker_app = register_tasks(Burrow(settings=app.settings))
    try:
        async with serve(app) as url, running_worker(worker_app):
            yield url
    finally:
        await worker_app.close()


@pytest.fixture
def ui_app(make_app: Callable[..., Burrow]) -> Callable[..., Burrow]:
    def factory(**overrides: Any) -> Burrow:
        return register_tasks(make_app(**overrides))

    return factory


@pytest.fixture
async def base(ui_app: Callable[..., Burrow]) -> AsyncIterator[str]:
    """A dashboard without API keys. Request it before ``page``: the page (and its open
    event stream) must close before the server stops, or uvicorn waits for the stream."""
    async with dashboard(ui_app()) as url:
        yield url


@pytest.fixture
async def secured_base(ui_app: Callable[..., Burrow]) -> AsyncIterator[str]:
    """A dashboard with ``BURROW_API_KEYS=ui-secret-key`` (request it before ``page``)."""
    async with dashboard(ui_app(api_keys=SECRET)) as url:
        yield url


async def submit(
    base: str, name: str, payload: Any, *, key: str | None = None, **options: Any
) -> str:
    """Submit through the HTTP API; returns the task id."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as client:
        response = await client.post(f"/api/v1/tasks/{name}", json={"payload": payload, **options})
    assert response.status_code == 202, response.text
    return str(response.json()["data"]["id"])


async def shot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
