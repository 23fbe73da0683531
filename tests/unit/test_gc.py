"""``settle_heap`` freezes the start-up heap and makes young collections rarer (run in a
child interpreter so the test process keeps its own collector settings)."""

from __future__ import annotations

import subprocess
import sys

from burrow._gc import GEN0_THRESHOLD


def test_settle_heap_freezes_and_raises_the_threshold() -> None:
    code = (
        "import gc\n"
        "from burrow._gc import settle_heap\n"
        "before = gc.get_freeze_count()\n"
        "settle_heap()\n"
        "print(before, gc.get_freeze_count(), gc.get_threshold()[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    before, after, threshold = (int(x) for x in out)
    assert before == 0
    assert after > 1000  # the modules and objects alive at start-up
    assert threshold == GEN0_THRESHOLD
