"""Import layers (burrow/__init__.py docstring): dependencies point inward, checked with ast.

Every import statement counts, including those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "burrow"

CORE = ("burrow.tasks", "burrow.errors", "burrow.config", "burrow._clock", "burrow.broker.topology")
ADAPTERS = ("burrow.broker.amqp", "burrow.state")
ROOT = ("burrow.app", "burrow.messaging", "burrow.operations", "burrow.scheduling")
RUNTIMES = ("burrow.worker", "burrow.scheduler")
OUTER_THAN_CORE = (
    "burrow.broker.amqp",
    "burrow.state",
    *RUNTIMES,
    *ROOT,
    "burrow.api",
    "burrow.cli",
)
OUTER_THAN_ADAPTERS = (*RUNTIMES, *ROOT, "burrow.api", "burrow.cli")
AMQP_CLIENTS = ("aio_pika", "aiormq", "pamqp")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


@cache
def imports() -> dict[str, frozenset[str]]:
    """Every burrow module and the modules it imports (``from a import b`` counts as a.b too)."""
    found: dict[str, frozenset[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, node, path.name == "__init__.py")
                names.add(target)
                names.update(f"{target}.{alias.name}" for alias in node.names)
        found[module] = frozenset(names)
    return found


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """``module -> import`` for each import of ``forbidden`` by a module within ``sources``."""
    return sorted(
        f"{module} -> {name}"
        for module, names in imports().items()
        if _within(module, sources)
        for name in names
        if _within(name, forbidden)
    )


def test_the_scanner_sees_the_package() -> None:
    """The scan finds every layer and a known import, so the checks below are not vacuous."""
    found = imports()
    for layer in (*CORE, *ADAPTERS, *RUNTIMES, "burrow.app", "burrow.cli"):
        assert any(_within(m, (layer,)) for m in found), layer
    assert "burrow.broker.amqp" in found["burrow.app"]
    assert violations(("burrow.app",), ("burrow.broker.amqp",))


def test_core_imports_no_outer_layer() -> None:
    """tasks, errors, config, _clock and broker.topology import no adapter, runtime or edge."""
    assert violations(CORE, OUTER_THAN_CORE) == []


def test_adapters_import_no_runtime_root_or_edge() -> None:
    """broker.amqp and state import nothing from worker, app or cli."""
    assert violations(ADAPTERS, OUTER_THAN_ADAPTERS) == []


def test_runtimes_import_no_edge() -> None:
    """The worker and scheduler runtimes import nothing from the api or the cli."""
    assert violations(RUNTIMES, ("burrow.api", "burrow.cli")) == []


def importers_outside(home: str, libraries: tuple[str, ...]) -> list[str]:
    """``module -> import`` for each import of ``libraries`` by a module outside ``home``."""
    return sorted(
        f"{module} -> {name}"
        for module, names in imports().items()
        if not _within(module, (home,))
        for name in names
        if _within(name, libraries)
    )


def test_only_the_amqp_adapter_imports_amqp_clients() -> None:
    """aio_pika, aiormq and pamqp are imported only under burrow/broker/amqp."""
    assert importers_outside("burrow.broker.amqp", AMQP_CLIENTS) == []
    assert importers_outside("burrow.tasks", AMQP_CLIENTS)  # the check does see the adapter


def test_only_the_state_adapter_imports_redis() -> None:
    """redis is imported only under burrow/state."""
    assert importers_outside("burrow.state", ("redis", "hiredis")) == []


@pytest.mark.parametrize("module", ["burrow.tasks.envelope", "burrow.broker.topology"])
def test_wire_format_modules_are_pure(module: str) -> None:
    """The envelope and topology modules (the wire format) need no I/O library at all."""
    io_libraries = (*AMQP_CLIENTS, "redis", "asyncio", "socket")
    assert sorted(n for n in imports()[module] if _within(n, io_libraries)) == []


def test_only_the_tracing_module_imports_opentelemetry() -> None:
    """opentelemetry is imported only by burrow/tracing.py: the rest calls its helpers,
    which cost one check when tracing is off."""
    assert importers_outside("burrow.tracing", ("opentelemetry",)) == []
    assert importers_outside("burrow.observability", ("opentelemetry",))  # sees tracing.py


def test_metrics_module_is_core_ish() -> None:
    """burrow.metrics imports no burrow module outside the core; prometheus_client is
    imported only there and in the API (the worker and broker take hooks passed in)."""
    assert violations(("burrow.metrics",), OUTER_THAN_CORE) == []
    outside = importers_outside("burrow.metrics", ("prometheus_client",))
    assert [v for v in outside if not v.startswith("burrow.api.")] == []
    assert importers_outside("burrow.api", ("prometheus_client",))  # sees burrow.metrics
