"""The benchmark: burrow vs raw aio-pika, enqueue and drain, interleaved rounds.

Per queue type and round: (1) raw enqueue of N persistent messages with confirms pipelined
1000 at a time, (2) raw drain by a one-process uvloop consumer (prefetch 256, manual ack),
(3) burrow ``submit_many`` of N no-op tasks, (4) ``burrow worker bench.noop_app:app`` started
on the full queue. Drain time runs from the first message taken to the last one finished
(raw: first delivery -> last ack, reported by the consumer; burrow: min ``started_at`` ->
max ``finished_at`` of the N records), so process start-up is excluded. CPU time is the
interpolated ``user+system`` delta of the worker process over that same window; RSS is the
peak of 100 ms samples over the worker's life.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import psutil
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bench.noop_app import QUEUE, TASK, make_app
from burrow import Burrow
from burrow.broker.topology import TIERS_MS, Names, work_queue
from burrow.config import QueueType, Settings
from burrow.state.keys import Keys

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
RAW_QUEUE = "raw"
RAW_BATCH = 1000
RAW_PREFETCH = 256
SAMPLE_INTERVAL = 0.1
STALL_TIMEOUT = 60.0
MIB = 1024 * 1024

TARGETS = {"drain": 0.85, "enqueue": 0.8, "cpu": 2.0, "rss_mib": 60.0}

console = Console()


@dataclass(frozen=True, slots=True)
class Config:
    n: int
    rounds: int
    queue_types: tuple[QueueType, ...]
    amqp_url: str
    redis_url: str
    namespace: str


@dataclass(slots=True)
class Drain:
    """One drain: rate over the first-take -> last-finish window, CPU and RSS."""

    seconds: float
    rate: float
    cpu_seconds: float
    cpu_per_1000: float
    peak_rss_mib: float
    wall_seconds: float  # process spawn -> all done, start-up included (for reference)
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RoundResult:
    queue_type: str
    round: int
    raw_enqueue_rate: float
    raw_drain: Drain
    burrow_enqueue_rate: float
    burrow_drain: Drain


# -- process sampling -------------------------------------------------------------------


class Sampler:
    """Samples a process's CPU time and RSS every 100 ms until stopped or gone."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, float, int]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                with self.process.oneshot():
                    cpu = self.process.cpu_times()
                    rss = self.process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                return
            self.samples.append((time.time(), cpu.user + cpu.system, rss))
            await asyncio.sleep(SAMPLE_INTERVAL)

    def cpu_at(self, t: float) -> float:
        """CPU seconds used by time ``t`` (linear interpolation between samples)."""
        s = self.samples
        if not s:
            return 0.0
        if t <= s[0][0]:
            return s[0][1]
        for (t0, c0, _), (t1, c1, _) in itertools.pairwise(s):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)
        return s[-1][1]

    @property
    def peak_rss_mib(self) -> float:
        return max((r for _, _, r in self.samples), default=0) / MIB


# -- the benchmark ----------------------------------------------------------------------


class Bench:
    def __init__(self, config: Config, progress: Progress) -> None:
        self.config = config
        self.progress = progress
        self.processes: list[subprocess.Popen[bytes]] = []
        self.apps: dict[str, Burrow] = {}
        self.monitor: AbstractRobustConnection | None = None
        self.redis: aioredis.Redis | None = None
        self.server_info: dict[str, Any] = {}
        self.log_dir = RESULTS / f"logs-{config.namespace}"

    def ns(self, queue_type: str) -> str:
        return f"{self.config.namespace}_{queue_type}"

    # -- helpers ------------------------------------------------------------------------

    async def _channel(self) -> AbstractChannel:
        assert self.monitor is not None
        return await self.monitor.channel()

    async def empty_raw_queue(self, qt: QueueType) -> int:
        """Purge the raw baseline's queue; returns how many messages it held."""
        channel = await self._channel()
        try:
            queue = await channel.declare_queue(self._raw_spec(qt).name, passive=True)
            left = int(queue.declaration_result.message_count or 0)
            if left:
                await queue.purge()
            return left
        finally:
            await channel.close()

    async def depth(self, queue: str) -> int:
        """Ready messages in ``queue`` (passive declare on a throwaway channel)."""
        channel = await self._channel()
        try:
            q = await channel.declare_queue(queue, passive=True)
            return int(q.declaration_result.message_count or 0)
        finally:
            await channel.close()

    async def _watch(
        self, phase: TaskID, done: Callable[[], Awaitable[int]], stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                self.progress.update(phase, completed=await done())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    def _phase(self, label: str) -> TaskID:
        return self.progress.add_task(label, total=self.config.n)

    def _end_phase(self, phase: TaskID, overall: TaskID) -> None:
        self.progress.update(phase, completed=self.config.n)
        self.progress.remove_task(phase)
        self.progress.advance(overall)

    async def setup(self) -> None:
        self.monitor = await aio_pika.connect_robust(self.config.amqp_url)
        transport: Any = self.monitor.transport
        props = getattr(transport.connection, "server_properties", {}) if transport else {}
        version = props.get("version", b"?")
        self.server_info["rabbitmq"] = version.decode() if isinstance(version, bytes) else version
        self.redis = aioredis.Redis.from_url(self.config.redis_url)
        info = await self.redis.info("server")
        self.server_info["redis"] = info.get("redis_version", "?")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for qt in self.config.queue_types:
            app = make_app(namespace=self.ns(qt), queue_type=qt)
            await app.connect()
            await app.declare_queue(QUEUE)
            self.apps[qt] = app
            channel = await self._channel()
            spec = self._raw_spec(qt)
            await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
            await channel.close()

    def _raw_spec(self, qt: QueueType) -> Any:
        s = Settings()
        return work_queue(
            Names(self.ns(qt)), RAW_QUEUE, queue_type=qt, delivery_limit=s.delivery_limit
        )

    # -- raw ----------------------------------------------------------------------------

    async def raw_enqueue(self, qt: QueueType, r: int) -> float:
        assert self.monitor is not None
        n = self.config.n
        queue = self._raw_spec(qt).name
        phase = self._phase(f"[{qt} r{r}] raw enqueue")
        connection = await aio_pika.connect(self.config.amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = channel.default_exchange
            bodies = [orjson.dumps({"i": i}) for i in range(n)]
            start = time.perf_counter()
            for lo in range(0, n, RAW_BATCH):
                await asyncio.gather(
                    *(
                        exchange.publish(
                            aio_pika.Message(
                                body,
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                message_id=uuid.uuid4().hex,
                                content_type="application/json",
                            ),
                            routing_key=queue,
                        )
                        for body in bodies[lo : lo + RAW_BATCH]
                    )
                )
                self.progress.update(phase, completed=min(n, lo + RAW_BATCH))
            elapsed = time.perf_counter() - start
        finally:
            await connection.close()
        self.progress.remove_task(phase)
        return n / elapsed

    async def raw_drain(self, qt: QueueType, r: int) -> Drain:
        n = self.config.n
        queue = self._raw_spec(qt).name
        await self._await_depth(queue, n)
        phase = self._phase(f"[{qt} r{r}] raw drain")
        spawned = time.time()
        proc: subprocess.Popen[bytes] = await asyncio.to_thread(
            subprocess.Popen,
            [
                sys.executable,
                "-m",
                "bench.raw_consumer",
                "--url",
                self.config.amqp_url,
                "--queue",
                queue,
                "--n",
                str(n),
                "--prefetch",
                str(RAW_PREFETCH),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.processes.append(proc)
        sampler = Sampler(proc.pid)
        sampler.start()
        stop = asyncio.Event()

        async def taken() -> int:
            return n - await self.depth(queue)

        watcher = asyncio.create_task(self._watch(phase, taken, stop))
        try:
            out, err = await asyncio.to_thread(proc.communicate, timeout=600)
        finally:
            stop.set()
            await watcher
            await sampler.stop()
            self.processes.remove(proc)
        done = time.time()
        self.progress.remove_task(phase)
        if proc.returncode != 0:
            raise RuntimeError(f"raw consumer failed ({proc.returncode}): {err.decode()[-2000:]}")
        result = orjson.loads(out.splitlines()[-1])
        first, last = float(result["first"]), float(result["last"])
        cpu = sampler.cpu_at(last) - sampler.cpu_at(first)
        return Drain(
            seconds=last - first,
            rate=n / (last - first),
            cpu_seconds=cpu,
            cpu_per_1000=cpu / n * 1000,
            peak_rss_mib=sampler.peak_rss_mib,
            wall_seconds=done - spawned,
        )

    async def _await_depth(self, queue: str, n: int, timeout: float = 30.0) -> None:
        """Wait until ``queue`` reports ``n`` ready messages (counts can lag confirms)."""
        deadline = time.monotonic() + timeout
        while (depth := await self.depth(queue)) != n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{queue} holds {depth} messages, expected {n}")
            await asyncio.sleep(0.2)

    # -- burrow -------------------------------------------------------------------------

    async def burrow_enqueue(self, qt: QueueType, r: int) -> tuple[float, list[str]]:
        app = self.apps[qt]
        n = self.config.n
        queue = app.names.queue(QUEUE)
        phase = self._phase(f"[{qt} r{r}] burrow enqueue")
        payloads = [{"i": i} for i in range(n)]
        stop = asyncio.Event()

        async def queued() -> int:
            return await self.depth(queue)

        watcher = asyncio.create_task(self._watch(phase, queued, stop))
        try:
            start = time.perf_counter()
            handles = await app.submit_many(TASK, payloads)
            elapsed = time.perf_counter() - start
        finally:
            stop.set()
            await watcher
        self.progress.remove_task(phase)
        return n / elapsed, [h.id for h in handles]

    async def _fields(self, keys: Keys, ids: list[str], *names: str) -> list[list[Any]]:
        assert self.redis is not None
        out: list[list[Any]] = []
        for lo in range(0, len(ids), 2000):
            pipe = self.redis.pipeline(transaction=False)
            for task_id in ids[lo : lo + 2000]:
                pipe.hmget(keys.task(task_id), list(names))
            out += await pipe.execute()
        return out

    async def _succeeded(self, keys: Keys, ids: list[str]) -> int:
        rows = await self._fields(keys, ids, "status")
        return sum(1 for (status,) in rows if status == b"succeeded")

    async def burrow_drain(self, qt: QueueType, r: int, ids: list[str]) -> Drain:
        app = self.apps[qt]
        n = self.config.n
        queue = app.names.queue(QUEUE)
        keys = Keys(app.names.namespace)
        await self._await_depth(queue, n)
        phase = self._phase(f"[{qt} r{r}] burrow drain")
        env = {
            **os.environ,
            "BURROW_NAMESPACE": app.names.namespace,
            "BURROW_QUEUE_TYPE": qt,
            "BURROW_AMQP_URL": self.config.amqp_url,
            "BURROW_REDIS_URL": self.config.redis_url,
        }
        log_path = self.log_dir / f"worker-{qt}-r{r}.log"
        burrow_bin = Path(sys.executable).with_name("burrow")
        with log_path.open("wb") as log_file:
            spawned = time.time()
            proc: subprocess.Popen[bytes] = await asyncio.to_thread(
                subprocess.Popen,
                [str(burrow_bin), "worker", "bench.noop_app:app", "--log-format", "json"],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            self.processes.append(proc)
            sampler = Sampler(proc.pid)
            sampler.start()
            try:
                done_at = await self._wait_burrow(phase, queue, keys, ids, proc)
            finally:
                await sampler.stop()
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(proc.wait, 60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    await asyncio.to_thread(proc.wait)
                self.processes.remove(proc)
        self.progress.remove_task(phase)
        rows = await self._fields(keys, ids, "started_at", "finished_at", "attempts")
        started = [float(s) for s, _, _ in rows if s]
        finished = [float(f) for _, f, _ in rows if f]
        reruns = sum(1 for _, _, a in rows if a and int(a) > 1)
        first, last = min(started), max(finished)
        cpu = sampler.cpu_at(last) - sampler.cpu_at(first)
        notes = _log_findings(log_path)
        if reruns:
            notes.append(f"{reruns} tasks ran more than once")
        return Drain(
            seconds=last - first,
            rate=n / (last - first),
            cpu_seconds=cpu,
            cpu_per_1000=cpu / n * 1000,
            peak_rss_mib=sampler.peak_rss_mib,
            wall_seconds=done_at - spawned,
            notes=notes,
        )

    async def _wait_burrow(
        self,
        phase: TaskID,
        queue: str,
        keys: Keys,
        ids: list[str],
        proc: subprocess.Popen[bytes],
    ) -> float:
        """Poll queue depth, then the records, until all N succeeded; returns the time."""
        n = self.config.n
        best, best_at = -1, time.monotonic()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the burrow worker exited early ({proc.returncode})")
            taken = n - await self.depth(queue)
            progress = taken
            if taken >= n:
                succeeded = await self._succeeded(keys, ids)
                if succeeded >= n:
                    self.progress.update(phase, completed=n)
                    return time.time()
                progress = n + succeeded  # monotone stall detection across both stages
            self.progress.update(phase, completed=min(taken, n))
            if progress > best:
                best, best_at = progress, time.monotonic()
            elif time.monotonic() - best_at > STALL_TIMEOUT:
                raise RuntimeError(f"burrow drain stalled at {progress - n} succeeded of {n}")
            await asyncio.sleep(0.25 if taken < n else 0.5)

    async def reset_round(self, qt: QueueType, ids: list[str]) -> None:
        """Drop the round's records so Redis stays small between rounds."""
        assert self.redis is not None
        keys = Keys(self.ns(qt))
        for lo in range(0, len(ids), 2000):
            chunk = ids[lo : lo + 2000]
            await self.redis.unlink(
                *[keys.task(i) for i in chunk], *[keys.events(i) for i in chunk]
            )

    # -- run and clean up ---------------------------------------------------------------

    async def run(self) -> list[RoundResult]:
        cfg = self.config
        results: list[RoundResult] = []
        overall = self.progress.add_task(
            "rounds (raw, burrow interleaved)", total=cfg.rounds * len(cfg.queue_types) * 4
        )
        for r in range(1, cfg.rounds + 1):
            for qt in cfg.queue_types:
                raw_enq = await self.raw_enqueue(qt, r)
                self.progress.advance(overall)
                await asyncio.sleep(1.0)
                raw_drain = await self.raw_drain(qt, r)
                self.progress.advance(overall)
                await asyncio.sleep(1.0)
                burrow_enq, ids = await self.burrow_enqueue(qt, r)
                self.progress.advance(overall)
                await asyncio.sleep(1.0)
                burrow_drain = await self.burrow_drain(qt, r, ids)
                self.progress.advance(overall)
                await self.reset_round(qt, ids)
                result = RoundResult(qt, r, raw_enq, raw_drain, burrow_enq, burrow_drain)
                results.append(result)
                self.progress.console.print(_round_line(result))
                await asyncio.sleep(1.0)
        return results

    async def cleanup(self) -> None:
        """Stop children, delete every queue, exchange and Redis key of this run."""
        for proc in list(self.processes):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(10)
        for app in self.apps.values():
            with contextlib.suppress(Exception):
                await app.close()
        if self.monitor is not None:
            for qt in self.config.queue_types:
                await self._delete_topology(Names(self.ns(qt)))
            await self.monitor.close()
        if self.redis is not None:
            for qt in self.config.queue_types:
                await self._delete_keys(f"{self.ns(qt)}:*")
            await self.redis.aclose()

    async def _delete_topology(self, names: Names) -> None:
        queues = [
            names.queue(QUEUE),
            names.dlq(QUEUE),
            names.queue(RAW_QUEUE),
            names.dlq(RAW_QUEUE),
            *(names.delay_queue(t) for t in TIERS_MS),
        ]
        channel = await self._channel()
        for q in queues:
            try:
                await channel.queue_delete(q)
            except Exception:
                channel = await self._channel()  # the broker closed the channel
        try:
            await channel.exchange_delete(names.delay_exchange)
        except Exception:
            return
        with contextlib.suppress(Exception):
            await channel.close()

    async def _delete_keys(self, pattern: str) -> None:
        assert self.redis is not None
        batch: list[bytes] = []
        async for key in self.redis.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await self.redis.unlink(*batch)
                batch.clear()
        if batch:
            await self.redis.unlink(*batch)


def _log_findings(path: Path) -> list[str]:
    """Warnings and errors the worker logged (JSON lines), summarised."""
    counts: dict[str, int] = {}
    for line in path.read_bytes().splitlines():
        try:
            entry = orjson.loads(line)
            level = str(entry.get("level", "")).lower()
            event = str(entry.get("event", ""))[:120]
        except (orjson.JSONDecodeError, AttributeError):
            text = line.decode(errors="replace")
            level = "error" if "error" in text.lower() or "traceback" in text.lower() else ""
            event = text[:120]
        if level in ("warning", "error", "critical", "exception"):
            key = f"{level}: {event}"
            counts[key] = counts.get(key, 0) + 1
    return [f"{count}x {key}" for key, count in counts.items()]


def _round_line(r: RoundResult) -> str:
    return (
        f"[bold]{r.queue_type} round {r.round}[/bold]: enqueue raw {r.raw_enqueue_rate:,.0f}/s "
        f"burrow {r.burrow_enqueue_rate:,.0f}/s | drain raw {r.raw_drain.rate:,.0f}/s "
        f"burrow {r.burrow_drain.rate:,.0f}/s | CPU/1000 raw {r.raw_drain.cpu_per_1000:.3f}s "
        f"burrow {r.burrow_drain.cpu_per_1000:.3f}s | RSS raw {r.raw_drain.peak_rss_mib:.1f} "
        f"burrow {r.burrow_drain.peak_rss_mib:.1f} MiB"
        + (f" | notes: {'; '.join(r.burrow_drain.notes)}" if r.burrow_drain.notes else "")
    )


# -- summary ----------------------------------------------------------------------------


def summarize(results: list[RoundResult], queue_types: tuple[str, ...]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for qt in queue_types:
        rs = [r for r in results if r.queue_type == qt]
        if not rs:
            continue
        med = statistics.median
        s: dict[str, Any] = {
            "raw_enqueue_rate": med(r.raw_enqueue_rate for r in rs),
            "burrow_enqueue_rate": med(r.burrow_enqueue_rate for r in rs),
            "raw_drain_rate": med(r.raw_drain.rate for r in rs),
            "burrow_drain_rate": med(r.burrow_drain.rate for r in rs),
            "raw_cpu_per_1000": med(r.raw_drain.cpu_per_1000 for r in rs),
            "burrow_cpu_per_1000": med(r.burrow_drain.cpu_per_1000 for r in rs),
            "raw_peak_rss_mib": med(r.raw_drain.peak_rss_mib for r in rs),
            "burrow_peak_rss_mib": med(r.burrow_drain.peak_rss_mib for r in rs),
        }
        s["enqueue_ratio"] = s["burrow_enqueue_rate"] / s["raw_enqueue_rate"]
        s["drain_ratio"] = s["burrow_drain_rate"] / s["raw_drain_rate"]
        s["cpu_ratio"] = s["burrow_cpu_per_1000"] / s["raw_cpu_per_1000"]
        s["met"] = {
            "enqueue": s["enqueue_ratio"] >= TARGETS["enqueue"],
            "drain": s["drain_ratio"] >= TARGETS["drain"],
            "cpu": s["cpu_ratio"] <= TARGETS["cpu"],
            "rss": s["burrow_peak_rss_mib"] <= TARGETS["rss_mib"],
        }
        summary[qt] = s
    return summary


def render(summary: dict[str, Any], cfg: Config) -> Table:
    table = Table(
        title=f"burrow vs raw aio-pika: N={cfg.n}, {cfg.rounds} rounds, medians",
        show_lines=False,
    )
    for col in ("queue", "metric", "raw", "burrow", "ratio", "target", "met"):
        table.add_column(col, justify="left" if col in ("queue", "metric") else "right")

    def ok(flag: bool) -> str:
        return "[green]yes[/green]" if flag else "[red]NO[/red]"

    for qt, s in summary.items():
        met = s["met"]
        table.add_row(
            qt,
            "enqueue (msg/s)",
            f"{s['raw_enqueue_rate']:,.0f}",
            f"{s['burrow_enqueue_rate']:,.0f}",
            f"{s['enqueue_ratio']:.2f}x",
            ">= 0.80x",
            ok(met["enqueue"]),
        )
        table.add_row(
            "",
            "drain (tasks/s)",
            f"{s['raw_drain_rate']:,.0f}",
            f"{s['burrow_drain_rate']:,.0f}",
            f"{s['drain_ratio']:.2f}x",
            ">= 0.85x",
            ok(met["drain"]),
        )
        table.add_row(
            "",
            "worker CPU s / 1000 tasks",
            f"{s['raw_cpu_per_1000']:.3f}",
            f"{s['burrow_cpu_per_1000']:.3f}",
            f"{s['cpu_ratio']:.2f}x",
            "<= 2.00x",
            ok(met["cpu"]),
        )
        table.add_row(
            "",
            "worker peak RSS (MiB)",
            f"{s['raw_peak_rss_mib']:.1f}",
            f"{s['burrow_peak_rss_mib']:.1f}",
            "",
            "<= 60 MiB",
            ok(met["rss"]),
            end_section=True,
        )
    return table


async def main_async(cfg: Config) -> int:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    console.print(
        f"namespace [bold]{cfg.namespace}[/bold], N={cfg.n}, rounds={cfg.rounds}, "
        f"queue types {','.join(cfg.queue_types)}, {os.cpu_count()} CPUs"
    )
    bench = Bench(cfg, progress)
    results: list[RoundResult] = []
    try:
        await bench.setup()
        with progress:
            results = await bench.run()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(bench.cleanup())
        console.print(f"cleaned up namespace {cfg.namespace}")
    summary = summarize(results, cfg.queue_types)
    console.print(render(summary, cfg))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{cfg.namespace}.json"
    out.write_bytes(
        orjson.dumps(
            {
                "config": asdict(cfg),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    **bench.server_info,
                },
                "targets": TARGETS,
                "summary": summary,
                "rounds": [asdict(r) for r in results],
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    console.print(f"results written to {out.relative_to(ROOT)}")
    return 0


def new_namespace() -> str:
    return f"bench{secrets.token_hex(4)}"
