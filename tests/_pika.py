"""The plain AMQP client the tests use as a foreign producer (pika, as the RabbitMQ
tutorials write it)."""

from __future__ import annotations

import pika

#: The machine's RabbitMQ, as a foreign producer connects to it.
AMQP_PARAMS = pika.ConnectionParameters(
    host="127.0.0.1",
    port=5672,
    credentials=pika.PlainCredentials("guest", "guest"),
    connection_attempts=3,
    retry_delay=0.5,
)
