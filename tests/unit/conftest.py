"""Unit tests are pure logic: they run without RabbitMQ or Redis."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _servers_up() -> None:
    """Override the root check for live servers: nothing under tests/unit talks to one."""
