"""Keep redis-py from importing the OpenTelemetry metrics SDK it never uses here.

redis-py 8 imports ``opentelemetry.sdk.metrics`` at import time whenever the SDK is
installed (burrow installs it for tracing), only to annotate types in
``redis.observability.providers``; its opt-in metrics import what they need lazily when
enabled. That eager import costs every burrow process about 2.7 MiB of RSS (the SDK's
metrics package and what it pulls in, psutil among them).

``import_redis`` imports ``redis.asyncio`` with that one module marked absent, then
unmarks it, so later imports (the application's own metrics, or redis-py's observability
once enabled) load the real SDK as usual. It changes nothing when the SDK is already
loaded or when redis is already imported.
"""

from __future__ import annotations

import importlib
import sys

_SDK_METRICS = "opentelemetry.sdk.metrics"


def import_redis() -> None:
    """Import ``redis.asyncio`` without letting it load the OTel metrics SDK eagerly."""
    if "redis.asyncio" in sys.modules or _SDK_METRICS in sys.modules:
        return
    sys.modules[_SDK_METRICS] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        importlib.import_module("redis.asyncio")
    finally:
        if sys.modules.get(_SDK_METRICS, 0) is None:
            del sys.modules[_SDK_METRICS]


import_redis()  # on import: ``burrow/__init__`` imports this module before anything else
