"""Priority lanes: the band of a priority, lane names and specs, and the lane gate."""

from __future__ import annotations

import asyncio

import pytest

from burrow import Burrow, Settings
from burrow.broker.topology import LANES, Names, lane_of, work_queue
from burrow.worker.priority import LaneGate


@pytest.mark.parametrize(
    ("priority", "lane"),
    [
        (9, "high"),
        (7, "high"),
        (6, "normal"),
        (5, "normal"),
        (4, "normal"),
        (3, "low"),
        (0, "low"),
        (None, "normal"),
        (200, "high"),
    ],
)
def test_priority_bands(priority: int | None, lane: str) -> None:
    assert lane_of(priority) == lane


def test_lane_names_keep_the_normal_lane_as_the_work_queue() -> None:
    names = Names("ns")
    assert [names.lane("orders", lane) for lane in LANES] == [
        "ns.orders.high",
        "ns.orders",
        "ns.orders.low",
    ]
    assert Names("").lane("orders", "low") == "orders.low"


def test_every_lane_dead_letters_to_the_one_dead_letter_queue() -> None:
    names = Names("ns")
    specs = [
        work_queue(names, "orders", queue_type="quorum", delivery_limit=20, lane=lane)
        for lane in LANES
    ]
    assert {s.arguments["x-dead-letter-routing-key"] for s in specs} == {"ns.orders.dlq"}
    assert {s.arguments["x-queue-type"] for s in specs} == {"quorum"}
    assert specs[1] == work_queue(names, "orders", queue_type="quorum", delivery_limit=20)


def test_only_queues_that_ask_get_lanes_and_routing_by_band() -> None:
    app = Burrow(settings=Settings(namespace="ns"))

    @app.task(queue="urgent", priorities=True)
    async def ranked(p: dict[str, int]) -> None:
        return None

    @app.task(queue="plain")
    async def flat(p: dict[str, int]) -> None:
        return None

    assert app.lanes("urgent") == LANES
    assert app.lanes("plain") == ("normal",)
    assert app.route("urgent", 9) == "ns.urgent.high"
    assert app.route("urgent", None) == "ns.urgent"
    assert app.route("urgent", 1) == "ns.urgent.low"
    assert app.route("plain", 9) == "ns.plain"


async def test_gate_runs_at_most_its_slots() -> None:
    gate = LaneGate(2, 3)
    await gate.acquire(2)
    await gate.acquire(2)
    assert gate.free == 0
    third = asyncio.create_task(gate.acquire(0))
    await asyncio.sleep(0)
    assert not third.done()
    assert gate.waiting == 1
    gate.release()
    await third
    assert gate.waiting == 0


async def test_gate_hands_a_freed_slot_to_the_highest_lane_first_then_fifo() -> None:
    gate = LaneGate(1, 3)
    await gate.acquire(1)
    order: list[str] = []

    async def wait(lane: int, label: str) -> None:
        await gate.acquire(lane)
        order.append(label)

    arrivals = [(2, "low-1"), (1, "normal-1"), (2, "low-2"), (0, "high-1"), (0, "high-2")]
    waiters = [asyncio.create_task(wait(lane, label)) for lane, label in arrivals]
    await asyncio.sleep(0)
    for _ in waiters:
        gate.release()
        await asyncio.sleep(0)
    await asyncio.gather(*waiters)
    assert order == ["high-1", "high-2", "normal-1", "low-1", "low-2"]


async def test_a_cancelled_waiter_gives_up_its_place_without_losing_a_slot() -> None:
    gate = LaneGate(1, 2)
    await gate.acquire(0)
    waiter = asyncio.create_task(gate.acquire(1))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.release()
    assert gate.free == 1
    async with gate.slot(1):
        assert gate.free == 0
    assert gate.free == 1


async def test_a_waiter_cancelled_after_its_grant_passes_the_slot_on() -> None:
    gate = LaneGate(1, 2)
    await gate.acquire(0)
    granted = asyncio.create_task(gate.acquire(0))
    other = asyncio.create_task(gate.acquire(1))
    await asyncio.sleep(0)
    gate.release()  # granted to the first waiter ...
    granted.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await granted
    await asyncio.wait_for(other, 1)
    assert gate.free == 0


def test_gate_needs_a_slot_and_a_lane() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        LaneGate(0, 3)
