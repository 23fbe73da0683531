"""The CLI's --help pages: every command has one, and a docstring's wrapped lines read as
paragraphs (not the source's line breaks)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from burrow.cli.main import cli

COMMANDS = [
    "up", "api", "worker", "submit", "status", "queues", "dlq",
    "scheduler", "schedules", "bench", "workers",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_help_page(command: str) -> None:
    """``burrow <command> --help`` exits 0 and shows its usage and the APP argument."""
    result = CliRunner().invoke(cli, [command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert f"Usage: burrow {command}" in result.output


def test_wrapped_docstring_lines_are_joined_into_paragraphs() -> None:
    """The second paragraph of ``burrow dlq``'s docstring, wrapped at 92 characters in the
    source, is reflowed to the terminal's width rather than broken where the source is."""
    result = CliRunner().invoke(cli, ["dlq", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "is listed as resolved; replay leaves it in place" in result.output
