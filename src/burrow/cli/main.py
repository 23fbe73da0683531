"""The ``burrow`` command: Typer root; subcommands live in run.py, tasks.py and ops.py."""

from __future__ import annotations

import typer

from burrow.cli import bench, ops, run, schedules, serve, tasks, workers
from burrow.worker.supervisor import follow_supervisor

cli = typer.Typer(
    name="burrow",
    help="Reliable asynchronous tasks on RabbitMQ, with state in Redis.\n\n"
    "APP is module:attribute, e.g. examples.shop.app:app. Settings come from BURROW_* "
    "environment variables (see docs/configuration.md).",
    no_args_is_help=True,
    # Markdown: a docstring's wrapped lines are joined into paragraphs (in "rich" mode
    # Typer keeps every line break of the paragraphs after the first).
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    add_completion=False,
)
cli.command("up")(serve.up)
cli.command("api")(serve.api)
cli.command("worker")(run.worker)
cli.command("submit")(tasks.submit)
cli.command("status")(tasks.status)
cli.command("queues")(ops.queues)
cli.command("dlq")(ops.dlq)
cli.command("scheduler")(schedules.scheduler)
cli.command("schedules")(schedules.schedules)
cli.command("bench")(bench.bench)
cli.command("workers")(workers.workers)


def main() -> None:
    follow_supervisor()  # a child of `burrow worker --processes N` or `burrow up`
    cli()


if __name__ == "__main__":
    main()
