"""The dashboard in a real browser against a real API and worker: live updates through the
event stream, the task page, dead-letter replay and purge, and the API key dialog."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.conftest import eventually
from tests.ui.conftest import SECRET, shot, submit

pytestmark = pytest.mark.integration

LIVE = 20_000  # ms: generous for a loaded 2-core box


async def dead_letters(base: str, headers: dict[str, str] | None = None) -> list[str]:
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers or {}) as client:
        response = await client.get("/api/v1/dead-letters")
    return [d["task_id"] for d in response.json()["data"]]


async def status_of(base: str, task_id: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        response = await client.get(f"/api/v1/tasks/{task_id}")
    return str(response.json()["data"]["status"])


async def test_a_submitted_task_appears_and_turns_green_live(base: str, page: Page) -> None:
    """A task submitted through the API shows up in the open task list and reaches
    'succeeded' without a reload; its page shows payload, result, timeline and trace id."""
    await page.goto(f"{base}/ui/#/tasks")
    await expect(page.locator("#live")).to_have_text("Live", timeout=LIVE)
    await page.evaluate("window.__sameDocument = true")

    task_id = await submit(base, "nap", {"seconds": 1.5})
    row = page.locator(f'tr[data-id="{task_id}"]')
    await expect(row).to_be_visible(timeout=LIVE)
    await expect(row.locator(".badge")).to_have_text("succeeded", timeout=LIVE)
    assert await page.evaluate("window.__sameDocument") is True, "the page was reloaded"

    for name, payload in [
        ("resize_image", {"image": "photos/cat.jpg", "width": 640}),
        ("send_email", {"to": "ada@example.com", "subject": "Your order has shipped"}),
    ]:
        await submit(base, name, payload)
    await page.goto(f"{base}/ui/#/")
    await expect(page.locator('[data-count="succeeded"]')).not_to_have_text("—", timeout=LIVE)
    await expect(page.locator("tr[data-queue=images]")).to_be_visible()
    await expect(page.locator(".chart path.submitted")).to_have_count(1, timeout=LIVE)
    await shot(page, "overview")

    await page.locator(f'a[href="#/tasks/{task_id}"]').first.click()
    await expect(page.locator("h1")).to_contain_text("nap")
    await expect(page.locator("[data-field=result]")).to_contain_text('"rested"')
    await expect(page.locator(".timeline li")).to_have_count(3)  # queued, running, succeeded
    await expect(page.locator("[data-field=trace-id]")).to_have_text(
        await page.evaluate(
            "async (id) => (await (await fetch('/api/v1/tasks/' + id)).json()).data.trace_id",
            task_id,
        )
    )
    await shot(page, "task")


async def test_failed_task_page_shows_the_traceback(base: str, page: Page) -> None:
    task_id = await submit(base, "sync_inventory", {"warehouse": "hamburg"})
    await eventually(lambda: _is(base, task_id, "failed"), timeout=20, what="sync_inventory failed")
    await page.goto(f"{base}/ui/#/tasks/{task_id}")
    error = page.locator("[data-field=error]")
    await expect(error).to_contain_text("ValueError: warehouse hamburg answered 502")
    await expect(error).to_contain_text("Traceback (most recent call last)")
    await expect(page.get_by_role("button", name="Run again")).to_be_visible()
    await shot(page, "task-failed")


async def _is(base: str, task_id: str, status: str) -> bool:
    return await status_of(base, task_id) == status


async def test_replay_and_purge_dead_letters_from_the_ui(base: str, page: Page) -> None:
    """Replay sends the dead letter back and it succeeds; purge asks first, then deletes."""
    charge = await submit(base, "charge_card", {"order": 1042, "amount": 4200})
    await eventually(
        lambda: _has_dead_letter(base, charge), timeout=20, what="charge_card dead-lettered"
    )
    await page.goto(f"{base}/ui/#/dead-letters")
    await expect(page.locator(f'tr[data-id="{charge}"]')).to_be_visible(timeout=LIVE)
    await shot(page, "dead-letters")

    await page.get_by_role("button", name="Replay", exact=True).click()  # not a row's
    await expect(page.locator(".toast")).to_contain_text("Replayed 1 dead letter")
    await eventually(lambda: _is(base, charge, "succeeded"), timeout=20, what="replayed run")
    await expect(page.locator(f'tr[data-id="{charge}"]')).to_have_count(0, timeout=LIVE)

    doomed = await submit(base, "sync_inventory", {"warehouse": "berlin"})
    await eventually(
        lambda: _has_dead_letter(base, doomed), timeout=20, what="sync_inventory dead-lettered"
    )
    await page.goto(f"{base}/ui/#/dead-letters?queue=billing")
    await expect(page.locator(f'tr[data-id="{doomed}"]')).to_be_visible(timeout=LIVE)
    await page.get_by_role("button", name="Purge…").click()
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("cannot be undone")
    await dialog.get_by_role("button", name="Cancel").click()
    assert doomed in await dead_letters(base), "cancelling the dialog must not purge"

    await page.get_by_role("button", name="Purge…").click()
    await dialog.get_by_role("button", name="Purge").click()
    await expect(page.locator(".toast").last).to_contain_text("Purged 1 dead letter")
    await expect(page.locator(f'tr[data-id="{doomed}"]')).to_have_count(0, timeout=LIVE)
    assert await dead_letters(base) == []


async def _has_dead_letter(base: str, task_id: str) -> bool:
    return task_id in await dead_letters(base)


async def test_with_api_keys_the_ui_asks_for_a_key_then_works(
    secured_base: str, page: Page
) -> None:
    """With BURROW_API_KEYS set the dashboard asks for a key, refuses a wrong one, and with
    the right one loads pages and follows the stream; the key never goes into a URL."""
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    base = secured_base
    await page.goto(f"{base}/ui/")
    dialog = page.locator("#key-dialog")
    await expect(dialog).to_be_visible(timeout=LIVE)
    await page.get_by_label("API key", exact=True).fill("wrong-key")
    await dialog.get_by_role("button", name="Use key").click()
    await expect(page.locator("#key-error")).to_have_text("The API does not know this key.")

    await page.get_by_label("API key", exact=True).fill(SECRET)
    await dialog.get_by_role("button", name="Use key").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#live")).to_have_text("Live", timeout=LIVE)
    await expect(page.locator("tr[data-queue=billing]")).to_be_visible(timeout=LIVE)

    email = {"to": "a@b.c", "subject": "hi"}
    task_id = await submit(base, "send_email", email, key=SECRET)
    row = page.locator(f'tr[data-id="{task_id}"]')
    await expect(row.locator(".badge")).to_have_text("succeeded", timeout=LIVE)

    await page.reload()  # the key is kept for the session
    await expect(page.locator("tr[data-queue=billing]")).to_be_visible(timeout=LIVE)
    await expect(dialog).to_be_hidden()
    assert requests
    assert [u for u in requests if SECRET in u] == []


async def test_schedules_are_added_refused_and_deleted_from_the_ui(base: str, page: Page) -> None:
    """The schedules page creates a schedule over the API, shows the API's 422 reason for a
    bad cron expression, and deletes a run-time schedule after a confirmation."""
    await page.goto(f"{base}/ui/#/schedules")
    await page.get_by_label("Task").fill("send_email")
    await page.get_by_label("Cron").fill("*/5 * * * *")
    await page.get_by_label("Payload (JSON)").fill('{"to": "ops@example.com", "subject": "hi"}')
    await page.get_by_role("button", name="Add schedule").click()
    rows = page.locator("tbody tr[data-id]")
    await expect(rows).to_have_count(1, timeout=LIVE)
    await expect(rows.first).to_contain_text("send_email")

    await page.get_by_label("Task").fill("send_email")
    await page.get_by_label("Cron").fill("61 * * * *")
    await page.get_by_role("button", name="Add schedule").click()
    await expect(page.locator("main p.form-error")).to_contain_text("invalid cron expression")

    await rows.first.get_by_role("button").click()
    await page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    await expect(rows).to_have_count(0, timeout=LIVE)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        assert (await client.get("/api/v1/schedules")).json()["data"] == []
