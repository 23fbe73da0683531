"""mypy sees a decorated handler as the function it was (``tests/typing/decorators.py``):
``@app.task``, ``@app.task(...)``, ``@app.subscriber`` and ``@app.rpc`` keep its type, so
users' strict type checks pass and calls to it stay checked."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]


def test_decorators_keep_the_handler_type() -> None:
    target = ROOT / "tests" / "typing" / "decorators.py"
    out, err, status = api.run(
        ["--strict", "--no-incremental", "--config-file", str(ROOT / "pyproject.toml"), str(target)]
    )
    assert status == 0, out + err
