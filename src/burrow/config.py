"""Settings: read once from ``BURROW_*`` environment variables, then passed down frozen.

``Settings`` is the flat view that pydantic-settings fills from the environment (the variable
names are an interface: deployments set them). Components take the grouped, frozen views
(``settings.amqp``, ``settings.redis``, ``settings.worker``, ``settings.retry``), so no
component reads the environment itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

QueueType = Literal["quorum", "classic"]
QUEUE_TYPES: tuple[QueueType, ...] = get_args(QueueType)
#: ``BURROW_PREFETCH=0`` means this many times the concurrency: a worker holds more
#: deliveries than it runs, so a freed run slot never waits for the broker to send the next
#: one, and the state writes of finishing attempts (outside the slots) batch up.
PREFETCH_MULTIPLIER = 4
#: Queue names, as ``burrow.tasks.definition.check_name`` accepts them.
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


@dataclass(frozen=True, slots=True)
class AmqpSettings:
    """How to reach RabbitMQ and how to publish."""

    url: str
    heartbeat: int
    publish_timeout: float
    publish_channels: int
    reconnect_base: float
    reconnect_cap: float
    queue_type: QueueType
    delivery_limit: int
    max_message_bytes: int


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """How to reach Redis and how long records live."""

    url: str
    result_ttl: int
    op_timeout: float


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Default retry policy of tasks that do not set their own."""

    max_retries: int
    base: float
    factor: float
    cap: float
    jitter: float


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker process runs tasks."""

    concurrency: int
    prefetch: int
    threads: int
    default_timeout: float
    grace: float
    lease_ttl: float
    reaper_interval: float
    heartbeat_interval: float


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """How ``burrow scheduler`` elects its leader and treats late ticks (docs/scheduling.md)."""

    lock_ttl: float
    misfire_grace: float


class Settings(BaseSettings):
    """Every setting, from ``BURROW_<NAME>`` variables (see docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix="BURROW_", frozen=True, extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = Field(default="burrow", pattern=r"^[A-Za-z0-9_.:-]*$", max_length=100)
    result_ttl: int = Field(default=604_800, gt=0)

    api_keys: str = ""
    webhook_secret: str = ""
    callback_allowlist: str = ""
    # Webhooks (burrow.webhooks; docs/webhooks.md).
    callback_url: str = Field(default="", max_length=2048)
    webhook_max_attempts: int = Field(default=8, ge=1, le=26)
    webhook_retry_base: float = Field(default=5.0, gt=0)
    webhook_retry_cap: float = Field(default=3600.0, gt=0)
    webhook_connect_timeout: float = Field(default=5.0, gt=0)
    webhook_timeout: float = Field(default=15.0, gt=0)
    webhook_concurrency: int = Field(default=16, ge=1, le=1000)

    queue_type: QueueType = "quorum"
    # NoDecode: the variable is ``q:type,q:type``, not the JSON pydantic-settings expects.
    queue_types: Annotated[dict[str, QueueType], NoDecode] = Field(default_factory=dict)
    delivery_limit: int = Field(default=20, ge=1)
    heartbeat: int = Field(default=30, ge=0)
    publish_timeout: float = Field(default=5.0, gt=0)
    publish_channels: int = Field(default=4, ge=1, le=64)
    reconnect_base: float = Field(default=0.5, gt=0)
    reconnect_cap: float = Field(default=5.0, gt=0)
    max_message_bytes: int = Field(default=1_048_576, gt=0)
    redis_timeout: float = Field(default=5.0, gt=0)

    max_retries: int = Field(default=3, ge=0, le=25)
    retry_base: float = Field(default=1.0, gt=0)
    retry_factor: float = Field(default=2.0, ge=1)
    retry_cap: float = Field(default=600.0, gt=0)
    retry_jitter: float = Field(default=0.25, ge=0, lt=1)

    concurrency: int = Field(default=64, ge=1, le=10_000)
    prefetch: int = Field(default=0, ge=0, le=65_535)
    threads: int = Field(default=0, ge=0, le=1_000)
    task_timeout: float = Field(default=300.0, gt=0)
    grace: float = Field(default=30.0, ge=0)
    lease_ttl: float = Field(default=30.0, gt=0)
    reaper_interval: float = Field(default=5.0, gt=0)
    worker_heartbeat: float = Field(default=5.0, gt=0)

    # HTTP API (burrow.api; docs/api.md).
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    max_queue_depth: int = Field(default=0, ge=0)
    api_rate_limit: str = Field(default="", pattern=r"^(\s*\d+\s*/\s*[smh]\s*)?$")
    api_timeout: float = Field(default=2.0, gt=0)
    api_wait_cap: float = Field(default=60.0, gt=0)
    # The HTTP edge (burrow.api.guard, burrow.api.protocol): which Host names the API
    # answers to, and how long and how large a request's head and body may be.
    allowed_hosts: str = ""
    api_header_timeout: float = Field(default=10.0, gt=0)
    api_body_timeout: float = Field(default=30.0, gt=0)
    api_max_header_line: int = Field(default=8192, ge=256)
    api_max_headers: int = Field(default=100, ge=8)
    api_max_header_bytes: int = Field(default=65_536, ge=1024)

    # Scheduler (burrow.scheduler; docs/scheduling.md).
    scheduler_lock_ttl: float = Field(default=10.0, ge=1, le=3600)
    scheduler_misfire_grace: float = Field(default=60.0, ge=0)

    # Logs (burrow.observability; docs/observability.md). Read when a command sets up
    # logging, before the app is loaded: these two come from the environment only.
    log_level: str = Field(default="info", pattern=r"(?i)^(debug|info|warning|error)$")
    log_payloads: bool = False

    @model_validator(mode="after")
    def _default_callback_needs_secret(self) -> Settings:
        if self.callback_url and not self.webhook_secret.strip():
            raise ValueError(
                "BURROW_CALLBACK_URL is set but BURROW_WEBHOOK_SECRET is not: webhooks are "
                "always signed, so set a secret (whsec_ + base64 of at least 24 bytes)"
            )
        return self

    @field_validator("namespace")
    @classmethod
    def _no_edge_dots(cls, value: str) -> str:
        if value.startswith(".") or value.endswith("."):
            raise ValueError("namespace must not start or end with a dot")
        return value

    @field_validator("queue_types", mode="before")
    @classmethod
    def _parse_queue_types(cls, value: object) -> object:
        return parse_queue_types(value) if isinstance(value, str) else value

    @field_validator("queue_types")
    @classmethod
    def _check_queue_names(cls, value: dict[str, QueueType]) -> dict[str, QueueType]:
        for queue in value:
            if not _QUEUE_NAME.match(queue):
                raise ValueError(
                    f"BURROW_QUEUE_TYPES: queue name {queue!r} must be 1-200 characters of "
                    "letters, digits and _ . : -"
                )
        return value

    @property
    def amqp(self) -> AmqpSettings:
        return AmqpSettings(
            url=self.amqp_url,
            heartbeat=self.heartbeat,
            publish_timeout=self.publish_timeout,
            publish_channels=self.publish_channels,
            reconnect_base=self.reconnect_base,
            reconnect_cap=self.reconnect_cap,
            queue_type=self.queue_type,
            delivery_limit=self.delivery_limit,
            max_message_bytes=self.max_message_bytes,
        )

    @property
    def redis(self) -> RedisSettings:
        return RedisSettings(
            url=self.redis_url, result_ttl=self.result_ttl, op_timeout=self.redis_timeout
        )

    @property
    def retry(self) -> RetrySettings:
        return RetrySettings(
            max_retries=self.max_retries,
            base=self.retry_base,
            factor=self.retry_factor,
            cap=self.retry_cap,
            jitter=self.retry_jitter,
        )

    @property
    def scheduler(self) -> SchedulerSettings:
        return SchedulerSettings(
            lock_ttl=self.scheduler_lock_ttl, misfire_grace=self.scheduler_misfire_grace
        )

    @property
    def worker(self) -> WorkerSettings:
        return self.worker_for()

    def worker_for(self, concurrency: int | None = None) -> WorkerSettings:
        """The worker settings, with ``concurrency`` (when given: ``--concurrency``)
        instead of ``BURROW_CONCURRENCY``; the prefetch and thread-pool defaults follow it."""
        concurrency = concurrency or self.concurrency
        return WorkerSettings(
            concurrency=concurrency,
            prefetch=self.prefetch or PREFETCH_MULTIPLIER * concurrency,
            threads=self.threads or min(32, concurrency),
            default_timeout=self.task_timeout,
            grace=self.grace,
            lease_ttl=self.lease_ttl,
            reaper_interval=self.reaper_interval,
            heartbeat_interval=self.worker_heartbeat,
        )


def parse_queue_types(value: str) -> dict[str, QueueType]:
    """Parse ``BURROW_QUEUE_TYPES``: comma-separated ``QUEUE:TYPE`` entries.

    Queue names are unprefixed (``reports``, not ``burrow.reports``) and may contain ``:``
    themselves, so each entry splits at its last colon. Blank entries and spaces around
    names are ignored.

    Raises:
        ValueError: an entry has no ``:``, an empty name, a type other than ``quorum`` or
            ``classic``, or names a queue a second time. The message names the variable.
    """
    found: dict[str, QueueType] = {}
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        queue, sep, kind = (part.strip() for part in entry.rpartition(":"))
        if not sep or not queue:
            raise ValueError(
                f"BURROW_QUEUE_TYPES: malformed entry {entry!r}; expected QUEUE:TYPE, "
                "e.g. BURROW_QUEUE_TYPES=reports:classic,math:quorum"
            )
        if kind not in QUEUE_TYPES:
            raise ValueError(
                f"BURROW_QUEUE_TYPES: unknown queue type {kind!r} for queue {queue!r}; "
                f"expected one of {', '.join(QUEUE_TYPES)}"
            )
        if queue in found:
            raise ValueError(f"BURROW_QUEUE_TYPES: queue {queue!r} is listed twice")
        found[queue] = kind
    return found
