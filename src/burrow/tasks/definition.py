"""``TaskDefinition``: a handler plus everything burrow needs to run it.

Built once at registration: the handler's signature is inspected there (payload parameter,
``TaskContext`` parameter, sync or async) so the hot path only calls precomputed callables.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, TypeAdapter, ValidationError

from burrow.errors import PayloadInvalid, TaskDefinitionError
from burrow.tasks.context import TaskContext
from burrow.tasks.ratelimit import RateLimit, parse_rate_limit
from burrow.tasks.retry import RetryPolicy

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$")

Arg = Literal["payload", "context"]


def check_name(kind: str, value: str) -> str:
    """Validate a task or queue name (``[A-Za-z0-9_.:-]``, at most 200 characters).

    Raises:
        TaskDefinitionError: the name has other characters or is empty.
    """
    if not NAME_RE.match(value):
        raise TaskDefinitionError(
            f"{kind} name {value!r} must be 1-200 characters of letters, digits and _ . : -"
        )
    return value


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """A registered task.

    Attributes:
        name: the task name (the AMQP ``type`` property).
        queue: the queue name without namespace prefix.
        fn: the handler.
        is_async: True for ``async def`` handlers (run on the loop); others run in the
            worker's bounded thread pool.
        args: what the handler takes, in order (payload and/or context).
        adapter: validates JSON bodies into the payload parameter's type.
        retry: retry policy.
        timeout: seconds one run may take before it is cancelled and counted as failed.
        rate_limit: at most so many starts per period across all workers, or None.
    """

    name: str
    queue: str
    fn: Callable[..., Any]
    is_async: bool
    args: tuple[Arg, ...]
    adapter: TypeAdapter[Any]
    payload_type: Any
    retry: RetryPolicy
    timeout: float | None
    options: dict[str, Any] = field(default_factory=dict)
    rate_limit: RateLimit | None = None

    @property
    def max_retries(self) -> int:
        return self.retry.max_retries

    @property
    def payload_model(self) -> type[BaseModel] | None:
        """The pydantic model of the payload, when the handler declares one."""
        t = self.payload_type
        return t if isinstance(t, type) and issubclass(t, BaseModel) else None

    def validate_json(self, body: bytes) -> Any:
        """Parse and validate a message body into the handler's payload argument.

        Raises:
            PayloadInvalid: the body is not valid JSON or does not match the payload type.
        """
        try:
            return self.adapter.validate_json(body)
        except ValidationError as exc:
            raise PayloadInvalid(self.name, _errors(exc)) from None

    def validate_python(self, payload: Any) -> Any:
        """Validate a Python value (as given to ``submit``) against the payload type.

        Raises:
            PayloadInvalid: the value does not match the payload type.
        """
        try:
            return self.adapter.validate_python(payload)
        except ValidationError as exc:
            raise PayloadInvalid(self.name, _errors(exc)) from None

    @property
    def wants_context(self) -> bool:
        """True when the handler takes a ``TaskContext`` (else none is built)."""
        return "context" in self.args

    def call_args(self, payload: Any, ctx: TaskContext | None) -> tuple[Any, ...]:
        """The positional arguments for one call of the handler."""
        return tuple(payload if a == "payload" else ctx for a in self.args)


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def inspect_handler(fn: Callable[..., Any]) -> tuple[tuple[Arg, ...], Any]:
    """Work out which parameters of ``fn`` take the payload and the context.

    A parameter annotated ``TaskContext`` gets the context; the (at most one) other
    parameter gets the payload, validated against its annotation (``Any`` when absent).

    Raises:
        TaskDefinitionError: more than one payload parameter, or keyword-only parameters
            without defaults.
    """
    try:
        hints = get_type_hints(fn)
    except Exception as exc:  # a forward reference that cannot be resolved
        raise TaskDefinitionError(
            f"cannot resolve the type hints of {fn.__qualname__}: {exc}"
        ) from exc
    args: list[Arg] = []
    payload_type: Any = Any
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind is param.KEYWORD_ONLY:
            if param.default is param.empty:
                raise TaskDefinitionError(
                    f"{fn.__qualname__}: keyword-only parameter {param.name!r} needs a default"
                )
            continue
        annotation = hints.get(param.name, Any)
        if annotation is TaskContext:
            args.append("context")
        elif "payload" in args:
            raise TaskDefinitionError(
                f"{fn.__qualname__}: a handler takes one payload argument (a model or dict) "
                f"and optionally a TaskContext; {param.name!r} is one too many"
            )
        else:
            args.append("payload")
            payload_type = annotation
    return tuple(args), payload_type


def build_definition(
    fn: Callable[..., Any],
    *,
    name: str,
    queue: str,
    retry: RetryPolicy,
    timeout: float | None,
    options: dict[str, Any] | None = None,
    rate_limit: str | None = None,
) -> TaskDefinition:
    """Inspect ``fn`` and build its definition.

    Raises:
        TaskDefinitionError: a bad name, queue, timeout, rate limit or signature.
    """
    check_name("task", name)
    check_name("queue", queue)
    if timeout is not None and timeout <= 0:
        raise TaskDefinitionError(f"task {name!r}: timeout must be > 0")
    try:
        limit = parse_rate_limit(rate_limit) if rate_limit is not None else None
    except (TypeError, ValueError) as exc:
        raise TaskDefinitionError(f"task {name!r}: {exc}") from None
    args, payload_type = inspect_handler(fn)
    return TaskDefinition(
        name=name,
        queue=queue,
        fn=fn,
        is_async=inspect.iscoroutinefunction(fn),
        args=args,
        adapter=TypeAdapter(payload_type),
        payload_type=payload_type,
        retry=retry,
        timeout=timeout,
        options=dict(options or {}),
        rate_limit=limit,
    )
