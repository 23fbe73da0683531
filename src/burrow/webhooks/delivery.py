"""Deliver webhooks: the consumer of ``{ns}.webhooks`` that every worker runs.

One message is one attempt:

1. not due yet (a retry waiting out its backoff): send it on through a delay tier, ack;
2. already delivered or given up (a duplicate): ack unsent;
3. SSRF check after DNS resolution: resolve the host once, refuse if any address is not
   public (unless allow-listed), and connect to the vetted address, with the URL's host as
   ``Host`` header and TLS server name, so a DNS answer that changes between the check and
   the connect cannot reach another address (``ssrf_blocked``, final);
4. POST the body, signed (Standard Webhooks), without following redirects, under a
   connect timeout and a total timeout, reading at most 64 KiB of the response;
5. judge the status (``events.judge``): delivered, given up (redirect, 410, or the last
   attempt), or retried: a copy with the next attempt number goes through the delay tiers
   (exponential backoff with jitter, or the receiver's ``Retry-After`` on 429), confirmed
   before this message is acked;
6. record the outcome in the task record's ``webhook`` field (never the task's status).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from burrow import tracing
from burrow.broker.amqp import Delivery
from burrow.broker.topology import TIER_BASE_MS, Names
from burrow.config import Settings
from burrow.errors import BrokerError, ConfigurationError, StateError
from burrow.state.redis import RedisStateStore
from burrow.tasks.callbacks import CallbackRefused, parse_allowlist
from burrow.tasks.envelope import (
    HDR_ATTEMPT,
    HDR_ETA,
    HDR_TRACEPARENT,
    eta_header,
    valid_traceparent,
)
from burrow.tasks.headers import republishable
from burrow.tasks.record import WebhookOutcome
from burrow.tasks.retry import RetryPolicy
from burrow.webhooks.events import (
    DELIVERED,
    FAILED,
    HDR_WEBHOOK_TASK,
    HDR_WEBHOOK_URL,
    PENDING,
    RESPONSE_CAP,
    WEBHOOK_MESSAGE_TYPE,
    WEBHOOK_QUEUE,
    Verdict,
    judge,
)
from burrow.webhooks.signing import parse_secrets, webhook_headers
from burrow.webhooks.urls import ResolutionFailed, Vetted, vet
from burrow.worker._inflight import InFlight
from burrow.worker.publishing import Republisher

if TYPE_CHECKING:
    from burrow.metrics import WorkerMetrics

log = structlog.get_logger("burrow.webhooks")

USER_AGENT = "burrow-webhooks/1"
#: Pause before requeueing a message when Redis or the broker failed mid-way.
FAILURE_PAUSE = 1.0


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One attempt: the verdict, the HTTP status (None when no response) and a detail."""

    verdict: Verdict
    status_code: int | None = None
    detail: str | None = None


@dataclass(slots=True)
class WebhookStats:
    """Counters of one worker's webhook deliveries."""

    attempts: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    duplicates: int = 0


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _retry(error: str, detail: str) -> AttemptResult:
    return AttemptResult(Verdict(False, False, error), detail=detail[:500])


class WebhookDeliverer:
    """Delivers the webhook messages of one worker process."""

    def __init__(
        self,
        *,
        settings: Settings,
        state: RedisStateStore,
        republisher: Republisher,
        names: Names,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        """Raises: ConfigurationError: no or a malformed ``BURROW_WEBHOOK_SECRET``, or a
        malformed ``BURROW_CALLBACK_ALLOWLIST``."""
        self._keys = parse_secrets(settings.webhook_secret)
        if not self._keys:
            raise ConfigurationError("webhook delivery needs BURROW_WEBHOOK_SECRET")
        self._allowlist = parse_allowlist(settings.callback_allowlist)
        self._state = state
        self._out = republisher
        self._queue = names.queue(WEBHOOK_QUEUE)
        self._max_attempts = settings.webhook_max_attempts
        self._cap = settings.webhook_retry_cap
        self._policy = RetryPolicy(
            max_retries=min(25, settings.webhook_max_attempts - 1),
            base=settings.webhook_retry_base,
            factor=2.0,
            cap=settings.webhook_retry_cap,
            jitter=0.25,
        )
        self._total = settings.webhook_timeout
        import httpx  # here, not at module level: a worker without webhooks never loads it

        # No redirects, no proxy variables from the environment, and no kept-alive
        # connections: each attempt connects to the address it vetted, and a pooled TLS
        # connection must never be reused for another host name on the same address.
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(
                settings.webhook_timeout, connect=settings.webhook_connect_timeout
            ),
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self._work = InFlight()
        self.stats = WebhookStats()
        self._metrics = metrics  # burrow_webhook_deliveries_total{outcome}; None: off

    async def aclose(self) -> None:
        await self._client.aclose()

    async def wait_idle(self, timeout: float) -> bool:
        return await self._work.wait_idle(timeout)

    async def handle(self, delivery: Delivery) -> None:
        """Handle one webhook message (see the module docstring); settles it."""
        self._work.enter()
        try:
            await self._handle(delivery)
        except (StateError, BrokerError) as exc:
            # Nothing acked: the message comes back (after a pause, so an outage of Redis
            # or the broker is not a hot loop).
            log.warning("webhook delivery requeued", error=str(exc))
            await asyncio.sleep(FAILURE_PAUSE)
            try:
                await delivery.nack(requeue=True)
            except BrokerError as nack_error:
                log.debug("nack failed", error=str(nack_error))
        finally:
            self._work.leave()

    async def _handle(self, delivery: Delivery) -> None:
        headers = delivery.headers
        url = _text(headers.get(HDR_WEBHOOK_URL))
        task_id = _text(headers.get(HDR_WEBHOOK_TASK))
        wid = delivery.message_id or ""
        attempt = _int(headers.get(HDR_ATTEMPT)) or 1
        if not (url and task_id and wid):
            log.warning("unreadable webhook message dropped", message_id=wid)
            await delivery.ack()
            return
        eta_ms = _int(headers.get(HDR_ETA))
        if eta_ms is not None:
            remaining = eta_ms / 1000 - time.time()
            if remaining > TIER_BASE_MS / 1000:
                await self._publish(delivery, republishable(headers), eta_ms / 1000)
                await delivery.ack()
                return
            if remaining > 0:
                await asyncio.sleep(remaining)
        current = await self._state.webhook_state(task_id)
        if current is not None and current.id == wid and current.status != PENDING:
            self.stats.duplicates += 1
            await delivery.ack()
            return
        self.stats.attempts += 1
        traceparent = valid_traceparent(headers.get(HDR_TRACEPARENT))
        with tracing.webhook_span(traceparent, task_id=task_id, attempt=attempt):
            result = await self.attempt(url, wid, delivery.body)
            if result.status_code is not None:
                tracing.set_attribute("http.response.status_code", result.status_code)
            if not result.verdict.delivered:
                tracing.record_failure(result.verdict.error or "error", result.detail or "")
        await self._settle(delivery, task_id, wid, attempt, result)

    async def attempt(self, url: str, wid: str, body: bytes) -> AttemptResult:
        """One signed POST of ``body`` to ``url`` (vetted and pinned); never raises."""
        import httpx

        try:
            vetted = await vet(url, self._allowlist)
        except CallbackRefused as exc:
            return AttemptResult(Verdict(False, True, "ssrf_blocked"), detail=str(exc))
        except ResolutionFailed as exc:
            return _retry("dns_error", str(exc))
        try:
            async with asyncio.timeout(self._total):
                status, retry_after = await self._post(vetted, wid, body)
        except (TimeoutError, httpx.TimeoutException) as exc:
            return _retry("timeout", f"no complete response within the timeout ({exc!r})")
        except httpx.ConnectError as exc:
            return _retry("connect_error", str(exc) or type(exc).__name__)
        except httpx.HTTPError as exc:
            return _retry("http_error", f"{type(exc).__name__}: {exc}")
        except OSError as exc:
            return _retry("connect_error", f"{type(exc).__name__}: {exc}")
        verdict = judge(status, retry_after, now=time.time(), cap=self._cap)
        return AttemptResult(verdict, status_code=status)

    async def _post(self, vetted: Vetted, wid: str, body: bytes) -> tuple[int, str | None]:
        import httpx

        target = vetted.target
        host = f"[{target.host}]" if ":" in target.host else target.host
        headers = webhook_headers(self._keys, wid, int(time.time()), body)
        headers.update(
            {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "host": f"{host}:{target.port}" if target.explicit_port else host,
            }
        )
        tracing.inject(headers)  # the receiver may continue the trace
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        request = self._client.build_request(
            "POST",
            httpx.URL(target.url).copy_with(host=str(vetted.address)),
            content=body,
            headers=headers,
            extensions=extensions,
        )
        response = await self._client.send(request, stream=True)
        try:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= RESPONSE_CAP:
                    break  # the rest is never read: responses are untrusted
        finally:
            await response.aclose()
        return response.status_code, response.headers.get("retry-after")

    async def _settle(
        self, delivery: Delivery, task_id: str, wid: str, attempt: int, result: AttemptResult
    ) -> None:
        now = time.time()
        verdict = result.verdict
        common: dict[str, Any] = {
            "id": wid,
            "attempts": attempt,
            "last_status_code": result.status_code,
            "last_error": verdict.error,
            "updated_at": now,
        }
        if verdict.delivered:
            outcome = WebhookOutcome(status=DELIVERED, **common)
            self.stats.delivered += 1
            log.info("webhook delivered", task_id=task_id, webhook_id=wid, attempt=attempt)
        elif verdict.final or attempt >= self._max_attempts:
            detail = result.detail or ""
            if not verdict.final:
                detail = f"gave up after {attempt} attempts; {detail}".rstrip("; ")
            outcome = WebhookOutcome(status=FAILED, detail=detail or None, **common)
            self.stats.failed += 1
            log.warning(
                "webhook failed",
                task_id=task_id,
                webhook_id=wid,
                attempt=attempt,
                error=verdict.error,
                status_code=result.status_code,
            )
        else:
            delay = verdict.retry_after
            if delay is None:
                delay = self._policy.delay(attempt)
            eta = now + delay
            headers = republishable(delivery.headers)
            headers[HDR_ATTEMPT] = attempt + 1
            await self._publish(delivery, headers, eta)
            outcome = WebhookOutcome(
                status=PENDING, detail=result.detail, next_attempt_at=eta, **common
            )
            self.stats.retried += 1
        await self._state.record_webhook(task_id, outcome, enqueue=False)
        await delivery.ack()
        if self._metrics is not None:
            self._metrics.webhook(outcome.status if outcome.status != PENDING else "retried")

    async def _publish(self, delivery: Delivery, headers: dict[str, Any], eta: float) -> None:
        """A copy of ``delivery`` due at ``eta``, through the delay tiers (confirmed);
        ``headers`` are the delivery's as ``republishable`` lets them through (never
        ``CC``/``BCC`` or another header the broker acts on)."""
        headers[HDR_ETA] = eta_header(eta)
        await self._out.publish_delayed(
            self._queue,
            delivery.body,
            headers,
            eta,
            message_id=delivery.message_id,
            type_=WEBHOOK_MESSAGE_TYPE,
        )


__all__ = ["AttemptResult", "WebhookDeliverer", "WebhookStats"]
