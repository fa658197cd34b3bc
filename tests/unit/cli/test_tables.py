"""Console tables at 80 columns and when piped: nothing is cut to ``…`` (issue 16 item 11)."""

from __future__ import annotations

import io

from rich.console import Console

from backtester.cli._tables import print_table
from backtester.display import LEGEND


def _console(width: int = 80) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, force_terminal=False, color_system=None), out


def _cells(n_cols: int, n_rows: int) -> tuple[list[str], list[list[str]]]:
    headers = ["run", *(f"column_number_{k}" for k in range(1, n_cols))]
    rows = [[str(r), *(f"{-1234567.891 * (r + 1) * k:,.2f}" for k in range(1, n_cols))]
            for r in range(n_rows)]
    return headers, rows


def _assert_intact(text: str, rows: list[list[str]], width: int) -> None:
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for row in rows:
        for cell in row:
            assert cell in text  # every number whole, on one line


def test_a_table_that_fits_is_printed_as_is() -> None:
    console, out = _console()
    headers, rows = _cells(3, 2)
    print_table(console, headers, rows, title="t")
    text = out.getvalue()
    _assert_intact(text, rows, 80)
    assert text.index("column_number_1") < text.index("column_number_2")
    # side by side on the heading line: not transposed
    assert any(line.count("column_number") == 2 for line in text.splitlines())


def test_a_wide_table_is_transposed_when_that_fits() -> None:
    # 9 columns of numbers up to 14 characters need ~130 columns; 3 records turned into
    # columns need ~70
    console, out = _console()
    headers, rows = _cells(9, 3)
    print_table(console, headers, rows, title="best by sharpe")
    text = out.getvalue()
    _assert_intact(text, rows, 80)
    line = next(x for x in text.splitlines() if "column_number_3" in x)
    assert rows[0][3] in line
    assert rows[2][3] in line


def test_a_table_too_wide_either_way_becomes_one_block_per_record() -> None:
    console, out = _console(60)
    headers, rows = _cells(9, 6)
    print_table(console, headers, rows)
    text = out.getvalue()
    _assert_intact(text, rows, 60)
    assert text.count("column_number_8") == 6


def test_the_legend_follows_a_table_that_shows_undefined_values() -> None:
    console, out = _console()
    print_table(console, ["metric", "value"], [["sharpe", "—"]], notes=["a note"])
    assert out.getvalue().splitlines()[-2:] == ["a note", LEGEND]
    console, out = _console()
    print_table(console, ["metric", "value"], [["sharpe", "1.00"]])
    assert LEGEND not in out.getvalue()


def test_notes_are_printed_whole_on_one_line() -> None:
    console, out = _console(40)
    long = "x" * 120
    print_table(console, ["a", "b"], [["1", "2"]], notes=[long])
    assert long in out.getvalue().splitlines()
