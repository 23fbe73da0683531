"""Throughput benchmark: burrow against a raw aio-pika baseline (``python -m bench``)."""
