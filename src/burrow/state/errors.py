"""``map_redis_errors()``: the one place redis-py errors become burrow errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as redis_exc

from burrow.errors import StateError, StateUnavailable


@contextmanager
def map_redis_errors(what: str) -> Iterator[None]:
    """Translate redis-py exceptions raised inside the block.

    Raises:
        StateUnavailable: Redis cannot be reached, timed out, or is loading its data.
        StateError: Redis refused the command.
    """
    try:
        yield
    except (
        redis_exc.ConnectionError,
        redis_exc.TimeoutError,
        redis_exc.BusyLoadingError,
        ConnectionError,
        TimeoutError,
        OSError,
    ) as exc:
        raise StateUnavailable(f"{what}: Redis unavailable ({exc!r})") from exc
    except redis_exc.RedisError as exc:
        raise StateError(f"{what}: {exc}") from exc
