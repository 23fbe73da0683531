"""Per-queue queue types: ``BURROW_QUEUE_TYPES`` parsing, ``@app.task(queue_type=)``, the
precedence between them, the queue arguments that result, and the type-mismatch diagnosis."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from burrow import Burrow, Settings
from burrow.broker.topology import (
    Names,
    dead_letter_queue,
    existing_queue_type,
    type_mismatch_message,
)
from burrow.config import parse_queue_types
from burrow.errors import TaskDefinitionError

QUORUM_ONLY = {"x-delivery-limit", "x-dead-letter-strategy", "x-overflow"}


def refusal(arg: str, received: str, current: str) -> str:
    """A BrokerError message as map_amqp_errors words RabbitMQ 3.10's PRECONDITION_FAILED."""
    return (
        f"declare queue t.reports: PRECONDITION_FAILED - inequivalent arg '{arg}' for queue "
        f"'t.reports' in vhost '/': received {received} but current is {current}"
    )


async def noop(p: dict[str, Any]) -> None:
    """A handler for registrations."""


# -- BURROW_QUEUE_TYPES ---------------------------------------------------------------


def test_parse_queue_types_reads_entries_with_spaces_blanks_and_colons() -> None:
    """Entries are QUEUE:TYPE split at the last colon; spaces and blank entries are ignored."""
    parsed = parse_queue_types(" reports:classic , math : quorum,,shop:eu:classic,")
    assert parsed == {"reports": "classic", "math": "quorum", "shop:eu": "classic"}


def test_parse_queue_types_of_empty_string_is_empty() -> None:
    """An empty variable sets no queue."""
    assert parse_queue_types("") == {}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("reports", "malformed entry 'reports'"),
        (":classic", "malformed entry ':classic'"),
        ("reports:fast", "unknown queue type 'fast' for queue 'reports'"),
        ("reports:", "unknown queue type '' for queue 'reports'"),
        ("reports:Classic", "unknown queue type 'Classic'"),
        ("reports:classic,reports:classic", "queue 'reports' is listed twice"),
    ],
)
def test_parse_queue_types_rejects_bad_entries_naming_the_variable(
    value: str, fragment: str
) -> None:
    """A malformed entry, unknown type or repeated queue is an error naming the variable."""
    with pytest.raises(ValueError, match="BURROW_QUEUE_TYPES") as info:
        parse_queue_types(value)
    assert fragment in str(info.value)


def test_settings_read_queue_types_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """BURROW_QUEUE_TYPES fills settings.queue_types next to the BURROW_QUEUE_TYPE default."""
    monkeypatch.setenv("BURROW_QUEUE_TYPES", "reports:classic,math:quorum")
    monkeypatch.setenv("BURROW_QUEUE_TYPE", "classic")
    settings = Settings()
    assert settings.queue_types == {"reports": "classic", "math": "quorum"}
    assert settings.queue_type == "classic"


def test_settings_default_to_no_per_queue_types(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the variable every queue gets BURROW_QUEUE_TYPE (quorum by default)."""
    monkeypatch.delenv("BURROW_QUEUE_TYPES", raising=False)
    monkeypatch.delenv("BURROW_QUEUE_TYPE", raising=False)
    settings = Settings()
    assert settings.queue_types == {}
    assert settings.queue_type == "quorum"


@pytest.mark.parametrize("value", ["reports:stream", "reports", "bad/name:classic"])
def test_settings_reject_a_bad_variable_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """A bad BURROW_QUEUE_TYPES fails Settings() with a message naming the variable."""
    monkeypatch.setenv("BURROW_QUEUE_TYPES", value)
    with pytest.raises(ValidationError, match="BURROW_QUEUE_TYPES"):
        Settings()


def test_settings_take_a_mapping_in_code_and_validate_it() -> None:
    """Settings(queue_types={...}) is the code form; types and names are still checked."""
    assert Settings(queue_types={"reports": "classic"}).queue_types == {"reports": "classic"}
    with pytest.raises(ValidationError):
        Settings(queue_types={"reports": "stream"})
    with pytest.raises(ValidationError, match="BURROW_QUEUE_TYPES"):
        Settings(queue_types={"": "classic"})


# -- @app.task(queue_type=) and precedence ---------------------------------------------


def test_task_queue_type_sets_the_type_of_its_queue_only() -> None:
    """queue_type= on a task sets its queue; other queues keep the default."""
    app = Burrow(settings=Settings(namespace="t"))
    app.task(name="report", queue="reports", queue_type="classic")(noop)
    app.task(name="add", queue="math")(noop)
    assert app.queue_type("reports") == "classic"
    assert app.queue_type("math") == "quorum"
    assert app.queue_type("never-registered") == "quorum"


def test_tasks_sharing_a_queue_may_omit_or_repeat_its_type() -> None:
    """Other tasks on the queue may leave queue_type out or repeat the same value."""
    app = Burrow(settings=Settings(namespace="t"))
    app.task(name="a", queue="reports")(noop)
    app.task(name="b", queue="reports", queue_type="classic")(noop)
    app.task(name="c", queue="reports")(noop)
    app.task(name="d", queue="reports", queue_type="classic")(noop)
    assert app.queue_type("reports") == "classic"


def test_conflicting_task_queue_types_fail_at_definition() -> None:
    """A second task giving the queue another type raises and is not registered."""
    app = Burrow(settings=Settings(namespace="t"))
    app.task(name="a", queue="reports", queue_type="classic")(noop)
    with pytest.raises(TaskDefinitionError) as info:
        app.task(name="b", queue="reports", queue_type="quorum")(noop)
    message = str(info.value)
    assert "'reports'" in message
    assert "'a'" in message
    assert "'b'" in message
    assert "classic" in message
    assert "quorum" in message
    assert "b" not in app.registry
    assert app.queue_type("reports") == "classic"


def test_unknown_task_queue_type_fails_at_definition() -> None:
    """queue_type= accepts quorum or classic only (checked at runtime too)."""
    app = Burrow(settings=Settings(namespace="t"))
    with pytest.raises(TaskDefinitionError, match="queue_type must be one of quorum, classic"):
        app.task(name="a", queue="reports", queue_type="stream")(noop)  # type: ignore[arg-type]


def test_environment_overrides_code_and_code_overrides_the_default() -> None:
    """BURROW_QUEUE_TYPES beats queue_type=, which beats BURROW_QUEUE_TYPE."""
    settings = Settings(namespace="t", queue_type="classic", queue_types={"reports": "quorum"})
    app = Burrow(settings=settings)
    app.task(name="report", queue="reports", queue_type="classic")(noop)
    app.task(name="add", queue="math", queue_type="quorum")(noop)
    assert app.queue_type("reports") == "quorum"
    assert app.queue_type("math") == "quorum"
    assert app.queue_type("other") == "classic"


def test_namespace_override_keeps_queue_types() -> None:
    """Burrow(namespace=...) copies the settings, per-queue types included."""
    app = Burrow(namespace="shop", settings=Settings(queue_types={"reports": "classic"}))
    assert app.queue_type("reports") == "classic"


# -- resulting queue arguments ---------------------------------------------------------


def test_classic_queue_spec_has_no_quorum_only_arguments() -> None:
    """A classic work queue dead-letters to its DLQ but has no x-delivery-limit & co."""
    app = Burrow(settings=Settings(namespace="t", queue_types={"reports": "classic"}))
    spec = app.work_queue_spec("reports")
    assert spec.name == "t.reports"
    assert spec.arguments == {
        "x-queue-type": "classic",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "t.reports.dlq",
    }


def test_quorum_queue_spec_has_the_delivery_limit() -> None:
    """A quorum work queue in the same app carries x-delivery-limit and friends."""
    settings = Settings(namespace="t", delivery_limit=9, queue_types={"reports": "classic"})
    app = Burrow(settings=settings)
    spec = app.work_queue_spec("math")
    assert spec.arguments["x-queue-type"] == "quorum"
    assert spec.arguments["x-delivery-limit"] == 9
    assert spec.arguments.keys() >= QUORUM_ONLY


@pytest.mark.parametrize("kind", ["quorum", "classic"])
def test_dead_letter_queue_follows_the_work_queue_type(kind: str) -> None:
    """The DLQ of a queue is declared with that queue's type."""
    app = Burrow(settings=Settings(namespace="t", queue_types={"reports": kind}))  # type: ignore[dict-item]
    dlq = dead_letter_queue(app.names, "reports", queue_type=app.queue_type("reports"))
    assert dlq.arguments == {"x-queue-type": kind}
    assert dlq.name == Names("t").dlq("reports")


# -- diagnosing PRECONDITION_FAILED ----------------------------------------------------


@pytest.mark.parametrize(
    ("message", "requested", "existing"),
    [
        # RabbitMQ 3.10's words, recorded against the local broker.
        (refusal("x-queue-type", "'classic'", "'quorum'"), "classic", "quorum"),
        (refusal("x-queue-type", "'quorum'", "'classic'"), "quorum", "classic"),
        (
            refusal("x-queue-type", "the value 'quorum' of type 'longstr'", "none"),
            "quorum",
            "classic",
        ),
        (refusal("x-queue-type", "'quorum'", "'stream'"), "quorum", "stream"),
        # A quorum work queue re-declared classic is refused over a quorum-only argument.
        (
            refusal(
                "x-dead-letter-strategy", "none", "the value 'at-least-once' of type 'longstr'"
            ),
            "classic",
            "quorum",
        ),
        (
            refusal("x-overflow", "the value 'reject-publish' of type 'longstr'", "none"),
            "quorum",
            "classic",
        ),
    ],
)
def test_existing_queue_type_reads_the_broker_refusal(
    message: str, requested: Any, existing: str
) -> None:
    """The existing type is read from x-queue-type or a quorum-only argument."""
    assert existing_queue_type(message, requested=requested) == existing


@pytest.mark.parametrize(
    "message",
    [
        refusal("x-delivery-limit", "the value '20' of type 'byte'", "the value '7' of type 'x'"),
        refusal("x-dead-letter-routing-key", "'a'", "'b'"),
        "declare queue t.reports: NOT_FOUND - no queue",
        "something else entirely",
    ],
)
def test_existing_queue_type_ignores_other_refusals(message: str) -> None:
    """A refusal that is not about the type gives None (the BrokerError stands)."""
    assert existing_queue_type(message, requested="quorum") is None


def test_type_mismatch_message_says_which_queue_what_and_how_to_fix() -> None:
    """The message names the queue, both types, the setting asked, and both remedies."""
    message = type_mismatch_message(
        "t.reports.dlq", "reports", "quorum", "classic", "BURROW_QUEUE_TYPES"
    )
    assert "'t.reports.dlq'" in message
    assert "exists on the broker as a quorum queue" in message
    assert "declares it classic (from BURROW_QUEUE_TYPES)" in message
    assert "set BURROW_QUEUE_TYPES=reports:quorum" in message
    assert "rabbitmqctl delete_queue t.reports.dlq" in message
