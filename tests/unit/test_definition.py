"""Task definitions: handler inspection, names, and payload validation."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from burrow.errors import PayloadInvalid, TaskDefinitionError
from burrow.tasks.context import TaskContext
from burrow.tasks.definition import (
    TaskDefinition,
    build_definition,
    check_name,
    inspect_handler,
)
from burrow.tasks.retry import RetryPolicy


class Add(BaseModel):
    a: int
    b: int


def _payload_then_ctx(p: Add, ctx: TaskContext) -> int:
    return p.a + p.b


def _ctx_then_payload(ctx: TaskContext, p: Add) -> int:
    return p.a + p.b


def _dict_payload(p: dict[str, Any]) -> None:
    return None


def _unannotated(p) -> None:  # type: ignore[no-untyped-def]
    return None


def _no_args() -> None:
    return None


def _ctx_only(ctx: TaskContext) -> None:
    return None


def _two_payloads(p: Add, q: Add) -> None:
    return None


def _keyword_only(p: Add, *, flag: bool) -> None:
    return None


def _keyword_only_with_default(p: Add, *args: Any, flag: bool = False, **kwargs: Any) -> None:
    return None


async def _async_handler(p: Add) -> int:
    return p.a


def _define(
    fn: Any, *, name: str = "add", queue: str = "default", timeout: float | None = None
) -> TaskDefinition:
    return build_definition(fn, name=name, queue=queue, retry=RetryPolicy(), timeout=timeout)


def _ctx() -> TaskContext:
    return TaskContext(
        task_id="t", name="add", queue="default", attempt=1, max_retries=3, trace_id="0"
    )


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        (_payload_then_ctx, ("payload", "context")),
        (_ctx_then_payload, ("context", "payload")),
    ],
)
def test_model_payload_and_context_in_either_order(fn: Any, args: tuple[str, ...]) -> None:
    """The TaskContext parameter is found by annotation; the other one takes the model payload."""
    assert inspect_handler(fn) == (args, Add)


def test_call_args_follow_the_parameter_order() -> None:
    """call_args passes payload and context in the order the handler declares them."""
    payload, ctx = Add(a=1, b=2), _ctx()
    assert _define(_payload_then_ctx).call_args(payload, ctx) == (payload, ctx)
    assert _define(_ctx_then_payload).call_args(payload, ctx) == (ctx, payload)


def test_dict_payload() -> None:
    """A dict-annotated parameter takes the payload as a dict."""
    args, payload_type = inspect_handler(_dict_payload)
    assert args == ("payload",)
    assert payload_type == dict[str, Any]
    assert _define(_dict_payload).validate_json(b'{"x": 1}') == {"x": 1}


def test_unannotated_payload_is_any() -> None:
    """A payload parameter without annotation accepts any JSON value."""
    assert inspect_handler(_unannotated) == (("payload",), Any)
    assert _define(_unannotated).validate_json(b"[1, 2]") == [1, 2]


def test_no_arg_handler() -> None:
    """A handler without parameters takes neither payload nor context."""
    assert inspect_handler(_no_args) == ((), Any)
    assert _define(_no_args).call_args(None, _ctx()) == ()


def test_context_only_handler() -> None:
    """A handler may take only the context."""
    assert inspect_handler(_ctx_only) == (("context",), Any)


def test_two_payload_parameters_raise() -> None:
    """A handler with two non-context parameters is refused at registration."""
    with pytest.raises(TaskDefinitionError, match="one payload argument"):
        inspect_handler(_two_payloads)


def test_keyword_only_parameter_without_default_raises() -> None:
    """A keyword-only parameter the worker cannot fill is refused."""
    with pytest.raises(TaskDefinitionError, match="needs a default"):
        inspect_handler(_keyword_only)


def test_defaulted_keyword_only_and_var_args_are_ignored() -> None:
    """*args, **kwargs and defaulted keyword-only parameters are not payload parameters."""
    assert inspect_handler(_keyword_only_with_default) == (("payload",), Add)


def test_async_handlers_are_detected() -> None:
    """async def handlers are marked to run on the event loop; others in threads."""
    assert _define(_async_handler).is_async
    assert not _define(_payload_then_ctx).is_async


def test_payload_model_is_the_pydantic_model_or_none() -> None:
    """payload_model is the handler's BaseModel subclass, or None for dict/Any payloads."""
    assert _define(_payload_then_ctx).payload_model is Add
    assert _define(_dict_payload).payload_model is None


@pytest.mark.parametrize("name", ["a", "add", "shop.orders:v1-x_2", "_private", "9", "x" * 200])
def test_good_names_pass(name: str) -> None:
    """Names of 1-200 letters, digits and _ . : - (not starting with . : -) are valid."""
    assert check_name("task", name) == name


@pytest.mark.parametrize(
    "name", ["", " ", "has space", "a/b", "é", "-x", ".x", ":x", "x" * 201, "a*", "a#b"]
)
def test_bad_names_raise(name: str) -> None:
    """Empty, too long, or names with other characters raise TaskDefinitionError."""
    with pytest.raises(TaskDefinitionError, match="must be 1-200 characters"):
        check_name("task", name)


def test_bad_task_or_queue_name_fails_registration() -> None:
    """build_definition checks both the task name and the queue name."""
    with pytest.raises(TaskDefinitionError, match="task name"):
        _define(_no_args, name="bad name")
    with pytest.raises(TaskDefinitionError, match="queue name"):
        _define(_no_args, queue="bad/queue")


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_non_positive_timeout_fails_registration(timeout: float) -> None:
    """A timeout must be > 0."""
    with pytest.raises(TaskDefinitionError, match="timeout"):
        _define(_no_args, timeout=timeout)


def test_validate_json_returns_the_model() -> None:
    """A valid body becomes an instance of the payload model."""
    assert _define(_payload_then_ctx).validate_json(b'{"a": 1, "b": 2}') == Add(a=1, b=2)


def test_validate_json_raises_payload_invalid_with_field_locations() -> None:
    """An invalid body raises PayloadInvalid naming the task and each bad field's location."""
    with pytest.raises(PayloadInvalid) as info:
        _define(_payload_then_ctx).validate_json(b'{"a": "x"}')
    exc = info.value
    assert exc.task_name == "add"
    assert sorted(tuple(e["loc"]) for e in exc.errors) == [("a",), ("b",)]  # type: ignore[arg-type]
    assert all({"loc", "msg", "type"} <= e.keys() for e in exc.errors)
    assert "a:" in str(exc)
    assert isinstance(exc, ValueError)


def test_validate_json_rejects_a_body_that_is_not_json() -> None:
    """A body that is not JSON raises PayloadInvalid too (reason json_invalid)."""
    with pytest.raises(PayloadInvalid) as info:
        _define(_unannotated).validate_json(b"not json")
    assert info.value.errors[0]["type"] == "json_invalid"


def test_validate_python_raises_payload_invalid() -> None:
    """validate_python (used by submit) refuses an invalid Python value the same way."""
    with pytest.raises(PayloadInvalid):
        _define(_payload_then_ctx).validate_python({"a": 1})
