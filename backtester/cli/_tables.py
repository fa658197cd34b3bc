"""Console tables that stay readable in a narrow terminal and when piped (80 columns).

A table is never squeezed into ``…``. Its number columns keep the width of their widest
number; its text columns (names, statuses, lists of positions) and headings wrap at spaces.
When even that does not fit, it is printed transposed (one row per column, one column per
record), else as one small ``name  value`` block per record. Cells are formatted by
:mod:`backtester.display` before they get here; a table that shows
:data:`~backtester.display.UNDEFINED` is followed by its legend.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from backtester.display import LEGEND, UNDEFINED

__all__ = ["print_table"]


#: Narrowest a text column is squeezed to before the table is turned instead.
_MIN_TEXT = 12


def _table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[str]],
           text: Collection[int]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for k, head in enumerate(headers):
        # a number column is as wide as its widest number (numbers hold no spaces: they are
        # never wrapped), a text column wraps at spaces down to _MIN_TEXT; headings wrap too
        widest = max((len(row[k]) for row in rows), default=0)
        if k in text:
            table.add_column(head, overflow="fold", min_width=min(widest, _MIN_TEXT))
        else:
            word = max((len(w) for w in head.split()), default=0)
            table.add_column(head, justify="right", overflow="fold", width=max(widest, word))
    for row in rows:
        table.add_row(*(Text(c) for c in row))
    return table


def _fits(console: Console, table: Table) -> bool:
    # the table's narrowest width (text columns and headings wrapped at spaces, numbers
    # whole), measured without the console's limit, within the console
    size = Measurement.get(console, console.options.update(width=1 << 16), table)
    return size.minimum <= console.width


def print_table(console: Console, headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                title: str | None = None, text: Collection[int] = (0,),
                notes: Sequence[str] = ()) -> None:
    """Print ``rows`` (already formatted strings) under ``headers`` so that nothing is cut.

    Columns whose index is in ``text`` are text (left-aligned, may wrap at spaces), the
    others numbers (right-aligned, never wrapped). ``notes`` are printed under the table,
    followed by the legend of :data:`~backtester.display.UNDEFINED` when a cell shows it.
    """
    wide = _table(title, headers, rows, text)
    if _fits(console, wide):
        console.print(wide)
    else:
        # one row per column: the first column's values head the records
        keys = [row[0] for row in rows]
        turned = _table(title, [headers[0], *keys],
                        [[head, *(row[k] for row in rows)] for k, head in enumerate(headers)
                         if k > 0], (0,))
        if _fits(console, turned):
            console.print(turned)
        else:
            if title:
                console.print(Text(title), soft_wrap=True)
            for row in rows:
                block = Table.grid(padding=(0, 2))
                block.add_column(overflow="fold")
                block.add_column(overflow="fold")
                for head, cell in zip(headers, row, strict=True):
                    block.add_row(Text(head), Text(cell))
                console.print(block)
                console.print()
    for line in notes:
        console.print(Text(line), soft_wrap=True)
    if any(cell == UNDEFINED for row in rows for cell in row):
        console.print(Text(LEGEND), soft_wrap=True)
