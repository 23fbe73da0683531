"""The dashboard's dead letters in a real browser against a real API and worker: an event
subscriber's dead letters next to tasks', whole copyable ids, whole errors on demand,
replay and delete of one dead letter, resolved ones flagged and purged, and the kind of
each queue on the overview."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect
from pydantic import BaseModel

from burrow import Burrow, Exchange, TaskContext
from tests.api.conftest import serve
from tests.conftest import eventually, running_worker
from tests.ui.conftest import register_tasks, shot, submit

pytestmark = pytest.mark.integration

LIVE = 20_000  # ms: generous for a loaded 2-core box
EVENTS = Exchange("shop.events", "topic")


class Order(BaseModel):
    order_id: int


def register_subscriber(app: Burrow) -> Burrow:
    """``audit_trail`` on ``shop.audit``: fails the first run of each event, then succeeds."""
    runs: dict[str, int] = {}

    @app.subscriber(EVENTS, "order.#", queue="shop.audit", max_retries=0)
    async def audit_trail(event: Order, ctx: TaskContext) -> int:
        runs[ctx.task_id] = runs.get(ctx.task_id, 0) + 1
        if runs[ctx.task_id] == 1:
            raise RuntimeError(f"audit store timed out writing order {event.order_id}")
        return event.order_id

    return app


@pytest.fixture
async def shop_base(ui_app: Callable[..., Burrow]) -> AsyncIterator[tuple[Burrow, str]]:
    """The dashboard of the UI test tasks plus the audit subscriber, with a worker running
    both (request it before ``page``)."""
    app = register_subscriber(ui_app())
    worker_app = register_subscriber(register_tasks(Burrow(settings=app.settings)))
    try:
        async with serve(app) as url, running_worker(worker_app):
            yield app, url
    finally:
        await worker_app.close()


async def api(base: str, method: str, path: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        response = await client.request(method, f"/api/v1{path}", **kwargs)
    assert response.is_success, response.text
    return response.json()["data"]


async def dead_ids(base: str) -> list[str]:
    return [d["task_id"] for d in await api(base, "GET", "/dead-letters")]


async def status_of(base: str, task_id: str) -> str:
    return str((await api(base, "GET", f"/tasks/{task_id}"))["status"])


async def test_subscriber_dead_letters_whole_ids_and_one_by_one_actions(
    shop_base: tuple[Burrow, str], page: Page
) -> None:
    """An event's dead letter is listed with the tasks' ones under its whole id; an error
    opens in full; one dead letter is replayed and another deleted, the rest stay."""
    app, base = shop_base
    event = await app.publish(EVENTS, "order.created", {"order_id": 1042})
    audit_id = f"{event}:audit_trail"
    doomed = await submit(base, "sync_inventory", {"warehouse": "berlin"})
    charge = await submit(base, "charge_card", {"order": 1042, "amount": 4200})
    for task_id in (audit_id, doomed, charge):
        await eventually(partial(_dead, base, task_id), timeout=20, what=f"{task_id} dead")

    await page.goto(f"{base}/ui/#/dead-letters")
    for task_id in (audit_id, doomed, charge):
        row = page.locator(f'tr[data-id="{task_id}"]')
        await expect(row).to_be_visible(timeout=LIVE)
        await expect(row.locator("a.id")).to_have_text(task_id)  # whole, never shortened
    await expect(page.locator("#dl-queue")).to_contain_text("shop.audit · subscriber")
    await expect(page.locator(f'tr[data-id="{audit_id}"]')).to_contain_text("shop.audit")

    doomed_row = page.locator(f'tr[data-id="{doomed}"]')
    whole_error = doomed_row.locator(".error-details pre")
    await expect(whole_error).to_be_hidden()
    await doomed_row.locator(".error-details summary").click()
    await expect(whole_error).to_contain_text("ValueError: warehouse berlin answered 502")
    await shot(page, "dead-letters-one-by-one")

    await page.get_by_role("button", name=f"Replay dead letter {audit_id}").click()
    await expect(page.locator(".toast").last).to_contain_text("Replayed dead letter")
    await eventually(lambda: _is(base, audit_id, "succeeded"), timeout=20, what="event rerun")
    await expect(page.locator(f'tr[data-id="{audit_id}"]')).to_have_count(0, timeout=LIVE)

    await page.get_by_role("button", name=f"Delete dead letter {doomed}").click()
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_contain_text(doomed)
    await dialog.get_by_role("button", name="Delete").click()
    await expect(page.locator(f'tr[data-id="{doomed}"]')).to_have_count(0, timeout=LIVE)
    assert await dead_ids(base) == [charge]
    assert await status_of(base, doomed) == "failed"


async def test_resolved_dead_letters_are_flagged_and_purged_and_queues_show_their_kind(
    shop_base: tuple[Burrow, str], page: Page
) -> None:
    """A dead letter whose task succeeded on retry shows 'resolved', cannot be replayed
    from its row, and 'Purge resolved' deletes it; the overview names each queue's kind."""
    _app, base = shop_base
    charge = await submit(base, "charge_card", {"order": 7, "amount": 100})
    doomed = await submit(base, "sync_inventory", {"warehouse": "hamburg"})
    for task_id in (charge, doomed):
        await eventually(partial(_dead, base, task_id), timeout=20, what=f"{task_id} dead")
    await api(base, "POST", f"/tasks/{charge}/retry")
    await eventually(lambda: _is(base, charge, "succeeded"), timeout=20, what="retried run")

    await page.goto(f"{base}/ui/#/dead-letters?queue=billing")
    row = page.locator(f'tr[data-id="{charge}"]')
    await expect(row.locator(".flag.resolved")).to_be_visible(timeout=LIVE)
    await expect(row.get_by_role("button", name=f"Replay dead letter {charge}")).to_be_disabled()
    await page.get_by_role("button", name="Purge resolved (1)…").click()
    await page.locator("#confirm-dialog").get_by_role("button", name="Purge resolved").click()
    await expect(row).to_have_count(0, timeout=LIVE)
    await expect(page.locator(f'tr[data-id="{doomed}"]')).to_be_visible()
    assert await dead_ids(base) == [doomed]

    await page.goto(f"{base}/ui/#/")
    kinds = {
        "billing": "task",
        "shop.audit": "subscriber",
    }
    for queue, kind in kinds.items():
        cell = page.locator(f'tr[data-queue="{queue}"] [data-field=kind]')
        await expect(cell).to_have_text(kind, timeout=LIVE)


async def _dead(base: str, task_id: str) -> bool:
    return task_id in await dead_ids(base)


async def _is(base: str, task_id: str, status: str) -> bool:
    return await status_of(base, task_id) == status
