"""``burrow._lean_imports``: importing burrow does not load the OTel metrics SDK through
redis-py, and leaves that SDK importable afterwards."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def test_import_burrow_skips_the_metrics_sdk_and_leaves_it_importable() -> None:
    out = _run(
        """
        import sys
        import burrow
        import redis.asyncio
        print("loaded" if "opentelemetry.sdk.metrics" in sys.modules else "absent")
        from opentelemetry.sdk.metrics import MeterProvider
        print(MeterProvider.__name__)
        """
    )
    assert out.splitlines() == ["absent", "MeterProvider"]


def test_an_application_that_loaded_the_sdk_first_keeps_it() -> None:
    out = _run(
        """
        import sys
        import opentelemetry.sdk.metrics as sdk
        import burrow
        print(sys.modules["opentelemetry.sdk.metrics"] is sdk)
        """
    )
    assert out == "True"


def test_import_burrow_skips_rich_tracebacks_and_leaves_rich_importable() -> None:
    out = _run(
        """
        import sys
        import burrow
        import structlog
        print("loaded" if "rich.traceback" in sys.modules else "absent")
        print("loaded" if "pygments" in sys.modules else "absent")
        from rich.table import Table
        print(Table.__name__)
        """
    )
    assert out.splitlines() == ["absent", "absent", "Table"]
