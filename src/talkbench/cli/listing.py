"""Listings that survive a pipe: one list of typed rows printed as a rich table, CSV or JSON
(``--format table|csv|json``), shared by ``baselines list``, ``weights list`` and ``media probe``;
``leaderboard`` prints its own boards through ``print_table``.

On a terminal a table fits the terminal, but a name column folds onto a second line rather
than ending in "…". Piped or redirected, a table is printed at its natural width, so every
cell is whole and ``grep`` finds it. CSV is a header row and one row per item (RFC 4180, via
the csv module); JSON is the command's own document."""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Generic, Optional, Sequence, TypeVar, Union

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from talkbench.cli.common import console, print_json, printable

Row = TypeVar("Row")
Value = Union[str, int, float, bool, None]

# Wider than any table we print, so measuring one gives its natural, unwrapped width.
_UNLIMITED = 1_000_000


class ListFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def format_option() -> Any:
    """The ``--format/-f`` option every listing takes (a fresh one per command)."""
    return typer.Option(None, "--format", "-f", case_sensitive=False,
                        help="table (default), csv (a header row, then one row each) or json.")


def json_alias_option() -> Any:
    return typer.Option(False, "--json", help="Same as --format json.")


def chosen_format(fmt: Optional[ListFormat], as_json: bool) -> ListFormat:
    """``--json`` is the older spelling of ``--format json``; the two may not disagree."""
    if as_json and fmt not in (None, ListFormat.json):
        raise typer.BadParameter(f"--json and --format {fmt.value} disagree; give one of them")
    return ListFormat.json if as_json else (fmt or ListFormat.table)


@dataclass(frozen=True)
class Column(Generic[Row]):
    """One column of a listing. ``key`` heads the CSV; ``value`` is the whole value CSV writes.
    The table may show it differently (``cell``: abbreviated, coloured with rich markup) or not
    at all (``in_table=False``)."""

    key: str
    value: Callable[[Row], Value]
    heading: str = ""  # the table's heading; "" shows the key
    cell: Optional[Callable[[Row], str]] = None  # the table's text; None shows the value
    in_table: bool = True
    is_name: bool = False  # what the row is called: never cut in the table


def print_listing(fmt: ListFormat, rows: Sequence[Row], columns: Sequence[Column[Row]], *,
                  json_document: Any, title: Optional[str] = None) -> None:
    if fmt is ListFormat.json:
        print_json(json_document)
    elif fmt is ListFormat.csv:
        sys.stdout.write(csv_text(rows, columns))
    else:
        print_table(rich_table(rows, columns, title))


def csv_text(rows: Sequence[Row], columns: Sequence[Column[Row]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([c.key for c in columns])
    for row in rows:
        writer.writerow([_csv_value(c.value(row)) for c in columns])
    return buf.getvalue()


def rich_table(rows: Sequence[Row], columns: Sequence[Column[Row]], title: Optional[str] = None) -> Table:
    shown = [c for c in columns if c.in_table]
    table = Table(title=title, title_justify="left")
    for c in shown:
        table.add_column(c.heading or c.key, overflow="fold" if c.is_name else "ellipsis")
    for row in rows:
        table.add_row(*[c.cell(row) if c.cell else _table_text(c.value(row)) for c in shown])
    return table


def print_table(table: Table) -> None:
    """On a terminal, fit the terminal; otherwise print at the table's natural width, so a
    pipe or a file gets every cell whole whatever ``COLUMNS`` says."""
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(_UNLIMITED), table).maximum
    Console(width=natural, file=console.file).print(table)


def _csv_value(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _table_text(value: Value) -> Text:
    # Text, not a markup string: a file name such as "take[2].mp4" must print as it is; printable:
    # nor may a newline or an escape sequence in one forge a row or recolour the terminal
    return Text("-" if value is None or value == "" else printable(_csv_value(value)))
