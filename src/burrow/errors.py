"""The one exception tree of burrow.

Every error burrow raises on purpose derives from :class:`BurrowError`. Errors of the
libraries underneath (aio-pika, aiormq, redis) are translated once, at the adapter
boundary (``broker/amqp/_errors.py``, ``state/redis.py``), and chained with ``from``.

Errors are named by remedy::

    BurrowError
    ├── ConfigurationError          misuse: fix the code or the settings
    │   └── TaskDefinitionError     a handler or decorator option is wrong
    ├── UnknownTask (LookupError)   no task of that name is registered
    ├── UnknownExchange (LookupError) publish to an exchange nobody declared
    ├── PayloadInvalid (ValueError) the payload does not validate against the model
    ├── TaskNotFound (LookupError)  no record for that task id
    ├── TaskConflict                the task's status does not allow it (HTTP 409)
    ├── RpcError                    the RPC handler raised: its error type and message
    ├── OperationTimeout (TimeoutError)
    │   ├── PublishTimeout          no broker confirm within publish_timeout
    │   └── RpcTimeout              no RPC reply within the call's timeout (HTTP 504)
    ├── BrokerError                 external: RabbitMQ
    │   ├── BrokerUnavailable       cannot reach it now (retry later; HTTP 503)
    │   └── PublishRejected         the broker nacked or returned the message
    │       └── Unroutable          no queue is bound for it (mandatory publish)
    └── StateError                  external: Redis
        └── StateUnavailable        cannot reach it now (retry later; HTTP 503)

``Retry`` and ``Reject`` are outcomes, not errors: they live in ``burrow.worker.outcomes``
and deliberately do not derive from ``BurrowError``, so ``except BurrowError`` never
swallows them.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "BurrowError",
    "ConfigurationError",
    "OperationTimeout",
    "PayloadInvalid",
    "PublishRejected",
    "PublishTimeout",
    "RpcError",
    "RpcTimeout",
    "StateError",
    "StateUnavailable",
    "TaskConflict",
    "TaskDefinitionError",
    "TaskNotFound",
    "UnknownExchange",
    "UnknownTask",
    "Unroutable",
]


class BurrowError(Exception):
    """Base of every error burrow raises on purpose."""


class ConfigurationError(BurrowError):
    """The settings or the code using burrow are wrong; retrying will not help."""


class TaskDefinitionError(ConfigurationError):
    """A task handler or one of its options is invalid (raised at registration)."""


class UnknownTask(BurrowError, LookupError):
    """No task with this name is registered in the app."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown task {name!r}")
        self.name = name


class UnknownExchange(BurrowError, LookupError):
    """``publish`` named an exchange that neither this app's subscribers know nor the
    broker has (publishing to a missing exchange would close the channel)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no exchange {name!r} is declared")
        self.name = name


class RpcError(BurrowError):
    """The RPC handler raised; the caller gets its error type and message.

    Attributes:
        name: the RPC handler.
        type: the handler's exception class name (e.g. ``ValueError``, ``PayloadInvalid``).
        message: the exception's message.
    """

    def __init__(self, name: str, type: str, message: str) -> None:
        super().__init__(f"rpc {name!r} failed: {type}: {message}")
        self.name = name
        self.type = type
        self.message = message


class PayloadInvalid(BurrowError, ValueError):
    """A payload does not validate against the task's model.

    Attributes:
        task_name: the task whose model rejected the payload.
        errors: pydantic's list of errors, each with ``loc``, ``msg`` and ``type``.
    """

    def __init__(self, task_name: str, errors: list[dict[str, object]]) -> None:
        summary = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"  # type: ignore[attr-defined]
            for e in errors[:5]
        )
        super().__init__(f"invalid payload for task {task_name!r}: {summary}")
        self.task_name = task_name
        self.errors = errors


class TaskNotFound(BurrowError, LookupError):
    """No record exists for this task id (never submitted, or expired after the result TTL)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id!r}")
        self.task_id = task_id


#: Why an operation is refused, by the task's status (``TaskConflict``'s message).
_WHY_NOT = {
    "succeeded": "it has already succeeded",
    "failed": "it already failed",
    "cancelled": "it was cancelled",
    "queued": "it is still queued",
    "running": "it is still running",
    "retrying": "it is waiting for its next attempt",
}


class TaskConflict(BurrowError):
    """The task's status does not allow the operation (cancel a finished task, retry one
    that did not fail).

    Attributes:
        task_id: the task.
        status: its status when the operation was refused (a ``TaskStatus`` value).
        operation: what was refused (``"cancel"``, ``"retry"``).
    """

    def __init__(self, task_id: str, status: str, operation: str) -> None:
        why = _WHY_NOT.get(status, f"its status is {status!r}")
        super().__init__(f"cannot {operation} task {task_id!r}: {why}")
        self.task_id = task_id
        self.status = status
        self.operation = operation


class OperationTimeout(BurrowError, TimeoutError):
    """An operation did not finish in its time limit."""

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class BrokerError(BurrowError):
    """RabbitMQ refused or failed an operation."""

    def __init__(self, message: str, *, queue: str | None = None) -> None:
        super().__init__(message)
        self.queue = queue


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached right now; the operation may be retried later."""


class PublishRejected(BrokerError):
    """The broker did not accept a published message (basic.nack or basic.return)."""


class Unroutable(PublishRejected):
    """A mandatory publish matched no queue, so the broker returned it."""


class PublishTimeout(OperationTimeout):
    """No publisher confirm arrived within ``publish_timeout``.

    The message may or may not be stored: retrying can duplicate it (a worker dedupes by id).
    """


class RpcTimeout(OperationTimeout):
    """No reply to an RPC call within its timeout. The request may still run (replies are
    at-most-once); a reply that comes later is dropped.

    Attributes:
        name: the RPC handler.
        timeout: the call's timeout in seconds.
    """

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(f"rpc {name!r}: no reply within {timeout} s")
        self.name = name
        self.timeout = timeout


class StateError(BurrowError):
    """Redis refused or failed an operation."""


class StateUnavailable(StateError):
    """Redis cannot be reached right now; the operation may be retried later."""
