"""The curated public API in burrow/__init__.py (STYLE rule 3)."""

from __future__ import annotations

import inspect

import burrow
import burrow.errors

DOCUMENTED_NAMES = {"Burrow", "TaskContext", "Retry", "Reject", "Exchange"}


def _public_error_classes() -> set[str]:
    return {
        name
        for name, obj in vars(burrow.errors).items()
        if inspect.isclass(obj) and obj.__module__ == "burrow.errors" and not name.startswith("_")
    }


def test_all_is_sorted_and_unique() -> None:
    """burrow.__all__ is sorted and lists each name once."""
    assert list(burrow.__all__) == sorted(burrow.__all__)
    assert len(set(burrow.__all__)) == len(burrow.__all__)


def test_every_name_in_all_is_importable() -> None:
    """Every name in burrow.__all__ exists on the package."""
    missing = [name for name in burrow.__all__ if not hasattr(burrow, name)]
    assert missing == []


def test_star_import_gives_all_names() -> None:
    """``from burrow import *`` binds exactly the names of __all__."""
    namespace: dict[str, object] = {}
    exec("from burrow import *", namespace)  # noqa: S102 - the statement under test
    assert set(namespace) - {"__builtins__"} == set(burrow.__all__)


def test_spec_names_are_exported() -> None:
    """The names the README's examples import from burrow are in __all__."""
    assert set(burrow.__all__) >= DOCUMENTED_NAMES


def test_every_public_error_class_is_exported() -> None:
    """Every public class of burrow.errors is re-exported from burrow."""
    errors = _public_error_classes()
    assert "BurrowError" in errors
    assert set(burrow.__all__) >= errors
    for name in errors:
        assert getattr(burrow, name) is getattr(burrow.errors, name)


def test_errors_all_lists_its_public_classes() -> None:
    """burrow.errors.__all__ is sorted and names exactly its public classes."""
    assert list(burrow.errors.__all__) == sorted(burrow.errors.__all__)
    assert set(burrow.errors.__all__) == _public_error_classes()


def test_every_error_derives_from_burrow_error() -> None:
    """All exported error classes share the BurrowError base."""
    for name in _public_error_classes():
        assert issubclass(getattr(burrow.errors, name), burrow.errors.BurrowError)


def test_retry_and_reject_are_not_burrow_errors() -> None:
    """Retry and Reject are outcomes, so ``except BurrowError`` never swallows them."""
    assert not issubclass(burrow.Retry, burrow.BurrowError)
    assert not issubclass(burrow.Reject, burrow.BurrowError)
