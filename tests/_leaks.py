"""What a test run leaves behind on the machine's RabbitMQ and Redis.

Every test works in namespaces of its own and deletes what it declared. A queue left over
is not only untidy: each quorum queue holds file handles in the broker, and a few hundred
left by repeated runs exhausted the broker's handles, after which it accepted no more AMQP
connections. So the suite records every namespace it hands out (``new_namespace``) and,
at the end of the run, lists what is left of them (``leftovers``), deletes it, and fails
the run naming it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field

import pika
import redis

from burrow.testing import unique_namespace
from tests._pika import AMQP_PARAMS

#: Every namespace this run handed out (tests and the subprocesses they start use these).
NAMESPACES: set[str] = set()


def new_namespace(prefix: str = "t") -> str:
    """A namespace no other test or run uses, recorded for the check at the end."""
    namespace = unique_namespace(prefix)
    NAMESPACES.add(namespace)
    return namespace


@dataclass
class Leftovers:
    """Broker objects and Redis keys that belong to this run's namespaces."""

    queues: list[str] = field(default_factory=list)
    exchanges: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.queues or self.exchanges or self.keys)


def _ours(names: list[str], namespaces: set[str]) -> list[str]:
    return sorted(n for n in names if n.partition(".")[0] in namespaces)


def _broker_names(what: str) -> list[str] | None:
    """Names from ``rabbitmqctl list_<what>`` (None: rabbitmqctl cannot be run here)."""
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    try:
        done = subprocess.run(
            [ctl, "-q", f"list_{what}", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        warnings.warn(f"leak check: rabbitmqctl not run ({exc})", stacklevel=2)
        return None
    if done.returncode != 0:
        warnings.warn(f"leak check: rabbitmqctl failed: {done.stderr.strip()}", stacklevel=2)
        return None
    return [line.strip() for line in done.stdout.splitlines()[1:] if line.strip()]


def leftovers(namespaces: set[str]) -> Leftovers:
    """What is left of ``namespaces`` on the broker and in Redis."""
    found = Leftovers()
    queues, exchanges = _broker_names("queues"), _broker_names("exchanges")
    found.queues = _ours(queues or [], namespaces)
    found.exchanges = _ours(exchanges or [], namespaces)
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        prefix = re.compile(r"^([^:]+):")
        keys = [k.decode(errors="replace") for k in client.scan_iter(count=1000)]
        ours = [k for k in keys if (m := prefix.match(k)) is not None and m.group(1) in namespaces]
        # Keys with an expiry go by themselves (e.g. the per-second rate counters a worker
        # subprocess still flushes while it stops, after its test's purge): only keys that
        # would stay forever are leftovers.
        found.keys = sorted(k for k in ours if client.ttl(k) == -1)
    finally:
        client.close()
    return found


def delete(found: Leftovers) -> None:
    """Delete ``found`` (so the next run starts clean)."""
    if found.queues or found.exchanges:
        connection = pika.BlockingConnection(AMQP_PARAMS)
        try:
            channel = connection.channel()
            for queue in found.queues:
                channel.queue_delete(queue)
            for exchange in found.exchanges:
                channel.exchange_delete(exchange)
        finally:
            connection.close()
    if found.keys:
        client = redis.Redis(host="127.0.0.1", port=6379)
        try:
            client.delete(*found.keys)
        finally:
            client.close()
