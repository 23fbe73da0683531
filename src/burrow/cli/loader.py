"""Load an app from ``module:attribute`` (as uvicorn does)."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from burrow.app import Burrow


def load_app(target: str) -> Burrow:
    """Import ``module:attribute`` and return the ``Burrow`` it names.

    Raises:
        typer.BadParameter: the target is malformed, cannot be imported, or is no app.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise typer.BadParameter(f"{target!r} is not of the form module:attribute")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise typer.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attr, None)
    if not isinstance(app, Burrow):
        raise typer.BadParameter(f"{target!r} is not a burrow.Burrow instance")
    return app
