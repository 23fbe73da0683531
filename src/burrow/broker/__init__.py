"""The broker: topology as data (``topology``) and the RabbitMQ adapter (``amqp``)."""
