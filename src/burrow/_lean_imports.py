"""Keep two libraries from importing, at import time, what burrow's processes never use.

**redis-py and the OpenTelemetry metrics SDK.**

redis-py 8 imports ``opentelemetry.sdk.metrics`` at import time whenever the SDK is
installed (burrow installs it for tracing), only to annotate types in
``redis.observability.providers``; its opt-in metrics import what they need lazily when
enabled. That eager import costs every burrow process about 2.7 MiB of RSS (the SDK's
metrics package and what it pulls in, psutil among them).

``import_redis`` imports ``redis.asyncio`` with that one module marked absent, then
unmarks it, so later imports (the application's own metrics, or redis-py's observability
once enabled) load the real SDK as usual. It changes nothing when the SDK is already
loaded or when redis is already imported.

**structlog and rich tracebacks.** ``structlog.dev`` imports ``rich.traceback`` (and with it
pygments) whenever rich is installed, for pretty exceptions in console logs: about 1.6 MiB
per process. burrow never uses them: its log set-up (``burrow.observability``) formats
exceptions as plain text before rendering, in JSON and console mode alike.
``import_structlog`` imports structlog with rich marked absent; rich itself stays
importable (the CLI's tables and progress bars import it when they need it).
"""

from __future__ import annotations

import importlib
import sys

_SDK_METRICS = "opentelemetry.sdk.metrics"


def _import_without(module: str, absent: str) -> None:
    """Import ``module`` with ``absent`` marked missing (its import raises ImportError)
    for the duration; nothing happens when either is already imported."""
    if module in sys.modules or absent in sys.modules:
        return
    sys.modules[absent] = None  # type: ignore[assignment]
    try:
        importlib.import_module(module)
    finally:
        if sys.modules.get(absent, 0) is None:
            del sys.modules[absent]


def import_redis() -> None:
    """Import ``redis.asyncio`` without letting it load the OTel metrics SDK eagerly."""
    _import_without("redis.asyncio", _SDK_METRICS)


def import_structlog() -> None:
    """Import ``structlog`` without letting ``structlog.dev`` load rich tracebacks."""
    _import_without("structlog", "rich")


# On import: ``burrow/__init__`` imports this module before anything else.
import_redis()
import_structlog()
