"""``/api/v1/schedules`` over HTTP: create, list, delete, validation and scopes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from burrow import Burrow
from tests.api.conftest import asgi_client, assert_envelope, serve

pytestmark = pytest.mark.integration

URL = "/api/v1/schedules"


@pytest.fixture
async def http(api_app: Callable[..., Burrow]) -> AsyncIterator[httpx.AsyncClient]:
    """A real server for an app with one schedule in code ('hourly-add')."""
    app = api_app()
    app.periodic("0 * * * *", task="add", name="hourly-add", payload={"a": 1, "b": 2})
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


async def test_create_list_and_delete(http: httpx.AsyncClient) -> None:
    """POST answers 201 with the schedule and its id; GET lists it next to the code one;
    DELETE removes it, and a second DELETE is a 404."""
    body = {
        "task": "add",
        "cron": "*/5 * * * *",
        "payload": {"a": 2, "b": 3},
        "timezone": "Europe/Berlin",
    }
    r = await http.post(URL, json=body)
    assert r.status_code == 201, r.text
    created = assert_envelope(r)["data"]
    assert created["id"]
    assert (created["task"], created["cron"], created["timezone"]) == (
        "add",
        "*/5 * * * *",
        "Europe/Berlin",
    )
    assert (created["source"], created["misfire"]) == ("api", "last")
    assert created["next_fire"] > created["created_at"]

    listed = assert_envelope(await http.get(URL))["data"]
    by_id = {s["id"]: s for s in listed}
    assert by_id[created["id"]]["payload"] == {"a": 2, "b": 3}
    assert by_id["hourly-add"]["source"] == "code"
    assert by_id["hourly-add"]["last_fired"] is None

    r = await http.delete(f"{URL}/{created['id']}")
    assert r.status_code == 200, r.text
    assert assert_envelope(r)["data"] == {"id": created["id"]}
    assert created["id"] not in {s["id"] for s in assert_envelope(await http.get(URL))["data"]}
    r = await http.delete(f"{URL}/{created['id']}")
    assert r.status_code == 404
    assert assert_envelope(r)["error"]["type"] == "schedule_not_found"


async def test_a_code_schedule_cannot_be_deleted(http: httpx.AsyncClient) -> None:
    """DELETE of a schedule defined in code is a 409 that says to remove it from the code."""
    r = await http.delete(f"{URL}/hourly-add")
    assert r.status_code == 409
    body = assert_envelope(r)
    assert body["error"]["type"] == "schedule_in_code"
    assert "@app.periodic" in body["message"]


@pytest.mark.parametrize(
    ("change", "error_type", "says"),
    [
        ({"cron": "61 * * * *"}, "invalid_request", "out of range"),
        ({"cron": "* * *"}, "invalid_request", "5, 6 or 7 columns"),
        ({"cron": "0 0 30 2 *"}, "invalid_request", "never fires"),
        ({"timezone": "Mars/Olympus"}, "invalid_request", "unknown time zone"),
        ({"task": "nope"}, "unknown_task", "unknown task 'nope'"),
        ({"payload": {"a": "x"}}, "payload_invalid", "payload"),
        ({"misfire": "burst"}, "validation_error", "misfire"),
        ({"id": "hourly-add"}, "invalid_request", "taken"),
    ],
)
async def test_invalid_schedules_are_422_saying_why(
    http: httpx.AsyncClient, change: dict[str, object], error_type: str, says: str
) -> None:
    """A bad cron, time zone, task, payload, misfire policy or id is a 422 naming the cause,
    and nothing is stored."""
    body = {"task": "add", "cron": "* * * * *", "payload": {"a": 1, "b": 2}, **change}
    r = await http.post(URL, json=body)
    assert r.status_code == 422, r.text
    envelope = assert_envelope(r)
    assert envelope["error"]["type"] == error_type
    assert says in r.text
    assert [s["id"] for s in assert_envelope(await http.get(URL))["data"]] == ["hourly-add"]


async def test_scopes(api_app: Callable[..., Burrow]) -> None:
    """Listing needs the read scope; creating and deleting need write."""
    app = api_app(api_keys="reader:read,writer:write")
    body = {"task": "add", "cron": "* * * * *", "payload": {"a": 1, "b": 2}}
    async with asgi_client(app) as client:
        reader = {"Authorization": "Bearer reader"}
        writer = {"Authorization": "Bearer writer"}
        assert (await client.get(URL)).status_code == 401
        assert (await client.get(URL, headers=reader)).status_code == 200
        assert (await client.post(URL, json=body, headers=reader)).status_code == 403
        r = await client.post(URL, json=body, headers=writer)
        assert r.status_code == 201, r.text
        sid = r.json()["data"]["id"]
        assert (await client.delete(f"{URL}/{sid}", headers=reader)).status_code == 403
        assert (await client.delete(f"{URL}/{sid}", headers=writer)).status_code == 200
