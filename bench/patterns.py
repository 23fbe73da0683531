"""``python -m bench.patterns``: events (fanout) and RPC against raw aio-pika, in one run.

One fresh namespace ``bench<hex>``; raw and burrow phases interleaved in each round; every
queue, exchange and Redis key of the namespace is deleted at the end, also on an error or
Ctrl-C. Results go to ``bench/results/patterns-<time>-<ns>.json``, process logs to
``bench/results/logs-patterns-<ns>/``.

**Where things run.** The clients (publishers, callers) run in this process, on uvloop. The
consumers run in their own processes, one per side and pattern, started once and kept for
all rounds:

* burrow: ``burrow worker bench.patterns:app --subscribers fan1,fan2,fan3 --rpc ''`` (the
  three subscribers in one worker process) and ``burrow worker bench.patterns:app --rpc
  noop --subscribers ''`` (the RPC server); default settings (concurrency and prefetch 64,
  state tracking on).
* raw: ``python -m bench.patterns --role raw-fanout`` (three aio-pika consumers, one channel
  each, prefetch 64, manual ack, the body decoded with orjson) and ``--role raw-rpc`` (an
  aio-pika server, prefetch 64: ack on receipt, decode, reply ``null`` to ``reply_to``
  with the ``correlation_id``, publisher confirms on, as aio-pika's default channel does).

**Fanout to 3 subscribers.** N events are published with confirms to a durable fanout
exchange bound to three durable queues (the queue type burrow uses, with burrow's own
work-queue arguments on the raw side too), pipelined in windows of 1000 (raw:
``exchange.publish``; burrow: ``app.publish``, which also adds ``traceparent`` and a UUID
``message_id``). Rate = N / (first publish -> the last of the 3N deliveries done): raw, its
last ack as the consumer process saw it; burrow, the latest ``finished_at`` of the 3N
per-subscriber records in Redis (each subscriber runs each event under its own record,
deduplicated). The publish rate (N / time to the last confirm) is reported too.

**RPC.** A no-op handler (``@app.rpc("noop")`` vs the raw server). After 100 warm-up
calls: S sequential calls from one caller, then C calls from 64 concurrent callers (each
starts its next call when its last one returned). Latency = call -> reply seen by the
caller, p50/p99; rate = calls / elapsed. burrow: ``app.call`` (Direct Reply-To on one
channel with confirms, request validated against the handler's model, deadline and
``traceparent`` headers); raw: an aio-pika client on one confirm channel consuming
``amq.rabbitmq.reply-to`` (no-ack) and publishing with ``reply_to`` and a
``correlation_id``, futures by correlation id.

CPU of the consumer/server process is sampled every 100 ms (psutil) and interpolated over
each measured window, per 1000 events or calls. Figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import orjson
import uvloop
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from rich.console import Console
from rich.table import Table

from bench.harness import RESULTS, ROOT, Sampler, _log_findings, new_namespace
from burrow import Burrow, Exchange
from burrow.broker.topology import TIERS_MS, Names, work_queue
from burrow.state.keys import Keys

EXCHANGE = Exchange("fan", "fanout")
SUBSCRIBERS = ("fan1", "fan2", "fan3")
RPC = "noop"
RAW_EXCHANGE = "rawfan"
RAW_QUEUES = ("rawfan1", "rawfan2", "rawfan3")
RAW_RPC = "rawrpc"
REPLY_TO = "amq.rabbitmq.reply-to"
PREFETCH = 64  # burrow's default concurrency, which is also its prefetch
WINDOW = 1000
WARMUP = 100
STALL_TIMEOUT = 60.0
JSON = "application/json"

T = TypeVar("T")

console = Console()


def make_app(namespace: str | None = None) -> Burrow:
    """Three shared subscribers on a fanout exchange and a no-op RPC handler."""
    app = Burrow(namespace=namespace)
    for name in SUBSCRIBERS:

        async def handle(event: dict[str, Any]) -> None:
            """Does nothing: the benchmark measures burrow's own overhead."""

        app.subscriber(EXCHANGE, queue=name, name=name)(handle)

    @app.rpc(RPC)
    async def noop(payload: dict[str, Any]) -> None:
        """Does nothing."""

    return app


#: What ``burrow worker bench.patterns:app`` runs (namespace from ``BURROW_NAMESPACE``).
app = make_app()


@dataclass(frozen=True, slots=True)
class Config:
    events: int
    calls: int
    concurrent_calls: int
    concurrency: int
    rounds: int


@dataclass(slots=True)
class Fanout:
    rate: float  # events/s, first publish -> last of the 3N deliveries done
    publish_rate: float  # events/s to the last confirm
    seconds: float
    cpu_per_1000: float  # consumer process, per 1000 events (3000 deliveries)


@dataclass(slots=True)
class Calls:
    rate: float
    p50_ms: float
    p99_ms: float
    cpu_per_1000: float  # server process, per 1000 calls


@dataclass(slots=True)
class Round:
    round: int
    raw_fanout: Fanout
    burrow_fanout: Fanout
    raw_sequential: Calls
    burrow_sequential: Calls
    raw_concurrent: Calls
    burrow_concurrent: Calls


@dataclass(slots=True)
class Child:
    """A consumer or server process, its CPU sampler and its log."""

    name: str
    proc: asyncio.subprocess.Process
    sampler: Sampler
    log: Path
    notes: list[str] = field(default_factory=list)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- the raw processes ------------------------------------------------------------------


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def raw_fanout_consumer(url: str, queues: list[str], n: int, prefetch: int) -> None:
    """Consume ``queues`` (one channel each, manual ack); after each ``n`` deliveries on
    every queue print ``{"last": <time of the last ack>}``; run until SIGTERM."""
    connection = await aio_pika.connect(url)
    total = n * len(queues)
    done = 0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal done
        orjson.loads(message.body)
        await message.ack()
        done += 1
        if done == total:
            done = 0
            sys.stdout.write(orjson.dumps({"last": time.time()}).decode() + "\n")
            sys.stdout.flush()

    try:
        for name in queues:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=prefetch)
            queue = await channel.get_queue(name, ensure=True)
            await queue.consume(on_message, no_ack=False)
        print("ready", flush=True)
        await _until_signal()
    finally:
        await connection.close()


async def raw_rpc_server(url: str, queue_name: str, prefetch: int) -> None:
    """Answer requests on ``queue_name`` with ``null`` until SIGTERM (ack on receipt)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()  # publisher confirms on: aio-pika's default
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "classic"}
        )
        reply = orjson.dumps(None)

        async def on_request(message: AbstractIncomingMessage) -> None:
            await message.ack()
            orjson.loads(message.body)  # the handler: a no-op on the decoded payload
            if message.reply_to:
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        reply, content_type=JSON, correlation_id=message.correlation_id
                    ),
                    routing_key=message.reply_to,
                    mandatory=False,
                )

        await queue.consume(on_request, no_ack=False)
        print("ready", flush=True)
        await _until_signal()
    finally:
        await connection.close()


class RawRpcClient:
    """Direct Reply-To with aio-pika: one confirm channel, futures by correlation id."""

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._channel: aio_pika.abc.AbstractChannel | None = None

    async def start(self, connection: AbstractRobustConnection) -> None:
        self._channel = await connection.channel()
        replies = await self._channel.get_queue(REPLY_TO, ensure=False)
        await replies.consume(self._on_reply, no_ack=True)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message.body)

    async def call(self, routing_key: str, body: bytes, timeout: float = 30.0) -> Any:
        assert self._channel is not None
        corr = uuid.uuid4().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[corr] = future
        try:
            await self._channel.default_exchange.publish(
                aio_pika.Message(body, content_type=JSON, correlation_id=corr, reply_to=REPLY_TO),
                routing_key=routing_key,
            )
            return orjson.loads(await asyncio.wait_for(future, timeout))
        finally:
            self._pending.pop(corr, None)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()


# -- the benchmark ----------------------------------------------------------------------


class Bench:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.namespace = new_namespace()
        self.app = make_app(self.namespace)
        self.names: Names = self.app.names
        self.keys = Keys(self.namespace)
        self.logs = RESULTS / f"logs-patterns-{self.namespace}"
        self.children: dict[str, Child] = {}
        self.connection: AbstractRobustConnection | None = None
        self.raw_client = RawRpcClient()
        self.server_info: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return self.app.settings.amqp_url

    # -- setup --------------------------------------------------------------------------

    async def setup(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        await self.app.connect(timeout=10)
        await self.app.state.open()
        self.connection = await aio_pika.connect_robust(self.url)
        transport: Any = self.connection.transport
        props = getattr(transport.connection, "server_properties", {}) if transport else {}
        version = props.get("version", b"?")
        self.server_info["rabbitmq"] = version.decode() if isinstance(version, bytes) else version
        info = await self.app.state._redis().info("server")
        self.server_info["redis"] = info.get("redis_version", "?")
        await self._declare_raw_fanout()
        await self.app.declare_exchange(EXCHANGE)
        ns = self.namespace
        raw_queues = ",".join(self.names.queue(q) for q in RAW_QUEUES)
        bench = [sys.executable, "-m", "bench.patterns", "--url", self.url]
        await self._spawn(
            "raw-fanout",
            [*bench, "--role", "raw-fanout", "--queues", raw_queues, "--n", str(self.cfg.events)],
        )
        await self._spawn("raw-rpc", [*bench, "--role", "raw-rpc", "--queue", self._raw_rpc])
        burrow = [str(Path(sys.executable).with_name("burrow")), "worker", "bench.patterns:app"]
        json_logs = ["--log-format", "json"]
        await self._spawn(
            "burrow-fanout",
            [*burrow, "--subscribers", ",".join(SUBSCRIBERS), "--rpc", "", *json_logs],
            {"BURROW_NAMESPACE": ns},
        )
        await self._spawn(
            "burrow-rpc",
            [*burrow, "--rpc", RPC, "--subscribers", "", *json_logs],
            {"BURROW_NAMESPACE": ns},
        )
        for name in ("raw-fanout", "raw-rpc"):
            line = await self._readline(name, 30)
            if line != b"ready":
                raise RuntimeError(f"{name} did not start: {line!r}\n{self._tail(name)}")
        for queue in [*(self.names.queue(s) for s in SUBSCRIBERS), self.names.rpc_queue(RPC)]:
            await self._wait_consumer(queue)
        await self.raw_client.start(self.connection)

    @property
    def _raw_rpc(self) -> str:
        return self.names.queue(RAW_RPC)

    async def _declare_raw_fanout(self) -> None:
        """The raw fanout exchange and its three queues, with burrow's work-queue arguments."""
        assert self.connection is not None
        channel = await self.connection.channel()
        exchange = await channel.declare_exchange(
            self.names.exchange(RAW_EXCHANGE), aio_pika.ExchangeType.FANOUT, durable=True
        )
        for q in RAW_QUEUES:
            spec = work_queue(
                self.names,
                q,
                queue_type=self.app.queue_type(SUBSCRIBERS[0]),
                delivery_limit=self.app.settings.delivery_limit,
            )
            queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
            await queue.bind(exchange)
        await channel.close()

    async def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdout=asyncio.subprocess.PIPE if name.startswith("raw") else out,
                stderr=out,
                start_new_session=True,  # Ctrl-C reaches only this process, which stops them
            )
        sampler = Sampler(proc.pid)
        sampler.start()
        self.children[name] = Child(name, proc, sampler, log)

    async def _readline(self, name: str, timeout: float) -> bytes:
        proc = self.children[name].proc
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        except TimeoutError:
            raise RuntimeError(f"{name}: nothing within {timeout} s\n{self._tail(name)}") from None
        if not line:
            raise RuntimeError(f"{name} exited ({proc.returncode})\n{self._tail(name)}")
        return line.strip()

    def _tail(self, name: str) -> str:
        return self.children[name].log.read_text(errors="replace")[-2000:]

    async def _wait_consumer(self, queue: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.app.broker.queue_stats(queue)
            if stats is not None and stats.consumers >= 1:
                return
            for child in self.children.values():
                if child.proc.returncode is not None:
                    raise RuntimeError(f"{child.name} exited\n{self._tail(child.name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no consumer on {queue} within {timeout} s")
            await asyncio.sleep(0.2)

    def _cpu(self, name: str, start: float, end: float) -> float:
        sampler = self.children[name].sampler
        return sampler.cpu_at(end) - sampler.cpu_at(start)

    # -- fanout -------------------------------------------------------------------------

    async def raw_fanout(self) -> Fanout:
        assert self.connection is not None
        n = self.cfg.events
        channel = await self.connection.channel()  # publisher confirms on
        try:
            exchange = await channel.get_exchange(self.names.exchange(RAW_EXCHANGE))
            start, t0 = time.time(), time.perf_counter()
            for lo in range(0, n, WINDOW):
                await asyncio.gather(
                    *(
                        exchange.publish(
                            aio_pika.Message(
                                orjson.dumps({"i": i}),
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                message_id=uuid.uuid4().hex,
                                content_type=JSON,
                            ),
                            routing_key="",
                        )
                        for i in range(lo, min(n, lo + WINDOW))
                    )
                )
            published = time.perf_counter() - t0
        finally:
            await channel.close()
        last = float(orjson.loads(await self._readline("raw-fanout", STALL_TIMEOUT))["last"])
        await asyncio.sleep(0.3)  # one more CPU sample after the window
        return Fanout(
            rate=n / (last - start),
            publish_rate=n / published,
            seconds=last - start,
            cpu_per_1000=self._cpu("raw-fanout", start, last) / n * 1000,
        )

    async def burrow_fanout(self) -> Fanout:
        n = self.cfg.events
        ids: list[str] = []
        start, t0 = time.time(), time.perf_counter()
        for lo in range(0, n, WINDOW):
            ids += await asyncio.gather(
                *(self.app.publish(EXCHANGE, "", {"i": i}) for i in range(lo, min(n, lo + WINDOW)))
            )
        published = time.perf_counter() - t0
        records = [f"{event}:{sub}" for event in ids for sub in SUBSCRIBERS]
        last = await self._all_finished(records)
        await asyncio.sleep(0.3)
        await self._forget(records)
        return Fanout(
            rate=n / (last - start),
            publish_rate=n / published,
            seconds=last - start,
            cpu_per_1000=self._cpu("burrow-fanout", start, last) / n * 1000,
        )

    async def _fields(self, ids: list[str], *fields: str) -> list[list[Any]]:
        redis = self.app.state._redis()  # the benchmark reads the records directly
        rows: list[list[Any]] = []
        for lo in range(0, len(ids), 2000):
            pipe = redis.pipeline(transaction=False)
            for task_id in ids[lo : lo + 2000]:
                pipe.hmget(self.keys.task(task_id), list(fields))
            rows += await pipe.execute()
        return rows

    async def _all_finished(self, records: list[str]) -> float:
        """Wait until every record succeeded; returns the latest ``finished_at``."""
        queues = [self.names.queue(s) for s in SUBSCRIBERS]
        best, best_at = -1, time.monotonic()
        while True:
            if self.children["burrow-fanout"].proc.returncode is not None:
                raise RuntimeError(f"the burrow worker exited\n{self._tail('burrow-fanout')}")
            ready = 0
            for q in queues:
                stats = await self.app.broker.queue_stats(q)
                ready += stats.messages if stats else 0
            progress = -ready
            if ready == 0:
                rows = await self._fields(records, "status", "finished_at")
                done = sum(1 for status, _ in rows if status == b"succeeded")
                if done == len(records):
                    return max(float(f) for _, f in rows)
                progress = done
            if progress > best:
                best, best_at = progress, time.monotonic()
            elif time.monotonic() - best_at > STALL_TIMEOUT:
                raise RuntimeError(f"burrow fanout stalled ({progress} of {len(records)} done)")
            await asyncio.sleep(0.1 if ready else 0.25)

    async def _forget(self, records: list[str]) -> None:
        """Drop a round's records so Redis stays small between rounds."""
        redis = self.app.state._redis()
        for lo in range(0, len(records), 2000):
            chunk = records[lo : lo + 2000]
            await redis.unlink(
                *[self.keys.task(r) for r in chunk], *[self.keys.events(r) for r in chunk]
            )

    # -- rpc ----------------------------------------------------------------------------

    async def calls(self, side: str, concurrent: bool) -> Calls:
        if side == "raw":
            queue, body = self._raw_rpc, orjson.dumps({})

            async def call() -> Any:
                return await self.raw_client.call(queue, body)

            server = "raw-rpc"
        else:

            async def call() -> Any:
                return await self.app.call(RPC, {}, timeout=30)

            server = "burrow-rpc"
        for _ in range(WARMUP):
            await call()
        total = self.cfg.concurrent_calls if concurrent else self.cfg.calls
        callers = self.cfg.concurrency if concurrent else 1
        latencies: list[float] = []
        left = total

        async def caller() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                t = time.perf_counter()
                reply = await call()
                latencies.append((time.perf_counter() - t) * 1000)
                if reply is not None:
                    raise RuntimeError(f"{side} rpc replied {reply!r}, expected null")

        start, t0 = time.time(), time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        elapsed, end = time.perf_counter() - t0, time.time()
        await asyncio.sleep(0.3)
        return Calls(
            rate=total / elapsed,
            p50_ms=pct(latencies, 50),
            p99_ms=pct(latencies, 99),
            cpu_per_1000=self._cpu(server, start, end) / total * 1000,
        )

    # -- run and clean up ---------------------------------------------------------------

    async def setup_and_run(self) -> list[Round]:
        await self.setup()
        return await self.run()

    async def run(self) -> list[Round]:
        rounds: list[Round] = []
        for r in range(1, self.cfg.rounds + 1):
            console.print(f"round {r}: fanout raw ...", end=" ")
            raw_fan = await self.raw_fanout()
            console.print("burrow ...", end=" ")
            await asyncio.sleep(0.5)
            burrow_fan = await self.burrow_fanout()
            console.print("| rpc sequential raw ...", end=" ")
            await asyncio.sleep(0.5)
            raw_seq = await self.calls("raw", concurrent=False)
            console.print("burrow ...", end=" ")
            burrow_seq = await self.calls("burrow", concurrent=False)
            console.print(f"| rpc x{self.cfg.concurrency} raw ...", end=" ")
            raw_conc = await self.calls("raw", concurrent=True)
            console.print("burrow", end=" ")
            burrow_conc = await self.calls("burrow", concurrent=True)
            result = Round(r, raw_fan, burrow_fan, raw_seq, burrow_seq, raw_conc, burrow_conc)
            rounds.append(result)
            console.print(
                f"\n  fanout {raw_fan.rate:,.0f} / {burrow_fan.rate:,.0f} events/s; "
                f"rpc seq {raw_seq.rate:,.0f} / {burrow_seq.rate:,.0f} calls/s; "
                f"rpc x{self.cfg.concurrency} {raw_conc.rate:,.0f} / {burrow_conc.rate:,.0f} "
                "calls/s (raw / burrow)"
            )
            await asyncio.sleep(0.5)
        return rounds

    async def cleanup(self) -> None:
        """Stop the processes; delete every queue, exchange and Redis key of the namespace."""
        await self.stop_children()
        with contextlib.suppress(Exception):
            await self.raw_client.close()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self._delete_topology()
            with contextlib.suppress(Exception):
                await self.connection.close()
        with contextlib.suppress(Exception):
            redis = self.app.state._redis()
            batch = [k async for k in redis.scan_iter(match=f"{self.namespace}:*", count=1000)]
            for lo in range(0, len(batch), 1000):
                await redis.unlink(*batch[lo : lo + 1000])
        with contextlib.suppress(Exception):
            await self.app.close()

    async def stop_children(self) -> None:
        for child in self.children.values():
            await child.sampler.stop()
            if child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        for child in self.children.values():
            try:
                await asyncio.wait_for(child.proc.wait(), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
            if child.name.startswith("burrow"):
                child.notes = _log_findings(child.log)

    async def _delete_topology(self) -> None:
        assert self.connection is not None
        n = self.names
        queues = [
            *(q for s in (*SUBSCRIBERS, *RAW_QUEUES) for q in (n.queue(s), n.dlq(s))),
            n.rpc_queue(RPC),
            self._raw_rpc,
            *(n.delay_queue(t) for t in TIERS_MS),
        ]
        exchanges = [
            n.exchange(EXCHANGE.name),
            n.exchange(RAW_EXCHANGE),
            n.delay_exchange,
            n.control_exchange,
        ]
        channel = await self.connection.channel()
        for q in queues:
            try:
                await channel.queue_delete(q)
            except Exception:
                channel = await self.connection.channel()  # the broker closed the channel
        for e in exchanges:
            try:
                await channel.exchange_delete(e)
            except Exception:
                channel = await self.connection.channel()
        with contextlib.suppress(Exception):
            await channel.close()


# -- summary ----------------------------------------------------------------------------


def summarize(rounds: list[Round]) -> dict[str, Any]:
    """Medians over rounds: ``{"fanout"|"sequential"|"concurrent": {"raw"|"burrow": {...}}}``."""
    out: dict[str, Any] = {}
    for phase, metrics in (
        ("fanout", ("rate", "publish_rate", "cpu_per_1000")),
        ("sequential", ("rate", "p50_ms", "p99_ms", "cpu_per_1000")),
        ("concurrent", ("rate", "p50_ms", "p99_ms", "cpu_per_1000")),
    ):
        out[phase] = {
            side: {
                k: statistics.median(getattr(getattr(r, f"{side}_{phase}"), k) for r in rounds)
                for k in metrics
            }
            for side in ("raw", "burrow")
        }
    return out


def render(summary: dict[str, Any], cfg: Config, queue_type: str) -> Table:
    table = Table(
        title=f"events and RPC vs raw aio-pika ({queue_type}; {cfg.rounds} rounds, medians)",
        caption="ratio = burrow/raw (rates: higher better; ms, CPU: lower)",
    )
    for col in ("metric", "raw", "burrow", "ratio"):
        table.add_column(col, justify="left" if col == "metric" else "right")

    def row(label: str, raw: float, burrow: float, fmt: str, end: bool = False) -> None:
        table.add_row(label, fmt.format(raw), fmt.format(burrow), f"{burrow / raw:.2f}x")
        if end:
            table.add_section()

    fan = summary["fanout"]
    row("fanout to 3 subscribers (events/s)", fan["raw"]["rate"], fan["burrow"]["rate"], "{:,.0f}")
    row(
        "  publish, confirmed (events/s)",
        fan["raw"]["publish_rate"],
        fan["burrow"]["publish_rate"],
        "{:,.0f}",
    )
    row(
        "  consumer CPU s / 1000 events",
        fan["raw"]["cpu_per_1000"],
        fan["burrow"]["cpu_per_1000"],
        "{:.3f}",
        end=True,
    )
    for mode, label in (
        ("sequential", "1 caller"),
        ("concurrent", f"{cfg.concurrency} concurrent"),
    ):
        s = summary[mode]
        row(f"RPC {label} (calls/s)", s["raw"]["rate"], s["burrow"]["rate"], "{:,.0f}")
        row("  latency p50 (ms)", s["raw"]["p50_ms"], s["burrow"]["p50_ms"], "{:.2f}")
        row("  latency p99 (ms)", s["raw"]["p99_ms"], s["burrow"]["p99_ms"], "{:.2f}")
        row(
            "  server CPU s / 1000 calls",
            s["raw"]["cpu_per_1000"],
            s["burrow"]["cpu_per_1000"],
            "{:.3f}",
            end=True,
        )
    return table


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived before the benchmark finished."""


async def until_signal(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` until it ends or SIGINT/SIGTERM arrives, then cancel it.

    Not the event loop's own Ctrl-C handling (one cancel of the main task): a cancel that
    lands inside a redis-py or aiormq call can be swallowed (redis/redis-py#2028), and the
    run would go on. Here the cancel is repeated until the task ends (at most ~10 s), and
    the caller cleans up either way.

    Raises:
        Interrupted: a signal arrived first.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if not stop.is_set():
        return task.result()
    console.print("\n[yellow]interrupted[/yellow]: stopping and cleaning up ...")
    for _ in range(20):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.5)
        if done:
            break
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: the interruption is what gets reported
    raise Interrupted


async def main_async(cfg: Config) -> int:
    bench = Bench(cfg)
    queue_type = bench.app.queue_type(SUBSCRIBERS[0])
    console.print(
        f"namespace [bold]{bench.namespace}[/bold]: {cfg.events} events, {cfg.calls} sequential "
        f"and {cfg.concurrent_calls} concurrent calls ({cfg.concurrency} callers), "
        f"{cfg.rounds} rounds, {os.cpu_count()} CPUs"
    )
    rounds: list[Round] = []
    try:
        rounds = await until_signal(bench.setup_and_run())
    except Interrupted:
        rounds = []
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(bench.cleanup())
        console.print(f"cleaned up namespace {bench.namespace}")
    if not rounds:
        console.print("[yellow]interrupted: no results[/yellow]")
        return 130
    summary = summarize(rounds)
    console.print(render(summary, cfg, queue_type))
    notes = {c.name: c.notes for c in bench.children.values() if c.notes}
    for name, found in notes.items():
        console.print(f"[yellow]{name} logged[/yellow]: {'; '.join(found)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"patterns-{time.strftime('%Y%m%d-%H%M%S')}-{bench.namespace}.json"
    out.write_bytes(
        orjson.dumps(
            {
                "config": asdict(cfg),
                "namespace": bench.namespace,
                "queue_type": queue_type,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    **bench.server_info,
                },
                "summary": summary,
                "rounds": [asdict(r) for r in rounds],
                "worker_log_notes": notes,
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    console.print(f"results written to {out.relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.patterns",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=5000, help="events per fanout phase (5000)")
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls (2000)")
    parser.add_argument(
        "--concurrent-calls",
        type=int,
        default=15000,
        help="calls from the concurrent callers (15000)",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent callers (64)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    # The raw consumer and server processes (started by the benchmark itself).
    parser.add_argument("--role", choices=("raw-fanout", "raw-rpc"), help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--queues", default="", help=argparse.SUPPRESS)
    parser.add_argument("--queue", default="", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "raw-fanout":
        uvloop.run(raw_fanout_consumer(args.url, args.queues.split(","), args.n, PREFETCH))
        return
    if args.role == "raw-rpc":
        uvloop.run(raw_rpc_server(args.url, args.queue, PREFETCH))
        return
    if min(args.events, args.calls, args.concurrent_calls, args.concurrency, args.rounds) < 1:
        parser.error("every count must be positive")
    cfg = Config(args.events, args.calls, args.concurrent_calls, args.concurrency, args.rounds)
    raise SystemExit(uvloop.run(main_async(cfg)))


if __name__ == "__main__":
    main()
