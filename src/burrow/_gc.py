"""Garbage-collector settings for long-running burrow processes.

After start-up, the objects a process keeps for its whole life (modules, the app, its
models, FastAPI's routes) dominate the heap. CPython's full collections walk all of them
again and again, and on a busy API or worker such a pass is a pause of several
milliseconds in the middle of a request: it showed as the p99 of submit -> start latency.
``gc.freeze()`` moves everything alive at that point to a permanent generation the
collector no longer scans (the approach CPython documents for pre-fork servers), and a
higher first threshold makes young collections rarer. Reference counting frees almost
everything anyway; the collector still runs and still finds cycles.
"""

from __future__ import annotations

import gc

#: First-generation threshold (CPython's default is 700 allocations).
GEN0_THRESHOLD = 10_000


def settle_heap() -> None:
    """Collect once, freeze what survives, and make young collections rarer."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
