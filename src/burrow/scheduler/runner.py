"""``Scheduler``: the process behind ``burrow scheduler APP`` that fires cron schedules.

Any number of schedulers may run; one fires at a time and each tick is enqueued at most
once, by two independent guards:

1. **Leader lock with fencing.** The schedulers compete for ``{ns}:scheduler:lock`` (a
   Redis key with a TTL, ``BURROW_SCHEDULER_LOCK_TTL``). The holder renews it every third
   of the TTL in a loop of its own, so a slow publish never lets it lapse; a standby tries
   to take it at the same pace, so it takes over within about one TTL of a leader dying.
   Every cursor write carries the leader's token and is refused in Lua when the token no
   longer holds the lock, and a leader stops firing when its lease (as measured from
   before its last renewal) ran out.
2. **One task id per (schedule, tick).** A tick is submitted with the idempotency key
   ``schedule:{id}:{tick}`` and a task id derived from the same pair, so even two schedulers
   that both believe they lead (a paused leader waking up) cannot enqueue a tick twice: the
   second submit returns the first task.

A tick is submitted first and its cursor moved after, so a crash in between repeats the
submit, which the key turns into a no-op. Fired tasks are ordinary tasks (``Burrow.submit``):
records, retries and dead letters as usual. Misfires follow ``cron.plan``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from burrow import tracing
from burrow.errors import BurrowError, ConfigurationError, PayloadInvalid, UnknownTask
from burrow.scheduler.cron import Schedule, plan
from burrow.state.schedules import ScheduleStore

if TYPE_CHECKING:
    from burrow.app import Burrow

log = structlog.get_logger("burrow.scheduler")

#: Longest sleep of the firing loop: how soon a schedule added at run time is seen.
POLL_INTERVAL = 1.0
#: Pause after Redis or the broker failed, before the next attempt.
ERROR_BACKOFF = 1.0


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    """What a scheduler did so far (``Scheduler.statistics()``)."""

    leader: bool
    token: str | None
    fired: int  # ticks this scheduler submitted
    duplicates: int  # ticks whose task existed already (another scheduler fired them)
    skipped: int  # ticks passed over by the misfire policy
    failures: int  # submits that failed (retried on the next loop)
    elections: int  # times this scheduler took the lock
    rounds: int  # passes over the schedules as the leader


class Scheduler:
    """Fires the schedules of ``app`` while it holds the leader lock.

    Args:
        app: the app (its code schedules, and its Redis for the stored ones).
        lock_ttl: seconds the leader lock lives without renewal (default:
            ``BURROW_SCHEDULER_LOCK_TTL``).
        misfire_grace: how late a tick may fire under the ``skip`` policy (default:
            ``BURROW_SCHEDULER_MISFIRE_GRACE``).
    """

    def __init__(
        self,
        app: Burrow,
        *,
        lock_ttl: float | None = None,
        misfire_grace: float | None = None,
    ) -> None:
        settings = app.settings.scheduler
        self.app = app
        self.lock_ttl = lock_ttl if lock_ttl is not None else settings.lock_ttl
        if self.lock_ttl <= 0:
            raise ConfigurationError("the scheduler lock TTL must be > 0 seconds")
        self.grace = misfire_grace if misfire_grace is not None else settings.misfire_grace
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._token: str | None = None
        self._lease_until = 0.0  # monotonic time the lock surely lasts until
        self._fired = self._duplicates = self._skipped = self._failures = 0
        self._elections = self._rounds = 0
        #: Set once this scheduler has tried for the lock (either way): tests wait on it.
        self.ready = asyncio.Event()

    @property
    def store(self) -> ScheduleStore:
        return self.app.schedule_store

    def is_leader(self) -> bool:
        """True while this scheduler holds the lock and its lease has not run out."""
        return self._token is not None and self.app.clock.monotonic() < self._lease_until

    def statistics(self) -> SchedulerStats:
        return SchedulerStats(
            leader=self.is_leader(),
            token=self._token,
            fired=self._fired,
            duplicates=self._duplicates,
            skipped=self._skipped,
            failures=self._failures,
            elections=self._elections,
            rounds=self._rounds,
        )

    # -- running ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Elect and fire until ``stop`` is set, then give the lock up (so a standby takes
        over at once instead of after the TTL).

        Raises:
            StateUnavailable: Redis cannot be reached at start.
        """
        await self.app.state.open()
        log.info("scheduler started", owner=self.owner, lock_ttl=self.lock_ttl)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._lease_loop(stop), name="scheduler-lease")
                tg.create_task(self._fire_loop(stop), name="scheduler-fire")
        finally:
            await asyncio.shield(self._resign())

    async def _lease_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._elect()
            self.ready.set()
            await _sleep(stop, self.lock_ttl / 3)

    async def _elect(self) -> None:
        """Renew the lock, or take it when free."""
        started = self.app.clock.monotonic()
        try:
            token = await self.store.acquire(self._token, self.lock_ttl, owner=self.owner)
        except BurrowError as exc:
            log.warning("scheduler lock: Redis unavailable", error=str(exc))
            return  # keep the token: the lease runs out by itself if this lasts
        if token is None:
            if self._token is not None:
                log.warning("scheduler lost the leader lock", token=self._token)
            self._token = None
            return
        if token != self._token:
            self._elections += 1
            log.info("scheduler is the leader", token=token)
        self._token = token
        self._lease_until = started + self.lock_ttl

    async def _resign(self) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        with contextlib.suppress(BurrowError):
            await self.store.release(token)
            log.info("scheduler gave up the leader lock", token=token)

    async def _fire_loop(self, stop: asyncio.Event) -> None:
        await self.ready.wait()
        while not stop.is_set():
            delay = POLL_INTERVAL
            if self.is_leader():
                try:
                    delay = await self.fire_due()
                except BurrowError as exc:
                    log.warning("scheduler: Redis or broker unavailable", error=str(exc))
                    delay = ERROR_BACKOFF
            await _sleep(stop, delay)

    # -- firing -----------------------------------------------------------------------

    async def fire_due(self) -> float:
        """Fire every schedule that is due (at most one tick each); returns the seconds
        until the next tick, capped at ``POLL_INTERVAL``.

        Raises:
            StateUnavailable: Redis cannot be reached.
        """
        schedules = await self.app.load_schedules()
        cursors = await self.store.cursors()
        clock = self.app.clock
        wake = clock.time() + POLL_INTERVAL
        for schedule in schedules:
            token = self._token
            if token is None or not self.is_leader():
                break
            following = await self._fire_one(schedule, cursors.get(schedule.id), token)
            wake = min(wake, following)
        self._rounds += 1
        return max(0.01, wake - clock.time())

    async def _fire_one(self, schedule: Schedule, cursor: float | None, token: str) -> float:
        """Handle one schedule; returns the time of its next tick."""
        now = self.app.clock.time()
        if cursor is None:
            # First sight: start from its creation (run-time schedules) or from now (code),
            # so nothing from before the schedule existed is caught up.
            cursor = schedule.created_at if schedule.created_at is not None else now
            await self._mark(token, schedule.id, cursor, fired=False)
        step = plan(schedule.cron, cursor, now, schedule.misfire, self.grace)
        if step.skipped:
            self._skipped += step.skipped
            log.info(
                "missed ticks skipped (misfire policy)",
                schedule=schedule.id,
                skipped=step.skipped,
                policy=schedule.misfire.value,
                catch_up=step.fire is not None,
            )
        if step.fire is not None:
            if not await self.fire(schedule, step.fire):
                return now + ERROR_BACKOFF  # not moved: try the same tick again
            await self._mark(token, schedule.id, step.fire, fired=True)
        elif step.cursor != cursor:
            await self._mark(token, schedule.id, step.cursor, fired=False)
        return schedule.cron.next_after(max(step.cursor, now))

    async def _mark(self, token: str, schedule_id: str, tick: float, *, fired: bool) -> None:
        if not await self.store.set_cursor(token, schedule_id, tick, fired=fired):
            log.warning("scheduler lost the leader lock while firing", token=token)
            if self._token == token:
                self._token = None

    async def fire(self, schedule: Schedule, tick: float) -> bool:
        """Submit ``schedule``'s task for ``tick``, idempotently (the same schedule and tick
        always give the same task). Returns False when the submit failed for a reason
        that may pass (broker or Redis down); a tick that can never be submitted (task
        gone, payload invalid) is logged and counted as handled.
        """
        key = f"schedule:{schedule.id}:{tick:.0f}"
        task_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"burrow:{self.app.names.namespace}:{key}"))
        try:
            # The fire's span (if tracing) is the parent of the task's publish.
            with tracing.schedule_span(schedule_id=schedule.id, task=schedule.task, tick=tick):
                handle = await self.app.submit(
                    schedule.task, schedule.payload, idempotency_key=key, task_id=task_id
                )
        except (UnknownTask, PayloadInvalid, ConfigurationError) as exc:
            self._failures += 1
            log.error(  # noqa: TRY400 - the error says it all; no traceback wanted
                "scheduled task cannot be submitted", schedule=schedule.id, error=str(exc)
            )
            return True
        except BurrowError as exc:
            self._failures += 1
            log.warning("scheduled task not submitted yet", schedule=schedule.id, error=str(exc))
            return False
        if handle.existing:
            self._duplicates += 1
        else:
            self._fired += 1
            log.info("schedule fired", schedule=schedule.id, task=schedule.task, task_id=task_id)
        return True


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
