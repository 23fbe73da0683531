"""The control exchange and a worker's control queue, as pure data (namespace-aware)."""

from __future__ import annotations

from burrow.broker.topology import CONTROL_CANCEL, Names, control_exchange, control_queue


def test_control_exchange_is_a_transient_fanout_per_namespace() -> None:
    """`{ns}.control` is a fanout exchange that goes away with its last worker."""
    spec = control_exchange(Names("shop"))
    assert (spec.name, spec.type) == ("shop.control", "fanout")
    assert not spec.durable
    assert spec.auto_delete
    assert control_exchange(Names("")).name == "control"
    assert CONTROL_CANCEL == "cancel"


def test_control_queue_is_exclusive_to_one_worker() -> None:
    """Each worker has its own exclusive, auto-delete classic queue."""
    spec = control_queue(Names("shop"), "host-1-abc")
    assert spec.name == "shop.control.host-1-abc"
    assert spec.exclusive
    assert spec.auto_delete
    assert not spec.durable
    assert spec.arguments == {"x-queue-type": "classic"}
