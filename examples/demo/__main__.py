"""``python -m examples.demo`` (what ``make up`` runs): ``burrow up`` plus a few demo tasks.

Starts ``burrow up examples.demo.app:app`` (the HTTP API and a worker), submits some tasks
over HTTP (sums, a sync thumbnail job, charges that sometimes fail and retry, one that is
rejected and compensated), prints how each ended, then keeps everything running until
Ctrl-C. Set ``PORT`` to use another port than 8000.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

APP = "examples.demo.app:app"
console = Console()


def call(base: str, method: str, path: str, body: Any = None, timeout: float = 40) -> Any:
    """One HTTP call; returns the envelope's ``data`` (errors come back as the envelope)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL is our own local API
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())["data"]
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"burrow up exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2):  # noqa: S310
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise SystemExit(f"the API did not become ready within {timeout:.0f} s")


def demo(base: str) -> None:
    submits: list[tuple[str, dict[str, Any]]] = [("add", {"a": i, "b": i * i}) for i in range(3)]
    submits.append(("thumbnail", {"image": "cat.png", "width": 128}))
    submits += [("charge", {"order_id": f"o-{i}", "amount": 10 * i}) for i in range(1, 5)]
    submits.append(("charge", {"order_id": "o-big", "amount": 5000}))
    ids = [
        (name, call(base, "POST", f"/api/v1/tasks/{name}", {"payload": p})["id"])
        for name, p in submits
    ]
    table = Table("task", "id", "status", "attempts", "result / error")
    for name, task_id in ids:
        record = call(base, "GET", f"/api/v1/tasks/{task_id}?wait=30")
        error = record.get("error")
        detail = record.get("result") if not error else error.get("message")
        table.add_row(
            name, task_id[:8], record.get("status", "?"), str(record.get("attempts")), str(detail)
        )
    console.print(table)


def main() -> None:
    port = os.environ.get("PORT", "8000")
    base = f"http://127.0.0.1:{port}"

    def stop(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    proc = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "burrow", "up", APP, "--port", port], start_new_session=True
    )
    try:
        wait_ready(base, proc)
        demo(base)
        console.print(
            f"Try it: open [bold]{base}/docs[/bold], or\n"
            f"  curl -s -X POST {base}/api/v1/tasks/add "
            '-H \'Content-Type: application/json\' -d \'{"payload": {"a": 2, "b": 3}}\'\n'
            f"  .venv/bin/burrow queues {APP}\n"
            "Ctrl-C stops everything."
        )
        proc.wait()
    except KeyboardInterrupt:
        console.print("stopping ...")  # the terminal sent SIGINT to `burrow up` as well
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
