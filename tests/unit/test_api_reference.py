"""docs/api-reference.md is what scripts/gen_api_reference.py makes from the current OpenAPI
schema: a route, parameter or model changed without regenerating the file fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_api_reference", ROOT / "scripts/gen_api_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_api_reference_is_current() -> None:
    gen = generator()
    expected = gen.render(gen.schema())
    current = (ROOT / "docs" / "api-reference.md").read_text(encoding="utf-8")
    assert current == expected, (
        "docs/api-reference.md is out of date: run .venv/bin/python scripts/gen_api_reference.py"
    )


def test_the_reference_lists_every_operation_of_the_schema() -> None:
    gen = generator()
    api = gen.schema()
    text = gen.render(api)
    for path, item in api["paths"].items():
        for method in gen.METHODS:
            if method in item:
                assert f"### `{method.upper()} {path}`" in text
    assert "### TaskRecord" in text
