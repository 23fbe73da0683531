"""``map_amqp_errors()``: the one place aio-pika and aiormq errors become burrow errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import aiormq.exceptions as amqp_exc
import pamqp.exceptions

from burrow.errors import (
    BrokerError,
    BrokerUnavailable,
    PublishRejected,
    PublishTimeout,
    Unroutable,
)

_UNAVAILABLE = (
    amqp_exc.AMQPConnectionError,
    amqp_exc.ChannelInvalidStateError,
    amqp_exc.ChannelClosed,
    ConnectionError,
    OSError,
    asyncio.IncompleteReadError,
)


def amqp_error(exc: BaseException, *, queue: str | None, what: str) -> BaseException:
    """The burrow error for an AMQP client's exception (others are returned unchanged);
    see ``map_amqp_errors`` for the mapping."""
    mapped: BaseException
    if isinstance(exc, amqp_exc.PublishError):
        mapped = Unroutable(f"{what}: no queue is bound for the message", queue=queue)
    elif isinstance(exc, amqp_exc.DeliveryError):
        mapped = PublishRejected(f"{what}: the broker nacked the message", queue=queue)
    elif isinstance(exc, TimeoutError):
        mapped = PublishTimeout(f"{what}: no answer from the broker in time")
    elif isinstance(exc, amqp_exc.ChannelNotFoundEntity | amqp_exc.ChannelPreconditionFailed):
        mapped = BrokerError(f"{what}: {exc}", queue=queue)
    elif isinstance(exc, _UNAVAILABLE):
        mapped = BrokerUnavailable(f"{what}: broker unavailable ({exc!r})", queue=queue)
    elif isinstance(exc, amqp_exc.AMQPError | pamqp.exceptions.PAMQPException):
        mapped = BrokerError(f"{what}: {exc!r}", queue=queue)
    else:
        return exc
    mapped.__cause__ = exc
    return mapped


@contextmanager
def map_amqp_errors(*, queue: str | None = None, what: str = "broker operation") -> Iterator[None]:
    """Translate the AMQP client's exceptions raised inside the block.

    Raises:
        Unroutable: a mandatory publish was returned (no queue bound).
        PublishRejected: the broker nacked a publish.
        PublishTimeout: no confirm in time (the message may still be stored).
        BrokerUnavailable: the connection or channel is down or reconnecting.
        BrokerError: the broker refused the operation (e.g. a queue declared with other
            arguments, PRECONDITION_FAILED).
    """
    try:
        yield
    except (
        amqp_exc.AMQPError,
        pamqp.exceptions.PAMQPException,
        TimeoutError,
        *_UNAVAILABLE,
    ) as exc:
        raise amqp_error(exc, queue=queue, what=what) from exc
