"""The HTTP edge below the application (burrow.api.protocol), on a real uvicorn server
started the way ``burrow api`` starts it, driven with raw sockets: deadlines for a request's
headers and body, caps on its head, and an access log without secrets."""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn

from burrow import Burrow, Settings
from burrow.api.protocol import EdgeProtocol, redact_target
from tests.api.conftest import serve_port

#: Short deadlines, so a test waits about a second for them; every assertion about them
#: allows many times that (a busy machine).
QUICK = {"api_header_timeout": 1.0, "api_body_timeout": 1.0}
PATIENCE = 20.0


async def until_closed(reader: asyncio.StreamReader, what: str) -> bytes:
    """Everything the server sends until it closes the connection (fail if it does not)."""
    try:
        return await asyncio.wait_for(reader.read(), PATIENCE)
    except TimeoutError:
        pytest.fail(f"{what}: the server kept the connection open for {PATIENCE} s")


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection and return everything until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await until_closed(reader, repr(data[:60]))
    finally:
        writer.close()


HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


# -- deadlines -------------------------------------------------------------------------------


async def test_headers_that_never_end_are_cut_off(api_app: Callable[..., Burrow]) -> None:
    """Connections whose headers stop midway, trickle in a byte at a time, or never start
    get 408 and are closed once the header deadline passes."""
    async with serve_port(api_app(**QUICK)) as port:
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
        for _, writer in connections[:-1]:
            writer.write(HEAD + b"X-Slow: a")
        trickle_reader, trickle = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()

        async def drip() -> None:
            for byte in HEAD + b"X-Drip: " + b"a" * 200:
                if trickle.is_closing():
                    return
                trickle.write(bytes([byte]))
                await asyncio.sleep(0.05)

        dripping = asyncio.create_task(drip())
        try:
            answers = await asyncio.gather(
                *(until_closed(r, "slow headers") for r, _ in connections),
                until_closed(trickle_reader, "trickled headers"),
            )
        finally:
            dripping.cancel()
            for _, writer in [*connections, (None, trickle)]:
                writer.close()
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers
        assert time.monotonic() - started < PATIENCE


async def test_a_body_that_never_completes_is_cut_off(api_app: Callable[..., Burrow]) -> None:
    """A request that sends 10 of the 100 body bytes it declared gets 408 and is closed
    once the body deadline passes (the handler waiting for it sees a disconnect)."""
    async with serve_port(api_app(**QUICK)) as port:
        answer = await exchange(
            port,
            b"POST /api/v1/tasks/add HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"payload"',
        )
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        # The server still answers others.
        assert (await exchange(port, HEAD + b"Connection: close\r\n\r\n")).startswith(
            b"HTTP/1.1 200 "
        )


async def test_the_next_request_on_a_kept_alive_connection_has_its_own_deadline(
    api_app: Callable[..., Burrow],
) -> None:
    """After an answered request, a next one whose headers never end is cut off too, and
    so is a connection kept open with bare line ends (which never begin a request)."""
    async with serve_port(api_app(**QUICK)) as port:
        answer = await exchange(port, HEAD + b"\r\n" + HEAD + b"X-Slow: a")
        first, _, rest = answer.partition(b"HTTP/1.1 408 ")
        assert first.startswith(b"HTTP/1.1 200 "), answer
        assert rest, answer

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD + b"\r\n")

        async def line_ends() -> None:
            while not writer.is_closing():
                await asyncio.sleep(0.2)
                writer.write(b"\r\n")

        feeding = asyncio.create_task(line_ends())
        try:
            answer = await until_closed(reader, "bare line ends")
        finally:
            feeding.cancel()
            writer.close()
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert b"HTTP/1.1 408 " in answer, answer


async def test_timely_requests_are_served(api_app: Callable[..., Burrow]) -> None:
    """A request whose headers and body arrive in pieces within the deadlines is served."""
    async with serve_port(api_app(api_header_timeout=10, api_body_timeout=10)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"payload": {"a": 1, "b": 2}}'
        try:
            writer.write(b"POST /api/v1/tasks/add HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            await asyncio.sleep(0.3)
            writer.write(b"Content-Type: application/json\r\nConnection: close\r\n")
            writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
            await asyncio.sleep(0.3)
            writer.write(body[10:])
            answer = await until_closed(reader, "a timely request")
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 202 "), answer


# -- sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(HEAD + b"X-Big: " + b"a" * 65_536 + b"\r\n\r\n", 431, id="64KiB-line"),
        pytest.param(
            HEAD + b"".join(b"X-H%d: a\r\n" % i for i in range(10_000)) + b"\r\n",
            431,
            id="10000-headers",
        ),
        pytest.param(HEAD + b"X-Endless: " + b"a" * 200_000, 431, id="line-without-end"),
        pytest.param(
            b"GET /healthz?" + b"q" * 20_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            414,
            id="long-target",
        ),
    ],
)
async def test_oversized_request_heads_are_refused(
    api_app: Callable[..., Burrow], request_bytes: bytes, status: int
) -> None:
    """A header line over 8 KiB, more than 100 headers, a head over 64 KiB that has not
    ended, or a request target over 8 KiB is refused and the connection closed."""
    async with serve_port(api_app()) as port:
        answer = await exchange(port, request_bytes)
        assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]


async def test_heads_within_the_limits_are_served(api_app: Callable[..., Burrow]) -> None:
    """A request with 90 headers of about 700 bytes each (62 KiB in all) is served."""
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 700) for i in range(90))
    async with serve_port(api_app()) as port:
        answer = await exchange(port, HEAD + headers + b"Connection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


# -- the access log --------------------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_the_access_log_never_prints_a_key_from_the_url(
    api_app: Callable[..., Burrow],
) -> None:
    """A key sent in the query string is refused, and the access log line of that request
    shows the parameter with its value replaced (other parameters as sent)."""
    secret = "s3cret-key-in-url"  # noqa: S105 - a test value
    lines = _Lines()
    access = logging.getLogger("uvicorn.access")
    async with serve_port(api_app(api_keys=secret), access_log=True) as port:
        access.addHandler(lines)
        try:
            answer = await exchange(
                port,
                b"GET /api/v1/tasks?limit=5&api_key=%s&Access%%5FToken=%s HTTP/1.1\r\n"
                b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n" % (secret.encode(), b"t0k"),
            )
        finally:
            access.removeHandler(lines)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert lines.lines, "no access log line was written"
    assert not any(secret in line or "t0k" in line for line in lines.lines), lines.lines
    assert any(
        "/api/v1/tasks?limit=5&api_key=***&Access%5FToken=*** " in line for line in lines.lines
    ), lines.lines


def test_redact_target_masks_secret_looking_parameters() -> None:
    """Values of parameters named like keys, tokens, secrets or passwords are masked; the
    path and other parameters stay as they were."""
    assert redact_target("/x") == "/x"
    assert redact_target("/x?wait=5&cursor=abc") == "/x?wait=5&cursor=abc"
    assert (
        redact_target("/x?apikey=a&token=b&password=c&sig=d&q=e&flag")
        == "/x?apikey=***&token=***&password=***&sig=***&q=e&flag"
    )


# -- every way of serving uses it ----------------------------------------------------------


def test_serve_and_the_cli_run_uvicorn_with_the_edge_protocol(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``burrow.api.serve`` and ``burrow api`` (which ``burrow up`` starts) pass uvicorn the
    edge protocol with the app's limits, in a form uvicorn can pickle for ``--workers``."""
    from burrow.api import app as api_module
    from burrow.cli import serve as cli_serve

    settings = Settings(namespace="edge-unit", api_header_timeout=3, api_max_headers=50)
    calls: list[dict[str, Any]] = []

    class FakeUvicorn:
        @staticmethod
        def run(*_args: Any, **kwargs: Any) -> None:
            calls.append(kwargs)

    monkeypatch.setattr(uvicorn, "run", FakeUvicorn.run)
    api_module.serve(Burrow(settings=settings))
    cli_serve._run_uvicorn(FakeUvicorn, settings, "127.0.0.1", 8000, 2, False)
    assert len(calls) == 2
    for kwargs in calls:
        protocol = pickle.loads(pickle.dumps(kwargs["http"]))  # noqa: S301 - our own bytes
        assert protocol.func is EdgeProtocol
        assert protocol.keywords["limits"].header_timeout == 3
        assert protocol.keywords["limits"].max_headers == 50
        assert kwargs["proxy_headers"] is False
