"""The HTTP API: ``create_app(burrow)`` builds the FastAPI app, ``serve`` runs it,
``check_bind`` enforces "no keys, loopback only" (docs/api.md)."""

from burrow.api.app import create_app, serve
from burrow.api.security import check_bind

__all__ = ["check_bind", "create_app", "serve"]
