"""The overview's throughput chart starts with the work done before the page opened (the
rates the worker keeps in Redis), and the dashboard fits a narrow phone screen."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import eventually
from tests.ui.conftest import shot, submit

pytestmark = pytest.mark.integration

LIVE = 20_000  # ms: generous for a loaded 2-core box
NARROW = 420
_Y = re.compile(r"[ML][\d.]+,([\d.]+)")


async def _all_succeeded(base: str, ids: list[str]) -> bool:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for task_id in ids:
            record = (await client.get(f"/api/v1/tasks/{task_id}")).json()["data"]
            if record["status"] != "succeeded":
                return False
    return True


async def test_chart_shows_work_that_ran_before_the_page_opened(base: str, page: Page) -> None:
    """Tasks that ran while no dashboard was open are on the chart as soon as it opens:
    the succeeded line rises above zero before any live point could carry them."""
    ids = [
        await submit(base, "send_email", {"to": f"u{i}@example.com", "subject": "hi"})
        for i in range(12)
    ]
    await eventually(lambda: _all_succeeded(base, ids), timeout=30, what="emails sent")
    await asyncio.sleep(3)  # past the worker's next per-second write and an even second
    await page.goto(f"{base}/ui/#/")
    line = page.locator(".chart path.succeeded")
    await expect(line).to_have_count(1, timeout=LIVE)
    d = await line.get_attribute("d") or ""
    heights = [float(y) for y in _Y.findall(d)]
    baseline = max(heights)
    assert any(y < baseline for y in heights), f"the succeeded line is flat: {d[:200]}"
    await shot(page, "overview-history")


async def test_top_bar_fits_a_420px_screen(base: str, browser: Browser) -> None:
    """At 420 px wide nothing overflows the page horizontally, and every section link of
    the top bar is visible and can be clicked."""
    context = await browser.new_context(viewport={"width": NARROW, "height": 800})
    page = await context.new_page()
    try:
        await page.goto(f"{base}/ui/#/")
        await expect(page.locator("#live")).to_have_text("Live", timeout=LIVE)
        await expect(page.locator("h1")).to_contain_text("Overview")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= NARROW, f"the page is {width} px wide"
        links = page.locator(".nav a")
        assert await links.count() >= 5
        for i in range(await links.count()):
            link = links.nth(i)
            await expect(link).to_be_in_viewport()
            box = await link.bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= NARROW, await link.text_content()
        await shot(page, "overview-420px")
        await links.filter(has_text="Workers").click()
        await expect(page.locator("h1")).to_contain_text("Workers")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= NARROW, f"the workers page is {width} px wide"
    finally:
        await context.close()
