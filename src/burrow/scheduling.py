"""Cron schedules of a ``Burrow`` app: ``@app.periodic`` and the run-time schedule API.

``Scheduling`` is a mixin of ``Burrow`` (the composition root). Schedules come from two
places (docs/scheduling.md):

* **code**: ``@app.periodic("*/5 * * * *")`` registers the decorated function as a task and
  schedules it; ``app.periodic(cron, task="name", payload=...)`` schedules an existing task.
  They live in the app's code, so every process that loads the app knows them; they cannot
  be removed at run time (remove the decorator).
* **run time**: ``add_schedule`` (``POST /api/v1/schedules``, ``burrow schedules add``)
  stores the schedule in Redis; ``remove_schedule`` deletes it.

Both are validated when defined (cron expression, time zone, task name, payload against the
task's model), so a schedule that is accepted can fire. ``burrow scheduler APP``
(``burrow.scheduler.Scheduler``) fires them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

import orjson
import structlog
from pydantic import BaseModel

from burrow.errors import BurrowError, ConfigurationError, TaskDefinitionError
from burrow.scheduler.cron import (
    Cron,
    Misfire,
    Schedule,
    Source,
    check_schedule_id,
)
from burrow.state.schedules import ScheduleStore

if TYPE_CHECKING:
    from burrow._clock import Clock
    from burrow.broker.topology import Names
    from burrow.config import Settings
    from burrow.state.redis import RedisStateStore
    from burrow.tasks.definition import TaskDefinition
    from burrow.tasks.registry import TaskRegistry

log = structlog.get_logger("burrow.scheduling")

F = TypeVar("F", bound=Callable[..., Any])


class ScheduleNotFound(BurrowError, LookupError):
    """No schedule with this id (HTTP 404)."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"no schedule {schedule_id!r}")
        self.schedule_id = schedule_id


class ScheduleReadOnly(ConfigurationError):
    """The schedule is defined in code (``@app.periodic``): it cannot be removed at run time
    (HTTP 409); remove it from the code instead."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(
            f"schedule {schedule_id!r} is defined in the app's code (@app.periodic); remove "
            "it there and restart the scheduler"
        )
        self.schedule_id = schedule_id


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule with its state: the last tick fired and the next one due (Unix time)."""

    schedule: Schedule
    last_fired: float | None
    next_fire: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.schedule.to_json(),
            "last_fired": self.last_fired,
            "next_fire": self.next_fire,
        }


class Scheduling:
    """Cron schedules of a ``Burrow`` app (mixin; see the module docstring)."""

    if TYPE_CHECKING:
        settings: Settings
        names: Names
        registry: TaskRegistry
        clock: Clock

        @property
        def state(self) -> RedisStateStore: ...

        def task(self, fn: Any = None, *, name: str | None = None) -> Any: ...

    def _init_scheduling(self) -> None:
        self._code_schedules: dict[str, Schedule] = {}
        self._schedule_store: ScheduleStore | None = None

    @property
    def schedule_store(self) -> ScheduleStore:
        """The Redis side of the schedules (the state store must be open to use it)."""
        if self._schedule_store is None:
            self._schedule_store = ScheduleStore(self.state)
        return self._schedule_store

    # -- code -------------------------------------------------------------------------

    @overload
    def periodic(
        self,
        cron: str,
        *,
        name: str | None = None,
        task: None = None,
        payload: Any = None,
        timezone: str = "UTC",
        misfire: Misfire | str = Misfire.LAST,
    ) -> Callable[[F], F]: ...

    @overload
    def periodic(
        self,
        cron: str,
        *,
        name: str | None = None,
        task: str,
        payload: Any = None,
        timezone: str = "UTC",
        misfire: Misfire | str = Misfire.LAST,
    ) -> Schedule: ...

    def periodic(
        self,
        cron: str,
        *,
        name: str | None = None,
        task: str | None = None,
        payload: Any = None,
        timezone: str = "UTC",
        misfire: Misfire | str = Misfire.LAST,
    ) -> Callable[[F], F] | Schedule:
        """Schedule a task at each tick of ``cron`` (defined in code).

        As a decorator, ``@app.periodic("*/5 * * * *")`` registers the function as a task
        (unless it is one already) and schedules it. With ``task=``, it schedules a task
        registered earlier and returns the ``Schedule``.

        Args:
            cron: 5 fields (``minute hour day month weekday``), an optional 6th for seconds,
                or ``@hourly``/``@daily``/... .
            name: the schedule id (default: the task name); as a decorator also the task
                name (default: the function's name).
            task: an existing task to fire instead of decorating a function.
            payload: the payload of every fired task, validated now.
            timezone: IANA name the ticks are computed in.
            misfire: ``"last"`` (default: after downtime, run the latest missed tick once)
                or ``"skip"`` (run none of them).

        Raises:
            TaskDefinitionError: bad cron, time zone, misfire policy, payload or id; unknown
                ``task``; an id used twice.
        """
        try:
            timing = _timing(cron, timezone, misfire)
        except ConfigurationError as exc:
            raise TaskDefinitionError(f"schedule {name or task or '?'!r}: {exc}") from None
        if task is not None:
            return self._add_code_schedule(name or task, task, timing, payload)

        def register(func: F) -> F:
            definition = self._definition_of(func)
            if definition is None:
                self.task(func, name=name)
                task_name = name or func.__name__
            else:
                task_name = definition.name
            self._add_code_schedule(name or task_name, task_name, timing, payload)
            return func

        return register

    def _definition_of(self, func: Callable[..., Any]) -> TaskDefinition | None:
        """The task whose handler is ``func`` (``@app.periodic`` stacked on ``@app.task``)."""
        return next((d for d in self.registry if d.fn is func), None)

    def _add_code_schedule(
        self, schedule_id: str, task: str, timing: tuple[Cron, Misfire], payload: Any
    ) -> Schedule:
        try:
            schedule = self._build_schedule(schedule_id, task, timing, payload, Source.CODE, None)
        except BurrowError as exc:
            raise TaskDefinitionError(f"schedule {schedule_id!r}: {exc}") from None
        if schedule.id in self._code_schedules:
            raise TaskDefinitionError(
                f"schedule {schedule.id!r} is already defined; give the second one another "
                "name= (two schedules of one task need different names)"
            )
        self._code_schedules[schedule.id] = schedule
        return schedule

    def _build_schedule(
        self,
        schedule_id: str,
        task: str,
        timing: tuple[Cron, Misfire],
        payload: Any,
        source: Source,
        created_at: float | None,
    ) -> Schedule:
        """Validate the id, task and payload of a schedule (``timing`` from ``_timing``).

        Raises:
            ConfigurationError: a bad id. UnknownTask: no such task. PayloadInvalid: the
                payload does not validate against the task's model.
        """
        try:
            sid = check_schedule_id(schedule_id)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        definition = self.registry.get(task)
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        definition.validate_python(payload)
        cron, misfire = timing
        return Schedule(sid, task, cron, payload, misfire, source, created_at)

    def code_schedules(self) -> list[Schedule]:
        """The schedules defined in code, by id."""
        return [self._code_schedules[k] for k in sorted(self._code_schedules)]

    # -- run time ---------------------------------------------------------------------

    async def add_schedule(
        self,
        task: str,
        cron: str,
        payload: Any = None,
        *,
        timezone: str = "UTC",
        misfire: Misfire | str = Misfire.LAST,
        schedule_id: str | None = None,
    ) -> Schedule:
        """Store a schedule in Redis; the running scheduler picks it up within a second.

        Its first tick is the first one after now (nothing is caught up).

        Args:
            schedule_id: choose the id (default: ``s-`` and 12 random hex digits).

        Raises:
            ConfigurationError: bad cron, time zone, misfire policy or id, or the id is
                taken. UnknownTask: no such task in this app. PayloadInvalid.
            StateUnavailable: Redis cannot be reached.
        """
        sid = schedule_id or f"s-{uuid.uuid4().hex[:12]}"
        timing = _timing(cron, timezone, misfire)
        schedule = self._build_schedule(sid, task, timing, payload, Source.API, self.clock.time())
        if sid in self._code_schedules:
            raise ConfigurationError(f"schedule id {sid!r} is taken by a schedule in code")
        await self.state.open()
        if not await self.schedule_store.add(sid, orjson.dumps(schedule.to_json())):
            raise ConfigurationError(f"schedule id {sid!r} is taken")
        return schedule

    async def remove_schedule(self, schedule_id: str) -> None:
        """Delete a schedule created at run time (and its last-fired time).

        Raises:
            ScheduleReadOnly: the schedule is defined in code.
            ScheduleNotFound: no such schedule.
            StateUnavailable: Redis cannot be reached.
        """
        if schedule_id in self._code_schedules:
            raise ScheduleReadOnly(schedule_id)
        await self.state.open()
        if not await self.schedule_store.remove(schedule_id):
            raise ScheduleNotFound(schedule_id)

    async def load_schedules(self) -> list[Schedule]:
        """Every schedule: those in code, then those stored in Redis, each sorted by id.

        A stored schedule that no longer fits the app (its task was removed from the code,
        or it does not parse) is left out with a warning, and kept in Redis.

        Raises:
            StateUnavailable: Redis cannot be reached.
        """
        await self.state.open()
        stored: list[Schedule] = []
        for sid, raw in sorted((await self.schedule_store.all()).items()):
            try:
                schedule = Schedule.from_json(orjson.loads(raw))
            except (ValueError, TypeError) as exc:
                log.warning("stored schedule is invalid; ignored", schedule=sid, error=str(exc))
                continue
            if schedule.id in self._code_schedules:
                continue
            if schedule.task not in self.registry:
                log.warning(
                    "stored schedule names a task this app does not have; ignored",
                    schedule=sid,
                    task=schedule.task,
                )
                continue
            stored.append(schedule)
        return [*self.code_schedules(), *stored]

    async def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule with its last fired and next tick.

        Raises:
            StateUnavailable: Redis cannot be reached.
        """
        schedules = await self.load_schedules()
        fired = await self.schedule_store.fired()
        now = self.clock.time()
        return [ScheduleInfo(s, fired.get(s.id), s.cron.next_after(now)) for s in schedules]


def _timing(cron: str, timezone: str, misfire: Misfire | str) -> tuple[Cron, Misfire]:
    """Validate the cron expression, time zone and misfire policy of a schedule.

    Raises:
        ConfigurationError: one of them is invalid; the message says which and why.
    """
    try:
        policy = Misfire(misfire)
    except ValueError:
        raise ConfigurationError(
            f"unknown misfire policy {misfire!r}; one of {', '.join(Misfire)}"
        ) from None
    try:
        return Cron(cron, timezone), policy
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


__all__ = ["ScheduleInfo", "ScheduleNotFound", "ScheduleReadOnly", "Scheduling"]
