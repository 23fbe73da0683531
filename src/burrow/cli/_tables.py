"""The CLI's tables, built so that no id is ever cut short, at any terminal width.

``CliTable`` lays its columns out itself and renders as a Rich table in which an id column
(task ids, queue names, worker and schedule ids) and a number column neither wrap nor
shrink below their widest value; the other columns are narrowed to fit (never below
``TEXT_MIN``) and wrap, folding a word too long for them instead of ending it with an
ellipsis. When even that is wider than the terminal (say, many columns at 80; left to
itself, Rich would squeeze columns to a character, drop them or cut values short), the rows
are printed as blocks instead: the row's id on a line of its own, then ``header: value``
lines. Only an id longer than the terminal is wide is folded onto the next line; nothing is
cut. Cells are plain text, never
Rich markup (a value with ``[...]`` in it prints as it is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rich import box
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

#: ``id``: never wraps or shrinks; ``number``: right-aligned, never wraps; ``text``:
#: wraps; ``grow``: wraps and takes the width left over (free text, such as an error).
ColumnKind = Literal["id", "text", "number", "grow"]
#: Narrowest a text column gets (unless its header or all its values are narrower); longer
#: words in it are folded.
TEXT_MIN = 10


@dataclass(frozen=True, slots=True)
class Col:
    """A column: its header and how it fits (``ColumnKind``)."""

    header: str
    kind: ColumnKind = "text"


class CliTable:
    """Rows under headers, printed as a table when it fits and as blocks otherwise."""

    def __init__(self, *columns: Col | str, title: str | None = None) -> None:
        self.columns = [c if isinstance(c, Col) else Col(c) for c in columns]
        self.title = title
        self.rows: list[list[Text]] = []

    def add_row(self, *cells: str | Text) -> None:
        """Add a row (one cell per column; a ``str`` is plain text)."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([c if isinstance(c, Text) else Text(c) for c in cells])

    def table(self, width: int) -> Table | None:
        """The rows as a Rich table at most ``width`` wide, or None when it does not fit."""
        widths = self._widths(width)
        if widths is None:
            return None
        table = Table(
            box=box.SIMPLE_HEAD,
            title=None if self.title is None else Text(self.title),
            title_justify="left",
        )
        for col, column_width in zip(self.columns, widths, strict=True):
            table.add_column(
                col.header,
                justify="right" if col.kind == "number" else "left",
                no_wrap=col.kind in ("id", "number"),
                overflow="fold",
                width=column_width,
            )
        for row in self.rows:
            table.add_row(*row)
        return table

    def _widths(self, width: int) -> list[int] | None:
        """Each column's width: ids and numbers as wide as their widest value, the others
        narrowed (widest first) down to their minimum to fit; None when even that is too
        wide. A ``SIMPLE_HEAD`` table adds 3 characters a column and 1 more."""
        natural = [
            max(_longest_line(Text(c.header)), *(_longest_line(r[i]) for r in self.rows))
            for i, c in enumerate(self.columns)
        ]
        minimum = [
            n if c.kind in ("id", "number") else min(n, max(_longest_word(c.header), TEXT_MIN))
            for c, n in zip(self.columns, natural, strict=True)
        ]
        room = width - 3 * len(self.columns) - 1
        if sum(minimum) > room:
            return None
        widths = list(natural)
        for _ in range(sum(widths) - room):
            index = max(
                (i for i, w in enumerate(widths) if w > minimum[i]), key=lambda i: widths[i]
            )
            widths[index] -= 1
        return widths

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = self.table(options.max_width)
        if table is not None:
            yield table
            return
        if self.title is not None:
            yield Text(self.title)
        for row in self.rows:
            yield from self._block(row)

    def _block(self, row: list[Text]) -> RenderResult:
        """One row as lines: the first cell's first line alone (bold) and its other lines
        under it, then ``header: value`` for the other cells."""
        first, *rest = row
        head, *more = first.plain.splitlines() or [""]
        yield Text(head, style="bold", overflow="fold")
        for line in more:
            yield Text(f"  {line}", overflow="fold")
        for col, cell in zip(self.columns[1:], rest, strict=True):
            value = cell.plain.replace("\n", "; ")
            yield Text(f"  {col.header}: {value}", overflow="fold")
        yield Text("")


def _longest_line(text: Text) -> int:
    return max((len(line) for line in text.plain.splitlines()), default=0)


def _longest_word(text: str) -> int:
    return max((len(word) for word in text.split()), default=0)


__all__ = ["CliTable", "Col"]
