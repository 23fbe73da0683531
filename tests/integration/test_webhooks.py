"""Webhooks on the real RabbitMQ and Redis, posted to a real HTTP receiver on 127.0.0.1.

The receiver is a threaded ``http.server`` with a script of status codes per path. It
verifies every signature on its own (HMAC-SHA256 over ``{id}.{timestamp}.{body}`` with the
key behind the ``whsec_`` secret), independently of ``burrow.webhooks.signing``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import BaseModel

from burrow import Burrow, Reject, TaskStatus
from burrow.tasks.callbacks import CallbackRefused
from burrow.tasks.record import TaskRecord, WebhookOutcome
from tests.conftest import eventually, running_worker

pytestmark = pytest.mark.integration

KEY = secrets.token_bytes(32)
SECRET = "whsec_" + base64.b64encode(KEY).decode()


@dataclass
class Hit:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    """A local webhook receiver; ``script(path, [codes])`` sets the answers (the last one
    repeats; 200 when unscripted)."""

    port: int = 0
    hits: list[Hit] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, codes: list[int]) -> None:
        self.scripts[path] = codes

    def on(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    def answer(self, path: str, n: int) -> int:
        codes = self.scripts.get(path, [200])
        return codes[min(n, len(codes) - 1)]


def _verify(headers: dict[str, str], body: bytes) -> bool:
    msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    signed = f"{msg_id}.{stamp}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    offered = headers.get("webhook-signature", "").split(" ")
    return bool(msg_id and stamp.isdigit()) and any(
        hmac.compare_digest(expected, o) for o in offered
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with rec.lock:
                n = len([h for h in rec.hits if h.path == self.path])
                rec.hits.append(Hit(self.path, headers, body, _verify(headers, body)))
            code = rec.answer(self.path, n)
            self.send_response(code)
            if 300 <= code < 400:
                self.send_header("Location", rec.url("/redirect-target"))
            if code == 429:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


class Pair(BaseModel):
    a: int
    b: int


def _app(make_app: Callable[..., Burrow], **overrides: Any) -> Burrow:
    """An app with webhooks on, the receiver's address allowed, and fast retries."""
    values: dict[str, Any] = {
        "webhook_secret": SECRET,
        "callback_allowlist": "127.0.0.1",
        "webhook_retry_base": 1.0,
        "webhook_retry_cap": 2.0,
    }
    values.update(overrides)
    make_app.extra_queues.add("webhooks")  # type: ignore[attr-defined]
    app = make_app(**values)

    @app.task
    async def add(p: Pair) -> int:
        return p.a + p.b

    @app.task
    async def refuse(p: Pair) -> None:
        raise Reject("no")

    return app


async def _final_webhook(app: Burrow, task_id: str, timeout: float = 30) -> TaskRecord:
    """The task's record once its webhook is delivered or failed."""

    async def check() -> TaskRecord | None:
        record = await app.get(task_id)
        hook = record.webhook
        return record if hook is not None and hook.status != "pending" else None

    record: TaskRecord = await eventually(check, timeout=timeout, what="webhook outcome")
    return record


def _hook(record: TaskRecord) -> WebhookOutcome:
    assert record.webhook is not None
    return record.webhook


async def test_success_posts_a_signed_record(
    make_app: Callable[..., Burrow], receiver: Receiver
) -> None:
    """A task that succeeds gets one signed POST with its record; the outcome is recorded
    as delivered on attempt 1 with the receiver's status code."""
    app = _app(make_app)
    async with running_worker(app):
        handle = await app.submit("add", {"a": 1, "b": 2}, callback_url=receiver.url("/ok"))
        record = await _final_webhook(app, handle.id)
    hits = receiver.on("/ok")
    assert len(hits) == 1
    hit = hits[0]
    assert hit.verified
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["host"] == f"127.0.0.1:{receiver.port}"
    event = json.loads(hit.body)
    assert event["type"] == "task.succeeded"
    assert event["data"]["id"] == handle.id
    assert event["data"]["status"] == "succeeded"
    assert event["data"]["result"] == 3
    assert event["timestamp"]
    hook = _hook(record)
    assert hook.id == hit.headers["webhook-id"]
    assert (hook.status, hook.attempts, hook.last_status_code) == ("delivered", 1, 200)
    assert record.status is TaskStatus.SUCCEEDED


async def test_two_failures_then_success_keeps_the_id(
    make_app: Callable[..., Burrow], receiver: Receiver
) -> None:
    """500, 500, 200: delivered on attempt 3, every attempt with the same webhook-id, a
    valid signature, the same body, and fresh timestamps (backoff >= 0.75 s apart)."""
    receiver.script("/flaky", [500, 500, 200])
    app = _app(make_app)
    async with running_worker(app):
        handle = await app.submit("add", {"a": 2, "b": 2}, callback_url=receiver.url("/flaky"))
        record = await _final_webhook(app, handle.id)
    hits = receiver.on("/flaky")
    assert len(hits) == 3
    assert all(h.verified for h in hits)
    assert len({h.headers["webhook-id"] for h in hits}) == 1
    assert len({h.body for h in hits}) == 1
    stamps = [int(h.headers["webhook-timestamp"]) for h in hits]
    assert stamps == sorted(stamps)
    assert stamps[2] > stamps[0]
    hook = _hook(record)
    assert (hook.status, hook.attempts, hook.last_status_code) == ("delivered", 3, 200)


async def test_429_retry_after_is_honoured(
    make_app: Callable[..., Burrow], receiver: Receiver
) -> None:
    """A 429 with ``Retry-After: 1`` is retried after that second, not after the (here
    one-minute) backoff: delivered on attempt 2."""
    receiver.script("/busy", [429, 200])
    app = _app(make_app, webhook_retry_base=60.0, webhook_retry_cap=120.0)
    async with running_worker(app):
        handle = await app.submit("add", {"a": 1, "b": 1}, callback_url=receiver.url("/busy"))
        record = await _final_webhook(app, handle.id, timeout=30)
    hook = _hook(record)
    assert (hook.status, hook.attempts) == ("delivered", 2)
    assert len(receiver.on("/busy")) == 2


async def test_410_gives_up_at_once(make_app: Callable[..., Burrow], receiver: Receiver) -> None:
    """410 Gone disables the delivery: failed after one attempt, no retry."""
    receiver.script("/gone", [410, 200])
    app = _app(make_app)
    async with running_worker(app):
        handle = await app.submit("add", {"a": 1, "b": 2}, callback_url=receiver.url("/gone"))
        record = await _final_webhook(app, handle.id)
    hook = _hook(record)
    assert (hook.status, hook.attempts, hook.last_status_code) == ("failed", 1, 410)
    assert hook.last_error == "gone"
    assert len(receiver.on("/gone")) == 1


async def test_redirect_is_not_followed(
    make_app: Callable[..., Burrow], receiver: Receiver
) -> None:
    """A 302 is never followed (not even to an allowed address): failed
    ``redirect_blocked``, and the redirect target gets no request."""
    receiver.script("/moved", [302])
    app = _app(make_app)
    async with running_worker(app):
        handle = await app.submit("add", {"a": 1, "b": 2}, callback_url=receiver.url("/moved"))
        record = await _final_webhook(app, handle.id)
    hook = _hook(record)
    assert (hook.status, hook.last_error, hook.last_status_code) == (
        "failed",
        "redirect_blocked",
        302,
    )
    assert len(receiver.on("/moved")) == 1
    assert receiver.on("/redirect-target") == []


async def test_giving_up_leaves_the_task_status_alone(
    make_app: Callable[..., Burrow], receiver: Receiver
) -> None:
    """A receiver that always fails: the webhook fails after ``webhook_max_attempts``,
    and the task stays succeeded."""
    receiver.script("/down", [503])
    app = _app(make_app, webhook_max_attempts=2, webhook_retry_base=0.2, webhook_retry_cap=0.5)
    async with running_worker(app):
        handle = await app.submit("add", {"a": 1, "b": 2}, callback_url=receiver.url("/down"))
        record = await _final_webhook(app, handle.id)
    hook = _hook(record)
    assert (hook.status, hook.attempts, hook.last_error) == ("failed", 2, "http_503")
    assert len(receiver.on("/down")) == 2
    assert record.status is TaskStatus.SUCCEEDED
    assert record.result == 3


async def test_dead_task_gets_a_failed_event(
    make_app: Callable[..., Burrow], receiver: Receiver
) -> None:
    """A task that dies gets ``task.failed`` with its error."""
    app = _app(make_app)
    async with running_worker(app):
        handle = await app.submit("refuse", {"a": 1, "b": 2}, callback_url=receiver.url("/dead"))
        record = await _final_webhook(app, handle.id)
    assert record.status is TaskStatus.FAILED
    event = json.loads(receiver.on("/dead")[0].body)
    assert event["type"] == "task.failed"
    assert event["data"]["error"]["reason"] == "rejected"


async def test_cancelled_task_gets_its_webhook(
    make_app: Callable[..., Burrow], receiver: Receiver
) -> None:
    """Cancelling a delayed task sends ``task.cancelled`` now, not when the delay ends."""
    app = _app(make_app)
    async with running_worker(app):
        handle = await app.submit(
            "add", {"a": 1, "b": 2}, delay=120, callback_url=receiver.url("/cancelled")
        )
        await app.cancel(handle.id)
        record = await _final_webhook(app, handle.id)
    assert _hook(record).status == "delivered"
    event = json.loads(receiver.on("/cancelled")[0].body)
    assert event["type"] == "task.cancelled"
    assert event["data"]["status"] == "cancelled"


async def test_redelivery_of_a_finished_task_enqueues_a_missing_webhook(
    make_app: Callable[..., Burrow], receiver: Receiver
) -> None:
    """The crash between "record terminal" and "webhook published": the record says
    succeeded but no webhook was enqueued. The worker that meets the message again acks it
    unrun and enqueues the webhook."""
    app = _app(make_app)
    handle = await app.submit("add", {"a": 1, "b": 2}, callback_url=receiver.url("/late"))
    assert await app.state.finish(handle.id, token="", status=TaskStatus.SUCCEEDED, result=b"7")
    async with running_worker(app):
        record = await _final_webhook(app, handle.id)
    assert _hook(record).status == "delivered"
    event = json.loads(receiver.on("/late")[0].body)
    assert (event["type"], event["data"]["result"]) == ("task.succeeded", 7)
    assert record.attempts == 0  # never run


async def test_app_wide_default_callback(
    make_app: Callable[..., Burrow], receiver: Receiver
) -> None:
    """``BURROW_CALLBACK_URL`` covers tasks submitted without a callback_url."""
    app = _app(make_app, callback_url=receiver.url("/default"))
    async with running_worker(app):
        handle = await app.submit("add", {"a": 5, "b": 5})
        record = await _final_webhook(app, handle.id)
    assert _hook(record).status == "delivered"
    assert json.loads(receiver.on("/default")[0].body)["data"]["result"] == 10


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost/hook",
        "http://2130706433/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "file:///etc/passwd",
        "http://good.example@127.0.0.1/",
        "https://example.com:6379/",
    ],
)
async def test_submit_refuses_unsafe_callbacks(make_app: Callable[..., Burrow], url: str) -> None:
    """``Burrow.submit`` applies the SSRF rules before anything is written or published."""
    app = _app(make_app, callback_allowlist="")
    with pytest.raises(CallbackRefused):
        await app.submit("add", {"a": 1, "b": 2}, callback_url=url)
    assert (await app.list_tasks()).items == []


async def test_submit_refuses_callbacks_without_a_secret(
    make_app: Callable[..., Burrow], receiver: Receiver
) -> None:
    """Webhooks are always signed: without BURROW_WEBHOOK_SECRET a callback is refused."""
    app = _app(make_app, webhook_secret="")
    with pytest.raises(CallbackRefused, match="BURROW_WEBHOOK_SECRET"):
        await app.submit("add", {"a": 1, "b": 2}, callback_url=receiver.url("/x"))


async def test_delivery_checks_ssrf_again(
    make_app: Callable[..., Burrow], receiver: Receiver
) -> None:
    """Allowed when submitted, refused when delivered (the worker's allowlist no longer
    covers 127.0.0.1): failed ``ssrf_blocked``, no request reached the receiver, and the
    task still succeeded."""
    submitter = _app(make_app)
    worker_app = _app(make_app, callback_allowlist="")
    handle = await submitter.submit("add", {"a": 1, "b": 2}, callback_url=receiver.url("/ssrf"))
    async with running_worker(worker_app):
        record = await _final_webhook(worker_app, handle.id)
    hook = _hook(record)
    assert (hook.status, hook.last_error, hook.attempts) == ("failed", "ssrf_blocked", 1)
    assert hook.last_status_code is None
    assert receiver.on("/ssrf") == []
    assert record.status is TaskStatus.SUCCEEDED
