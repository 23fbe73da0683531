"""One robust AMQP connection per process, reconnecting with backoff and full jitter.

aio-pika's ``RobustConnection`` replays declared exchanges, queues, bindings and consumers
after a reconnect, but waits a fixed ``reconnect_interval`` between attempts. Many workers
reconnecting in lockstep after a broker restart hammer it, so the interval here is drawn
uniformly from ``[base, min(cap, base + time since the connection was lost)]``: the ceiling
grows with the outage (each wait at most doubles the elapsed time) and the draw spreads the
clients out. With ``fail_fast`` off the first connect also retries instead of raising,
so a worker started while the broker is down connects once it is up.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from aio_pika import RobustConnection
from yarl import URL

from burrow.broker.amqp._decoding import install_tolerant_properties
from burrow.config import AmqpSettings


class JitteredRobustConnection(RobustConnection):
    """``RobustConnection`` whose reconnect delay grows with the outage and is jittered."""

    def __init__(
        self,
        url: URL,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        reconnect_base: float = 0.5,
        reconnect_cap: float = 5.0,
        **kwargs: Any,
    ) -> None:
        self._reconnect_base = reconnect_base
        self._reconnect_cap = reconnect_cap
        self._lost_at: float | None = None
        super().__init__(url, loop, **kwargs)

    @property
    def reconnect_interval(self) -> float:
        now = time.monotonic()
        if self._lost_at is None:
            self._lost_at = now
        ceiling = min(self._reconnect_cap, self._reconnect_base + (now - self._lost_at))
        return random.uniform(self._reconnect_base, max(self._reconnect_base, ceiling))

    @reconnect_interval.setter
    def reconnect_interval(self, _value: float) -> None:
        # RobustConnection assigns its fixed interval here; ours is computed instead.
        return

    async def _on_connected(self) -> None:
        await super()._on_connected()
        self._lost_at = None


def make_connection(settings: AmqpSettings, *, name: str) -> JitteredRobustConnection:
    """Build (not open) the process's connection; ``name`` shows in the management UI.

    Messages whose properties cannot be decoded arrive marked instead of closing it
    (``_decoding.install_tolerant_properties``).
    """
    install_tolerant_properties()
    url = URL(settings.url)
    if "heartbeat" not in url.query:
        url = url.update_query(heartbeat=settings.heartbeat)
    return JitteredRobustConnection(
        url,
        reconnect_base=settings.reconnect_base,
        reconnect_cap=settings.reconnect_cap,
        fail_fast="0",
        client_properties={"connection_name": name},
    )
