"""``while_connected``: run a route's long wait (``GET /tasks/{id}?wait=``, an RPC call)
only while its client is still there.

A client that goes away mid-wait sends no more requests, but its wait would go on until its
deadline, polling Redis (or holding an RPC call) for nobody. The ASGI server says so with an
``http.disconnect`` message on ``receive``; a watcher reads it and cancels the wait, which
then ends at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.types import Receive

from burrow.api.envelope import ApiError

T = TypeVar("T")

#: The status counted (``burrow_http_requests_total``) for a request whose client left
#: before the answer; nobody receives it (nginx's "client closed request").
CLIENT_CLOSED = 499


async def while_connected(request: Request, wait: Awaitable[T]) -> T:
    """Await ``wait`` in this task; cancel it when the client disconnects first.

    The request's body must have been read already (a route with a body parameter, or
    none): the watcher takes every message ``receive`` gives until ``http.disconnect``.

    Raises:
        ApiError: 499 ``client_closed_request``: the client disconnected (no one reads it).
        Whatever ``wait`` raises, or reading the request raised.
    """
    task = asyncio.current_task()
    if task is None:  # not in a task: nothing to cancel
        return await wait
    armed, fired = True, False

    def stop(watcher: asyncio.Task[None]) -> None:
        nonlocal fired
        if armed and not watcher.cancelled():  # the client left (or reading failed)
            fired = True
            task.cancel()

    # One helper task, cancelled and awaited before this returns. Not a TaskGroup: it would
    # wrap the wait's own errors (TaskNotFound, RpcTimeout...) in an ExceptionGroup.
    watcher = asyncio.get_running_loop().create_task(_disconnected(request.receive))
    watcher.add_done_callback(stop)
    try:
        return await wait
    except asyncio.CancelledError:
        # Ours (as in asyncio.timeout): nobody else asked to cancel this task.
        if fired and task.uncancel() == 0:
            error = watcher.exception()
            if error is not None:
                raise error from None
            raise ApiError(
                CLIENT_CLOSED,
                "client_closed_request",
                "the client closed the connection before the answer",
            ) from None
        raise
    finally:
        armed = False  # a callback already scheduled must not cancel the task any more
        watcher.cancel()
        await asyncio.wait((watcher,))


async def _disconnected(receive: Receive) -> None:
    """Return when ``receive`` gives ``http.disconnect``."""
    while (await receive())["type"] != "http.disconnect":
        pass
