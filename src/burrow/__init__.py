"""burrow: reliable asynchronous tasks and events on RabbitMQ, with state in Redis.

Layout (dependencies point inward; tests/unit/test_layers.py enforces it):

    core      errors, config, _clock, tasks/, broker/topology     (no I/O)
    adapters  broker/amqp (aio-pika), state (redis)               (-> core)
    runtimes  worker/, scheduler/                                  (-> adapters, core)
    root      app.Burrow: composition root and producer API        (-> all of the above)
    edges     cli/                                                 (-> app)
"""

import burrow._lean_imports  # noqa: F401  # first: imports redis lean (see the module)
from burrow.app import Burrow, DeadLetter, TaskHandle, TaskPage
from burrow.broker.topology import Exchange, Names
from burrow.config import Settings
from burrow.errors import (
    BrokerError,
    BrokerUnavailable,
    BurrowError,
    ConfigurationError,
    OperationTimeout,
    PayloadInvalid,
    PublishRejected,
    PublishTimeout,
    RpcError,
    RpcTimeout,
    StateError,
    StateUnavailable,
    TaskConflict,
    TaskDefinitionError,
    TaskNotFound,
    UnknownExchange,
    UnknownTask,
    Unroutable,
)
from burrow.scheduler.cron import Misfire, Schedule
from burrow.scheduling import ScheduleInfo, ScheduleNotFound, ScheduleReadOnly
from burrow.tasks.context import TaskContext
from burrow.tasks.record import TaskError, TaskEvent, TaskRecord
from burrow.tasks.retry import RetryPolicy
from burrow.tasks.status import TaskStatus
from burrow.worker.outcomes import Reject, Retry

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "Burrow",
    "BurrowError",
    "ConfigurationError",
    "DeadLetter",
    "Exchange",
    "Misfire",
    "Names",
    "OperationTimeout",
    "PayloadInvalid",
    "PublishRejected",
    "PublishTimeout",
    "Reject",
    "Retry",
    "RetryPolicy",
    "RpcError",
    "RpcTimeout",
    "Schedule",
    "ScheduleInfo",
    "ScheduleNotFound",
    "ScheduleReadOnly",
    "Settings",
    "StateError",
    "StateUnavailable",
    "TaskConflict",
    "TaskContext",
    "TaskDefinitionError",
    "TaskError",
    "TaskEvent",
    "TaskHandle",
    "TaskNotFound",
    "TaskPage",
    "TaskRecord",
    "TaskStatus",
    "UnknownExchange",
    "UnknownTask",
    "Unroutable",
]
