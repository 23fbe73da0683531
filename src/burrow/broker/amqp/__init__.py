"""The RabbitMQ adapter, on aio-pika. Only this package imports aio-pika or aiormq."""

from burrow.broker.amqp.broker import AmqpBroker, Consumer, Delivery

__all__ = ["AmqpBroker", "Consumer", "Delivery"]
