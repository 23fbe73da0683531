"""``RedisStateStore``: task records, fenced transitions, history, leases, heartbeats.

Every transition is one Lua script (``lua/``), so it is atomic, and scripts that end an
attempt check the attempt's lease token, so a late write from a zombie attempt is refused
(an ack always follows the write that made it safe). Hot-path calls go through
``AutoPipeline``; reads go straight out.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as aioredis

from burrow._background import Background
from burrow.config import RedisSettings
from burrow.errors import ConfigurationError, OperationTimeout, StateUnavailable, TaskNotFound
from burrow.state._pipeline import AutoPipeline, Script, raise_if_cancelled
from burrow.state.errors import map_redis_errors
from burrow.state.keys import Keys
from burrow.state.listing import IndexScan, _mapping
from burrow.state.ratelimit import reserve_start
from burrow.tasks.listing import Position, TaskFilter
from burrow.tasks.record import TaskError, TaskEvent, TaskRecord, WebhookOutcome
from burrow.tasks.status import TaskStatus

SCRIPTS = (
    "create",
    "start",
    "finish",
    "retry",
    "renew",
    "reap",
    "reopen",
    "release",
    "cancel",
    "trim",
    "webhook",
    "ratelimit",
)
_JSON_FIELDS = frozenset({"payload", "result", "error", "webhook"})
_FLOAT_FIELDS = frozenset({"created_at", "started_at", "finished_at", "updated_at", "eta"})
_INT_FIELDS = frozenset({"attempts", "max_retries"})
#: Seconds between two reads of a record by ``wait`` when no notification came.
WAIT_POLL = 1.0


def _load_scripts() -> dict[str, Script]:
    folder = resources.files("burrow.state") / "lua"
    return {name: Script((folder / f"{name}.lua").read_text()) for name in SCRIPTS}


@dataclass(frozen=True, slots=True)
class StartResult:
    """What ``start`` decided: ``code`` is run, terminal, busy or exhausted."""

    code: str
    attempts: int
    extra: str = ""


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What ``cancel`` did: ``code`` is cancelled, terminal or missing; ``status`` is the
    status before (cancelled) or the terminal one; ``lease`` the token of the attempt that
    was running ('' when none)."""

    code: str
    status: str = ""
    lease: str = ""


@dataclass(frozen=True, slots=True)
class Reopened:
    """A task reopened to run again, with what is needed to publish it again."""

    previous: str
    payload: bytes
    name: str
    queue: str
    trace_id: str
    error: TaskError | None


@dataclass(frozen=True, slots=True)
class NewTask:
    """The fields of a record created at submit."""

    id: str
    name: str
    queue: str
    payload: bytes
    max_retries: int
    trace_id: str
    eta: float | None = None
    callback_url: str | None = None


class RedisStateStore:
    """The state store on Redis 7."""

    def __init__(self, settings: RedisSettings, *, namespace: str) -> None:
        self._settings = settings
        self.keys = Keys(namespace)
        self._client: aioredis.Redis | None = None
        self._pipeline: AutoPipeline | None = None
        self._background = Background("state")
        self._waiters: dict[str, list[asyncio.Future[str]]] = {}
        self._subscribed: asyncio.Event | None = None
        self._open_lock = asyncio.Lock()

    @property
    def ttl(self) -> int:
        return self._settings.result_ttl

    async def open(self) -> None:
        """Connect and load the scripts; idempotent.

        Raises:
            StateUnavailable: Redis cannot be reached.
        """
        async with self._open_lock:
            if self._client is not None:
                return
            # A blocking pool: past 64 connections a caller waits (up to op_timeout) for
            # a free one instead of failing, so many concurrent ``wait`` calls queue up.
            pool = aioredis.BlockingConnectionPool.from_url(
                self._settings.url,
                socket_timeout=self._settings.op_timeout,
                socket_connect_timeout=self._settings.op_timeout,
                health_check_interval=30,
                max_connections=64,
                timeout=self._settings.op_timeout,
            )
            client = aioredis.Redis.from_pool(pool)
            pipeline = AutoPipeline(client, _load_scripts(), timeout=self._settings.op_timeout)
            try:
                await pipeline.load_scripts()
            except StateUnavailable:
                await client.aclose()
                raise
            self._client, self._pipeline = client, pipeline
            self._background = Background("state")
            self._background.start(pipeline.run(), name="autopipeline")

    async def close(self) -> None:
        await self._background.aclose()
        client, self._client, self._pipeline = self._client, None, None
        self._subscribed = None
        if client is not None:
            await client.aclose()

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise StateUnavailable("the state store is not open")
        return self._client

    async def _call(self, script: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        if self._pipeline is None:
            raise StateUnavailable("the state store is not open")
        return await self._pipeline.call(script, keys, args)

    async def _command(self, *args: Any) -> Any:
        if self._pipeline is None:
            raise StateUnavailable("the state store is not open")
        return await self._pipeline.command(*args)

    async def ping(self) -> bool:
        with map_redis_errors("ping"):
            return bool(await self._redis().ping())

    # -- transitions ----------------------------------------------------------------

    async def create(self, task: NewTask) -> float | None:
        """Write the record of a new task in status ``queued``; returns its ``created_at``
        as stored (Redis's clock), or None when a record with that id exists."""
        keys, args = self._create_args(task)
        reply = await self._call("create", keys, args)
        return float(reply) if reply else None

    async def create_many(self, tasks: list[NewTask]) -> list[BaseException | None]:
        """Write many new records in one pipeline; per task None, or the error."""
        if self._pipeline is None:
            raise StateUnavailable("the state store is not open")
        replies = await self._pipeline.call_many("create", [self._create_args(t) for t in tasks])
        return [r if isinstance(r, BaseException) else None for r in replies]

    def _create_args(self, task: NewTask) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        k = self.keys
        eta = "" if task.eta is None else repr(task.eta)
        return (k.task(task.id), k.events(task.id), k.tasks), (
            task.id,
            task.name,
            task.queue,
            task.payload,
            task.max_retries,
            task.trace_id,
            eta,
            self.ttl,
            task.callback_url or "",
        )

    async def start(
        self,
        *,
        task_id: str,
        token: str,
        lease_ms: int,
        worker: str,
        max_runs: int,
        name: str,
        queue: str,
        payload: bytes,
        trace_id: str,
    ) -> StartResult:
        """Begin an attempt (see ``lua/start.lua``)."""
        k = self.keys
        code, attempts, extra = await self._call(
            "start",
            (k.task(task_id), k.events(task_id), k.running, k.tasks),
            (task_id, token, lease_ms, worker, max_runs, name, queue, payload, trace_id, self.ttl),
        )
        return StartResult(_text(code), int(attempts), _text(extra))

    async def finish(
        self,
        task_id: str,
        *,
        token: str,
        status: TaskStatus,
        result: bytes | None = None,
        error: TaskError | None = None,
        note: str = "",
    ) -> bool:
        """Write a terminal state, once; False when fenced or already terminal."""
        k = self.keys
        written = await self._call(
            "finish",
            (k.task(task_id), k.events(task_id), k.running),
            (
                task_id,
                token,
                status.value,
                result or b"",
                error.model_dump_json(exclude_none=True) if error else "",
                self.ttl,
                k.terminal_channel,
                note,
            ),
        )
        return bool(written)

    async def retry(self, task_id: str, *, token: str, error: TaskError, eta: float) -> bool:
        """Record a failed attempt whose retry is scheduled at ``eta``."""
        k = self.keys
        written = await self._call(
            "retry",
            (k.task(task_id), k.events(task_id), k.running),
            (task_id, token, error.model_dump_json(exclude_none=True), repr(eta), self.ttl),
        )
        return bool(written)

    async def renew(self, leases: dict[str, str], lease_ms: int) -> int:
        """Extend the leases ``{task_id: token}`` that are still held; returns how many."""
        if not leases:
            return 0
        k = self.keys
        ids = list(leases)
        args: list[Any] = [lease_ms]
        for task_id in ids:
            args += [task_id, leases[task_id]]
        return int(await self._call("renew", (k.running, *map(k.task, ids)), tuple(args)))

    async def reap(self, limit: int = 100) -> int:
        """Return running tasks whose lease expired to ``queued``; returns how many.

        Like every call of the worker's maintenance loop this goes through the
        auto-pipeline: redis-py's direct commands can swallow a task's cancellation
        (redis/redis-py#2028), which would leave the loop running at shutdown.
        """
        k = self.keys
        seconds, _ = await self._command("TIME")
        now_ms = int(seconds) * 1000
        due = await self._command("ZRANGEBYSCORE", k.running, "-inf", now_ms, "LIMIT", 0, limit)
        reaped = 0
        for raw in due:
            task_id = _text(raw)
            reaped += int(
                await self._call(
                    "reap", (k.running, k.task(task_id), k.events(task_id)), (task_id,)
                )
            )
        return reaped

    async def reopen(self, task_id: str, note: str) -> bool:
        """Reopen a failed or cancelled task so it runs again; False otherwise."""
        return isinstance(await self.reopen_for_run(task_id, note), Reopened)

    async def reopen_for_run(self, task_id: str, note: str) -> Reopened | str | None:
        """Reopen a failed or cancelled task (``lua/reopen.lua``).

        Returns:
            ``Reopened`` with the stored payload; the current status when it does not allow
            a reopen; None when there is no record.
        """
        k = self.keys
        reply = await self._call("reopen", (k.task(task_id), k.events(task_id)), (self.ttl, note))
        if int(reply[0]) == 0:
            return _text(reply[1]) if len(reply) > 1 else None
        _, previous, payload, name, queue, trace_id, error = reply
        return Reopened(
            previous=_text(previous),
            payload=payload if isinstance(payload, bytes) else str(payload).encode(),
            name=_text(name),
            queue=_text(queue),
            trace_id=_text(trace_id),
            error=_task_error(error),
        )

    async def cancel(self, task_id: str, note: str) -> CancelResult:
        """Cancel a task that has not finished (``lua/cancel.lua``)."""
        k = self.keys
        reply = await self._call(
            "cancel",
            (k.task(task_id), k.events(task_id), k.running),
            (task_id, k.terminal_channel, note, self.ttl),
        )
        return CancelResult(*(_text(v) for v in reply))

    async def release(self, task_id: str, *, token: str, note: str) -> bool:
        """Give back an unfinished attempt (shutdown): ``running`` -> ``queued``."""
        k = self.keys
        return bool(
            await self._call(
                "release", (k.task(task_id), k.events(task_id), k.running), (task_id, token, note)
            )
        )

    async def reserve_start(self, task: str, task_id: str, interval: float) -> float:
        """Reserve the next start slot of rate-limited ``task`` (``state/ratelimit.py``);
        returns the seconds to wait for it (0: start now)."""
        return await reserve_start(
            self._call, self.keys, task=task, task_id=task_id, interval=interval
        )

    async def record_webhook(self, task_id: str, outcome: WebhookOutcome, *, enqueue: bool) -> bool:
        """Write where the task's webhook stands (``lua/webhook.lua``): with ``enqueue``
        unless this webhook id was enqueued before, else only while it is still pending.
        Never changes the task's status; False when not written."""
        written = await self._call(
            "webhook",
            (self.keys.task(task_id),),
            (
                outcome.id,
                "enqueue" if enqueue else "update",
                outcome.model_dump_json(exclude_none=True),
            ),
        )
        return bool(written)

    async def webhook_state(self, task_id: str) -> WebhookOutcome | None:
        """The task's webhook outcome, or None (no webhook, or no record)."""
        raw = await self._command("HGET", self.keys.task(task_id), "webhook")
        if not raw:
            return None
        try:
            return WebhookOutcome.model_validate_json(raw)
        except ValueError:
            return None

    async def callback_url(self, task_id: str) -> str | None:
        """The callback URL given when the task was submitted, or None."""
        raw = await self._command("HGET", self.keys.task(task_id), "callback_url")
        return _text(raw) or None

    async def claim_on_dead(self, task_id: str) -> bool:
        """Claim the task's compensation; True exactly once per dead task."""
        with map_redis_errors("claim compensation"):
            return bool(await self._redis().hsetnx(self.keys.task(task_id), "on_dead", "claimed"))

    async def set_on_dead(self, task_id: str, outcome: str) -> None:
        with map_redis_errors("record compensation"):
            await self._redis().hset(self.keys.task(task_id), "on_dead", outcome)

    # -- submit helpers -------------------------------------------------------------

    async def claim_idempotency(self, key: str, task_id: str) -> str | None:
        """Bind ``key`` to ``task_id`` unless bound; returns the existing id if it was."""
        with map_redis_errors("idempotency key"):
            redis = self._redis()
            name = self.keys.idempotency(key)
            if await redis.set(name, task_id, nx=True, ex=self.ttl):
                return None
            existing = await redis.get(name)
        return _text(existing) if existing is not None else None

    async def release_idempotency(self, key: str, task_id: str) -> None:
        """Unbind ``key`` if it still points at ``task_id`` (its submit failed)."""
        with map_redis_errors("idempotency key"):
            redis = self._redis()
            name = self.keys.idempotency(key)
            if _text(await redis.get(name) or b"") == task_id:
                await redis.delete(name)

    async def purge_namespace(self) -> int:
        """Delete every key of this namespace (records, history, indexes, locks, schedules,
        heartbeats); returns how many. For tests and for retiring a namespace: it cannot
        be undone. Refused for the empty namespace, whose keys are not ours alone."""
        prefix = self.keys.prefix
        if not prefix:
            raise ConfigurationError("refusing to purge the empty namespace (every key)")
        deleted = 0
        with map_redis_errors("purge namespace"):
            redis = self._redis()
            batch: list[Any] = []
            async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(await redis.delete(*batch))
                    batch.clear()
            if batch:
                deleted += int(await redis.delete(*batch))
        return deleted

    async def delete(self, task_id: str) -> None:
        """Forget a task whose message never reached the broker."""
        k = self.keys
        with map_redis_errors("delete record"):
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.delete(k.task(task_id), k.events(task_id))
                pipe.zrem(k.tasks, task_id)
                await pipe.execute()

    # -- the listing index ----------------------------------------------------------

    async def list_tasks(
        self, *, after: Position | None, limit: int, where: TaskFilter
    ) -> tuple[list[TaskRecord], Position | None]:
        """One page of records, newest first, and where the page ended (None: no more).

        Entries of expired records met on the way are dropped from the index.
        """
        scan = IndexScan(
            self._command, index=self.keys.tasks, task_key=self.keys.task, parse=_record
        )
        result = await scan.page(after=after, limit=limit, where=where)
        if result.expired:
            await self._forget_expired(result.expired)
        return result.records, result.position

    async def trim_index(self, limit: int = 500) -> int:
        """Drop up to ``limit`` index entries, oldest first, whose record has expired; only
        entries older than the result TTL are looked at. Returns how many were dropped."""
        k = self.keys
        seconds, _ = await self._command("TIME")
        cutoff = int(seconds) - self.ttl
        ids = await self._command("ZRANGEBYSCORE", k.tasks, "-inf", cutoff, "LIMIT", 0, limit)
        if not ids:
            return 0
        return await self._forget_expired([_text(i) for i in ids])

    async def _forget_expired(self, ids: list[str]) -> int:
        k = self.keys
        return int(await self._call("trim", (k.tasks, *map(k.task, ids)), tuple(ids)))

    # -- reads ----------------------------------------------------------------------

    async def get(self, task_id: str) -> TaskRecord | None:
        """The record of ``task_id``, or None."""
        with map_redis_errors("read record"):
            raw = await self._redis().hgetall(self.keys.task(task_id))
        return _record(raw) if raw else None

    async def statuses(self, task_ids: list[str]) -> dict[str, str | None]:
        """The current status of each of ``task_ids`` (None: no record), in one pipeline."""
        k = self.keys
        found = await asyncio.gather(
            *(self._command("HGET", k.task(i), "status") for i in task_ids)
        )
        return {i: None if v is None else _text(v) for i, v in zip(task_ids, found, strict=True)}

    async def history(self, task_id: str) -> list[TaskEvent]:
        """The task's events, oldest first."""
        with map_redis_errors("read history"):
            raw = await self._redis().lrange(self.keys.events(task_id), 0, -1)
        return [TaskEvent.model_validate_json(item) for item in raw]

    async def wait(self, task_id: str, timeout: float, *, missing_ok: bool = False) -> TaskRecord:
        """Wait until the task is terminal and return its record.

        The wait ends by its deadline (``timeout`` seconds from now) whatever happens to
        the timers inside it: each pass of its loop reads the record, then checks the loop
        clock against the deadline, so a cancellation swallowed on the way (Python 3.11's
        ``asyncio.wait_for``, used by redis-py's socket writes, returns the result instead of
        raising when the cancellation arrives just as the write completes) costs at most
        one more pass, never an endless poll. The record is read through the auto-pipeline,
        whose calls await a plain future, so cancelling the wait (a client that went away)
        stops it at once.

        Args:
            missing_ok: keep waiting while the task has no record yet (a subscriber's run
                of an event is recorded only when a worker receives the event).

        Raises:
            TaskNotFound: no such task (and not ``missing_ok``).
            OperationTimeout: not terminal within ``timeout`` seconds.
            ValueError: ``timeout`` is NaN.
        """
        if math.isnan(timeout):
            raise ValueError("the timeout of a wait must be a number of seconds, not NaN")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        future: asyncio.Future[str] = loop.create_future()
        self._waiters.setdefault(task_id, []).append(future)
        try:
            async with asyncio.timeout_at(deadline):
                await self._ensure_subscribed()
                while True:
                    record = await self._read(task_id)
                    if record is None and not missing_ok:
                        raise TaskNotFound(task_id)
                    if record is not None and record.terminal:
                        return record
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    # Poll now and then as well: a notification published while the
                    # subscriber was reconnecting would otherwise be missed. (``asyncio.wait``
                    # neither cancels the future nor turns a cancellation into a timeout.)
                    await asyncio.wait((future,), timeout=min(WAIT_POLL, left))
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(task_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(task_id, None)
        raise OperationTimeout(f"task {task_id} not finished within {timeout} s", task_id=task_id)

    def waiting(self, task_id: str) -> int:
        """How many ``wait`` calls of this process are waiting for ``task_id`` now."""
        return len(self._waiters.get(task_id, ()))

    async def _read(self, task_id: str) -> TaskRecord | None:
        """``get`` through the auto-pipeline (see ``wait``)."""
        raw = await self._command("HGETALL", self.keys.task(task_id))
        return _record(_mapping(raw)) if raw else None

    async def _ensure_subscribed(self) -> None:
        if self._subscribed is None:
            self._subscribed = asyncio.Event()
            self._background.start(self._listen(self._subscribed), name="terminal-listener")
        async with asyncio.timeout(self._settings.op_timeout):
            await self._subscribed.wait()

    async def _listen(self, ready: asyncio.Event) -> None:
        """Hand the terminal notifications to the waiters until cancelled (``close``).

        redis-py's socket writes (the subscribe, the health-check ping) may swallow this
        task's cancellation (see ``wait``), so the loop reads with a timeout and checks for
        a cancellation after every step: ``close`` never waits on it for long.
        """
        while True:
            try:
                pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
                async with pubsub:
                    await pubsub.subscribe(self.keys.terminal_channel)
                    raise_if_cancelled()
                    ready.set()
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=WAIT_POLL
                        )
                        raise_if_cancelled()
                        if message is not None:
                            self._notify(_text(message["data"]))
            except (OSError, ConnectionError, StateUnavailable, aioredis.RedisError):
                await asyncio.sleep(0.5)

    def _notify(self, data: str) -> None:
        task_id, _, status = data.rpartition(":")
        for future in self._waiters.get(task_id, ()):
            if not future.done():
                future.set_result(status)

    # -- workers ----------------------------------------------------------------------

    async def heartbeat(self, worker_id: str, info: dict[str, Any], ttl: float) -> None:
        """Record that a worker is alive (expires after ``ttl`` seconds without renewal).
        The index of workers expires too once no worker renews it, so a retired namespace
        leaves no key behind."""
        k = self.keys
        ttl_ms = int(ttl * 1000)
        await asyncio.gather(  # queued together: one pipeline round trip
            self._command("SET", k.worker(worker_id), orjson.dumps(info), "PX", ttl_ms),
            self._command("ZADD", k.workers, info.get("last_seen", 0), worker_id),
            self._command("PEXPIRE", k.workers, ttl_ms),
        )

    async def forget_worker(self, worker_id: str) -> None:
        with map_redis_errors("heartbeat"):
            redis = self._redis()
            await redis.delete(self.keys.worker(worker_id))
            await redis.zrem(self.keys.workers, worker_id)

    async def workers(self) -> list[dict[str, Any]]:
        """Heartbeats of the live workers; dead ones (expired) are dropped from the index."""
        with map_redis_errors("read workers"):
            redis = self._redis()
            ids = [_text(i) for i in await redis.zrange(self.keys.workers, 0, -1)]
            if not ids:
                return []
            values = await redis.mget([self.keys.worker(i) for i in ids])
            dead = [i for i, v in zip(ids, values, strict=True) if v is None]
            if dead:
                await redis.zrem(self.keys.workers, *dead)
        return [orjson.loads(v) for v in values if v is not None]


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _task_error(raw: Any) -> TaskError | None:
    if not raw:
        return None
    try:
        return TaskError.model_validate_json(raw)
    except ValueError:
        return None


def _record(raw: dict[Any, Any]) -> TaskRecord:
    data: dict[str, Any] = {}
    for key, value in raw.items():
        name = _text(key)
        if name in _JSON_FIELDS:
            try:
                data[name] = orjson.loads(value) if value else None
            except orjson.JSONDecodeError:
                data[name] = _text(value)  # a foreign producer's non-JSON body
        elif name in _FLOAT_FIELDS:
            data[name] = float(value)
        elif name in _INT_FIELDS:
            data[name] = int(value)
        elif name in ("id", "name", "queue", "status", "trace_id", "worker"):
            data[name] = _text(value)
    return TaskRecord.model_validate(data)
