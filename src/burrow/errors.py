"""The one exception tree of burrow.

Every error burrow raises on purpose derives from :class:`BurrowError`. Errors of the
libraries underneath (aio-pika, aiormq, redis) are translated once, at the adapter
boundary (``broker/amqp/_errors.py``, ``state/redis.py``), and chained with ``from``.

Errors are named by remedy::

    BurrowError
    ├── ConfigurationError          misuse: fix the code or the settings
    │   └── TaskDefinitionError     a handler or decorator option is wrong
    ├── UnknownTask (LookupError)   no task of that name is registered
    ├── PayloadInvalid (ValueError) the payload does not validate against the model
    ├── TaskNotFound (LookupError)  no record for that task id
    ├── OperationTimeout (TimeoutError)
    │   └── PublishTimeout          no broker confirm within publish_timeout
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
    "StateError",
    "StateUnavailable",
    "TaskDefinitionError",
    "TaskNotFound",
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


class StateError(BurrowError):
    """Redis refused or failed an operation."""


class StateUnavailable(StateError):
    """Redis cannot be reached right now; the operation may be retried later."""
