"""``map_redis_errors()``: the one place redis-py errors become burrow errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as redis_exc

from burrow.errors import StateError, StateUnavailable

_UNAVAILABLE = (
    redis_exc.ConnectionError,
    redis_exc.TimeoutError,
    redis_exc.BusyLoadingError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def translate_redis_error(exc: Exception, what: str) -> Exception:
    """The burrow error for a redis-py (or socket) error; others are returned unchanged.

    ``StateUnavailable`` when Redis cannot be reached, timed out, or is loading its data;
    ``StateError`` when it refused the command.
    """
    if isinstance(exc, _UNAVAILABLE):
        return StateUnavailable(f"{what}: Redis unavailable ({exc!r})")
    if isinstance(exc, redis_exc.RedisError):
        return StateError(f"{what}: {exc}")
    return exc


@contextmanager
def map_redis_errors(what: str) -> Iterator[None]:
    """Translate redis-py exceptions raised inside the block (see ``translate_redis_error``)."""
    try:
        yield
    except (*_UNAVAILABLE, redis_exc.RedisError) as exc:
        raise translate_redis_error(exc, what) from exc
