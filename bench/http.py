"""``python -m bench.http``: the HTTP API against raw aio-pika, in one run.

Phases (one namespace, quorum queues, everything deleted at the end):

1. **raw publish**: N persistent messages published by aio-pika with confirms, pipelined
   1000 at a time: the baseline rate.
2. **raw latency**: one publish every 2 ms (500/s) to a queue a consumer in the same process
   reads; publish -> delivery p50/p99.
3. **HTTP single**: ``wrk`` (keep-alive, 64 connections, 2 threads) posting
   ``POST /api/v1/tasks/noop`` to ``burrow api`` (``--api-workers`` uvicorn processes,
   default 1) for ``--seconds``; tasks/s = 2xx answers/s.
4. **HTTP batch**: ``wrk`` (4 connections) posting 1000-item bodies to
   ``POST /api/v1/tasks/noop/batch``; tasks/s = 1000 x answers/s.
5. **submit -> start latency**: with ``burrow worker`` running, a steady 500 submits/s over
   keep-alive HTTP for ``--latency-seconds``; latency = the record's ``started_at`` (Redis
   clock) minus the time the request was sent (same machine), p50/p99. The client is a
   minimal asyncio HTTP/1.1 one (pre-built request bytes, 16 keep-alive connections, sends
   scheduled at the fixed rate, each request's send time taken as it is written): httpx
   needed more CPU per request than the server and queued requests in the client (round
   trips of ~100 ms), so it measured itself. The HTTP round trip and how late each send
   left against its schedule are reported too, to show the client keeps up.

``wrk`` comes from Debian's package of that name (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
import uvloop
from rich.console import Console
from rich.table import Table

from bench.harness import RESULTS, ROOT, new_namespace
from bench.noop_app import QUEUE, TASK, make_app
from burrow import Burrow
from burrow.state.keys import Keys

TARGETS = {"single": 0.35, "batch": 0.7, "p50_ms": 2.0, "p99_ms": 5.0}
BATCH = 1000
console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def raw_publish_rate(url: str, queue: str, n: int) -> float:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        body = orjson.dumps({})
        start = time.perf_counter()
        for lo in range(0, n, BATCH):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(
                            body,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=uuid.uuid4().hex,
                            content_type="application/json",
                        ),
                        routing_key=queue,
                    )
                    for _ in range(min(BATCH, n - lo))
                )
            )
        rate = n / (time.perf_counter() - start)
        await channel.queue_delete(queue)
    finally:
        await connection.close()
    return rate


async def raw_latency(url: str, queue: str, seconds: float, rate: float) -> list[float]:
    """Publish (with confirms) at ``rate``/s; delivery time minus send time, in ms."""
    connection = await aio_pika.connect(url)
    latencies: list[float] = []
    try:
        channel = await connection.channel(publisher_confirms=True)
        q = await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            sent = float(message.headers["sent"])  # type: ignore[arg-type]
            latencies.append((time.time() - sent) * 1000)
            await message.ack()

        tag = await q.consume(on_message)
        interval = 1 / rate
        deadline = time.monotonic() + seconds
        next_at = time.monotonic()
        pending: set[asyncio.Task[Any]] = set()
        while time.monotonic() < deadline:
            message = aio_pika.Message(
                b"{}",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={"sent": repr(time.time())},
            )
            task = asyncio.ensure_future(channel.default_exchange.publish(message, queue))
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending)
        await asyncio.sleep(1.0)
        await q.cancel(tag)
        await channel.queue_delete(queue)
    finally:
        await connection.close()
    return latencies


def run_wrk(url: str, body: bytes, connections: int, seconds: int) -> dict[str, float]:
    """Run wrk posting ``body``; returns requests/s and the non-2xx count."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{body_file}", "rb")\n'
            "wrk.body = f:read('*a')\n"
            "f:close()\n"
        )
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if rps is None:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    return {
        "requests_per_s": float(rps.group(1)),
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


class _Connection:
    """One keep-alive HTTP/1.1 connection that sends pre-built requests one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send ``raw`` and read the answer (status line, headers, Content-Length body)."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)


async def submit_latency(
    base: str, app: Burrow, seconds: float, rate: float, connections: int = 16
) -> tuple[list[float], list[float], list[float]]:
    """Submit at ``rate``/s over keep-alive HTTP/1.1; returns (submit->start ms, HTTP round
    trip ms, send lag ms: how late each request left against its schedule).

    The client is a minimal asyncio one (pre-built request bytes, ``connections``
    keep-alive connections, each request's send time taken just before it is written), so
    that the numbers measure the server: a general-purpose client such as httpx costs more
    CPU per request than the API itself and, at 500/s on a small box, queues requests in
    the client (its round trips were ~100 ms against ~1 ms of server time).
    """
    host, port = base.removeprefix("http://").split(":")
    body = b'{"payload": {}}'
    raw = (
        f"POST /api/v1/tasks/{TASK} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    sent: dict[str, float] = {}
    round_trips: list[float] = []
    lags: list[float] = []
    due: asyncio.Queue[float | None] = asyncio.Queue()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        conn = _Connection(reader, writer)
        try:
            while (scheduled := await due.get()) is not None:
                t0 = time.time()
                lags.append((time.monotonic() - scheduled) * 1000)
                status, answer = await conn.request(raw)
                round_trips.append((time.time() - t0) * 1000)
                if status == 202:
                    sent[orjson.loads(answer)["data"]["id"]] = t0
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(0.2)  # let the connections open
    interval = 1 / rate
    deadline = time.monotonic() + seconds
    next_at = time.monotonic()
    while next_at < deadline:
        due.put_nowait(next_at)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    keys = Keys(app.names.namespace)
    redis = app.state._redis()  # the benchmark reads the records directly
    latencies: list[float] = []
    for _ in range(60):
        ids = list(sent)
        pipe = redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hget(keys.task(task_id), "started_at")
        started = await pipe.execute()
        if all(started):
            latencies = [(float(s) - sent[i]) * 1000 for i, s in zip(ids, started, strict=True)]
            break
        await asyncio.sleep(0.5)
    return latencies, round_trips, lags


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    burrow = str(Path(sys.executable).with_name("burrow"))
    with log.open("wb") as out:
        return subprocess.Popen([burrow, *args], cwd=ROOT, env=env, stdout=out, stderr=out)


async def wait_ready(base: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(base + "/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.3)
    raise RuntimeError("the API did not become ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    namespace = new_namespace()
    app = make_app(namespace, "quorum")
    url = app.settings.amqp_url
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "BURROW_NAMESPACE": namespace, "BURROW_QUEUE_TYPE": "quorum"}
    logs = RESULTS / f"logs-http-{namespace}"
    logs.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"namespace": namespace, "args": vars(args)}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        await app.connect(timeout=10)
        await app.declare_queue(QUEUE)
        console.print("raw publish with confirms ...")
        result["raw_publish"] = await raw_publish_rate(url, f"{namespace}.rawpub", args.n)
        console.print("raw publish -> consume latency ...")
        raw_lat = await raw_latency(url, f"{namespace}.rawlat", args.latency_seconds, args.rate)
        result["raw_latency_ms"] = {"p50": pct(raw_lat, 50), "p99": pct(raw_lat, 99)}
        api = spawn(
            ["api", "bench.noop_app:app", "--port", str(port), "--workers", str(args.api_workers)],
            env,
            logs / "api.log",
        )
        processes.append(api)
        await wait_ready(base)
        console.print(f"HTTP single submits (wrk, 64 connections, {args.seconds} s) ...")
        single = await asyncio.to_thread(
            run_wrk, f"{base}/api/v1/tasks/{TASK}", b'{"payload": {}}', 64, args.seconds
        )
        result["http_single"] = single
        await app.broker.purge(app.names.queue(QUEUE))
        console.print(f"HTTP batch submits (wrk, 4 connections, {args.seconds} s) ...")
        body = json.dumps({"items": [{"payload": {}}] * BATCH}).encode()
        batch = await asyncio.to_thread(
            run_wrk, f"{base}/api/v1/tasks/{TASK}/batch", body, 4, args.seconds
        )
        result["http_batch"] = {**batch, "tasks_per_s": batch["requests_per_s"] * BATCH}
        await app.broker.purge(app.names.queue(QUEUE))
        worker = spawn(["worker", "bench.noop_app:app"], env, logs / "worker.log")
        processes.append(worker)
        await asyncio.sleep(2.0)
        console.print(f"submit -> start latency at {args.rate:.0f}/s ...")
        lat, trips, lags = await submit_latency(base, app, args.latency_seconds, args.rate)
        result["submit_to_start_ms"] = {"p50": pct(lat, 50), "p99": pct(lat, 99), "n": len(lat)}
        result["http_round_trip_ms"] = {"p50": pct(trips, 50), "p99": pct(trips, 99)}
        result["client_send_lag_ms"] = {"p50": pct(lags, 50), "p99": pct(lags, 99)}
    finally:
        for proc in processes:
            await asyncio.to_thread(stop, proc)
        await cleanup(app)
    return result


async def cleanup(app: Burrow) -> None:
    with contextlib.suppress(Exception):
        await app.broker.delete_queue(app.names.queue(QUEUE))
        await app.broker.delete_queue(app.names.dlq(QUEUE))
    with contextlib.suppress(Exception):
        redis = app.state._redis()
        async for key in redis.scan_iter(match=f"{app.names.namespace}:*", count=1000):
            await redis.delete(key)
    await app.close()


def report(result: dict[str, Any]) -> Table:
    raw = result["raw_publish"]
    single = result["http_single"]["requests_per_s"]
    batch = result["http_batch"]["tasks_per_s"]
    lat = result["submit_to_start_ms"]
    raw_lat = result["raw_latency_ms"]
    table = Table(title="burrow HTTP API vs raw aio-pika (same run)")
    for col in ("metric", "raw", "burrow", "ratio", "target", "met"):
        table.add_column(col, justify="right" if col not in ("metric", "met") else "left")

    def ok(flag: bool) -> str:
        return "yes" if flag else "NO"

    table.add_row(
        "single submits (tasks/s)",
        f"{raw:,.0f}",
        f"{single:,.0f}",
        f"{single / raw:.2f}x",
        ">= 0.35x",
        ok(single / raw >= TARGETS["single"]),
    )
    table.add_row(
        "batch submits (tasks/s)",
        f"{raw:,.0f}",
        f"{batch:,.0f}",
        f"{batch / raw:.2f}x",
        ">= 0.70x",
        ok(batch / raw >= TARGETS["batch"]),
    )
    table.add_row(
        "submit -> start p50 (ms)",
        f"{raw_lat['p50']:.2f}",
        f"{lat['p50']:.2f}",
        "",
        "<= 2 ms",
        ok(lat["p50"] <= TARGETS["p50_ms"]),
    )
    table.add_row(
        "submit -> start p99 (ms)",
        f"{raw_lat['p99']:.2f}",
        f"{lat['p99']:.2f}",
        "",
        "<= 5 ms",
        ok(lat["p99"] <= TARGETS["p99_ms"]),
    )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="raw publishes (20000)")
    parser.add_argument("--seconds", type=int, default=10, help="each wrk phase (10)")
    parser.add_argument("--rate", type=float, default=500.0, help="latency phase rate (500/s)")
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="(10)")
    parser.add_argument(
        "--api-workers", type=int, default=1, help="uvicorn processes of `burrow api` (1)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian's package)")
    result = uvloop.run(run(args))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"http-{time.strftime('%Y%m%d-%H%M%S')}-{result['namespace']}.json"
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    console.print(report(result))
    rt = result["http_round_trip_ms"]
    lag = result["client_send_lag_ms"]
    console.print(
        f"HTTP round trip at {args.rate:.0f}/s: p50 {rt['p50']:.2f} ms, p99 {rt['p99']:.2f} ms "
        f"(client send lag p50 {lag['p50']:.2f} ms, p99 {lag['p99']:.2f} ms); "
        f"non-2xx single {result['http_single']['non_2xx']:.0f}, "
        f"batch {result['http_batch']['non_2xx']:.0f}; results in {out}"
    )


if __name__ == "__main__":
    main()
