"""``EdgeProtocol``: uvicorn's httptools protocol with deadlines and size limits on what a
client sends, and an access log that never prints a secret.

uvicorn bounds neither how long a client may take to send a request nor how large its head
may be: a client that sends 10 of the 100 body bytes it declared, or a header a byte a
second, holds its connection (and its memory) for as long as it likes. Here, per request:

* the request line and headers must arrive within ``BURROW_API_HEADER_TIMEOUT`` seconds of
  the connection being accepted (the first request) or of the first byte after the previous
  answer on a kept-alive connection;
* the body must arrive within ``BURROW_API_BODY_TIMEOUT`` seconds of the end of the headers;
* the request line (``BURROW_API_MAX_HEADER_LINE``, answered 414), each header line (431),
  the number of headers (``BURROW_API_MAX_HEADERS``, 431) and the whole head
  (``BURROW_API_MAX_HEADER_BYTES``, 431, checked as it arrives) are capped.

A deadline that passes before the response started is answered ``408 Request Timeout``;
either way the connection is closed (the application sees ``http.disconnect``). Limits are
answered the way uvicorn answers a malformed request: a plain-text status, then the
connection is closed.

The access log (``burrow api --access-log``, ``burrow.api.serve``) prints the request's path
with its query string, and a client may put a key there (``?api_key=...``: the API refuses
it, but the line is written first). Values of query parameters whose names look like
secrets (``key``, ``token``, ``secret``, ``password``, ``auth``, ``signature``...) are
replaced by ``***``.

``burrow.api.app.uvicorn_options`` passes it to uvicorn in every way of serving the API.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from burrow.config import Settings

#: Query parameters whose values the access log replaces.
SECRET_PARAMS = re.compile(r"key|token|secret|passw|auth|sig|session|credential", re.I)
REDACTED = "***"
#: Seconds a refused connection stays open for the client to read the answer.
LINGER = 2.0


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """How long and how large a request may be (from ``Settings``)."""

    header_timeout: float
    body_timeout: float
    max_header_line: int
    max_headers: int
    max_header_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        return cls(
            header_timeout=settings.api_header_timeout,
            body_timeout=settings.api_body_timeout,
            max_header_line=settings.api_max_header_line,
            max_headers=settings.api_max_headers,
            max_header_bytes=settings.api_max_header_bytes,
        )


def redact_target(target: str) -> str:
    """``target`` (a path with its query string) with the values of secret-looking query
    parameters replaced: ``/x?api_key=s3cret&limit=5`` -> ``/x?api_key=***&limit=5``."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    parts = []
    for part in query.split("&"):
        name, eq, _value = part.partition("=")
        if SECRET_PARAMS.search(unquote_plus(name)):
            part = f"{name}={REDACTED}" if eq else part
        parts.append(part)
    return f"{path}?{'&'.join(parts)}"


class RedactingAccessLog:
    """What uvicorn's request cycle calls as its access logger: the same ``info`` call with
    the request target (the third argument) passed through ``redact_target``."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def info(self, msg: str, *args: Any) -> None:
        if len(args) > 2 and isinstance(args[2], str):
            args = (*args[:2], redact_target(args[2]), *args[3:])
        self.logger.info(msg, *args)

    def hasHandlers(self) -> bool:  # noqa: N802 - logging.Logger's name
        return self.logger.hasHandlers()


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request over a limit."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class EdgeProtocol(HttpToolsProtocol):
    """See the module docstring. uvicorn builds one per connection."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: EdgeLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.access_logger = RedactingAccessLog(self.access_logger)  # type: ignore[assignment]
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True  # from the first byte of a request until its headers end
        self._head_bytes = 0
        self._header_count = 0
        self._refused: _Refused | None = None
        self._dropping = False

    # -- deadlines -------------------------------------------------------------------------

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, what: str) -> None:
        """A deadline passed: answer 408 unless a response is under way, then close."""
        self._deadline = None
        if self.transport.is_closing():
            return
        self.logger.info("closing a connection: the request %s took too long", what)
        cycle = self.cycle
        if what == "headers":
            # No cycle for this request yet: self.cycle, if any, is the previous one's,
            # which may still be answering (a pipelined request).
            quiet = cycle is not None and not cycle.response_complete
        elif cycle is None:  # an upgrade uvicorn does not take: no cycle was made
            quiet = False
        else:
            quiet = cycle.response_started
            if not cycle.response_complete:
                # As connection_lost would: the application's receive() answers
                # http.disconnect and its send() writes nothing more.
                cycle.disconnected = True
                cycle.message_event.set()
        if not quiet:
            self._write_status(408, f"request {what} not received in time")
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        if self._deadline is None:  # a request pipelined behind one still answering
            self._arm(self.limits.header_timeout, "headers")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.limits.body_timeout, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the websocket protocol takes the connection over
        super().handle_websocket_upgrade()

    # -- sizes -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._dropping:  # refused: the rest of the request is not read
            return
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            # The first bytes after an answered request (uvicorn's keep-alive timer stops
            # here): even bare line ends, which never begin a request, start the clock.
            self._arm(self.limits.header_timeout, "headers")
        in_head = self._in_head
        super().data_received(data)
        # Bytes that arrive while a head is still incomplete: a line without its end is
        # buffered by the parser until it ends, so the whole head is capped here.
        if in_head and self._in_head and not self._dropping:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                limit = self.limits.max_header_bytes
                self._refuse(431, f"request headers larger than {limit} bytes")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_header_line:
            self._stop(414, f"request target longer than {self.limits.max_header_line} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._stop(431, f"more than {self.limits.max_headers} request headers")
        if len(name) + len(value) + 2 > self.limits.max_header_line:
            self._stop(431, f"a header line longer than {self.limits.max_header_line} bytes")
        super().on_header(name, value)

    def _stop(self, status: int, reason: str) -> None:
        """Stop the parser: the exception becomes a parse error, which uvicorn answers
        with ``send_400_response``, where ours takes over."""
        self._refused = _Refused(status, reason)
        raise self._refused

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request the parser refused; ours when a limit stopped it."""
        if self._refused is None:
            super().send_400_response(msg)
            return
        self._refuse(self._refused.status, self._refused.reason)

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` and end the connection gently: a client still sending its
        request would get a reset instead of the answer if we closed with its bytes unread,
        so our side is shut first, what arrives is dropped, and the connection is closed
        ``LINGER`` seconds later (or when the client closes it)."""
        self.logger.info("refusing a request: %s", reason)
        self._disarm()
        self._dropping = True
        if self.cycle is not None and not self.cycle.response_complete:
            # A request pipelined behind one still being answered: no answer can be
            # written in between, so the connection just ends.
            self.transport.close()
            return
        self._write_status(status, reason)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER, self.transport.close)
        else:  # TLS: no half-close
            self.transport.close()

    def _write_status(self, status: int, reason: str) -> None:
        body = f"{status} {http.HTTPStatus(status).phrase}: {reason}\n".encode()
        head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [
            b"content-type: text/plain; charset=utf-8",
            b"content-length: " + str(len(body)).encode(),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
