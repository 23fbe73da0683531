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
    except amqp_exc.PublishError as exc:
        raise Unroutable(f"{what}: no queue is bound for the message", queue=queue) from exc
    except amqp_exc.DeliveryError as exc:
        raise PublishRejected(f"{what}: the broker nacked the message", queue=queue) from exc
    except TimeoutError as exc:
        raise PublishTimeout(f"{what}: no answer from the broker in time") from exc
    except (amqp_exc.ChannelNotFoundEntity, amqp_exc.ChannelPreconditionFailed) as exc:
        raise BrokerError(f"{what}: {exc}", queue=queue) from exc
    except (
        amqp_exc.AMQPConnectionError,
        amqp_exc.ChannelInvalidStateError,
        amqp_exc.ChannelClosed,
        ConnectionError,
        OSError,
        asyncio.IncompleteReadError,
    ) as exc:
        raise BrokerUnavailable(f"{what}: broker unavailable ({exc!r})", queue=queue) from exc
    except (amqp_exc.AMQPError, pamqp.exceptions.PAMQPException) as exc:
        raise BrokerError(f"{what}: {exc!r}", queue=queue) from exc
