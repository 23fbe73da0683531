"""The benchmark app: one async no-op task on queue ``bench``.

The worker subprocess loads ``bench.noop_app:app``, which reads ``BURROW_*`` variables (the
benchmark sets ``BURROW_NAMESPACE`` and ``BURROW_QUEUE_TYPE``); the benchmark process builds
its own instances with ``make_app``.
"""

from __future__ import annotations

from typing import Any

from burrow import Burrow
from burrow.config import QueueType, Settings

QUEUE = "bench"
TASK = "noop"


def make_app(namespace: str | None = None, queue_type: QueueType | None = None) -> Burrow:
    """A fresh app with the ``noop`` task (settings from the environment, then overrides)."""
    settings = Settings()
    if queue_type is not None:
        settings = settings.model_copy(update={"queue_type": queue_type})
    app = Burrow(namespace=namespace, settings=settings)

    @app.task(name=TASK, queue=QUEUE)
    async def noop(payload: dict[str, Any]) -> None:
        """Does nothing: the benchmark measures burrow's own overhead."""

    return app


app = make_app()
