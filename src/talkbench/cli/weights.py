"""``talkbench weights``: list, fetch, import and verify network weight files."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.progress import DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from talkbench import weights
from talkbench.cli.common import console, err_console, print_json
from talkbench.cli.listing import Column, ListFormat, chosen_format, format_option, json_alias_option, print_listing
from talkbench.weights import WeightSpec, WeightStatus

app = typer.Typer(help="Network weight files: list, fetch, import, verify.", no_args_is_help=True)


REPLACE_HELP = ("For a file without a full published sha256: install it even though a different file is "
                "recorded under this name (or none is), and record the new sha256 (numbers made with the two "
                "do not compare).")

# Modules that register weight files when imported (the metric ones live in talkbench.weights).
WEIGHT_MODULES = ("talkbench.metrics.registry", "talkbench.vqtalker.losses", "talkbench.vqtalker.speech")


def _load_registry() -> None:
    for module in WEIGHT_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:  # an optional extra that is not installed registers nothing
            pass


@dataclass(frozen=True)
class Listed:
    """A registered weight file and what the cache holds of it: one row of ``weights list``."""

    spec: WeightSpec
    status: WeightStatus

    @property
    def sha256(self) -> str | None:
        """The installed file's hash, else the registered one (or its torch-hub prefix)."""
        return self.status.sha256 or self.spec.sha256 or self.spec.sha256_prefix


COLUMNS: list[Column[Listed]] = [
    Column("name", lambda w: w.spec.name, is_name=True),
    Column("state", lambda w: w.status.state),
    Column("sha256", lambda w: w.sha256, cell=lambda w: (w.sha256 or "-")[:16]),
    Column("licence", lambda w: w.spec.licence),
    Column("url", lambda w: w.spec.url),
    Column("path", lambda w: w.status.path, in_table=False),
]


@app.command(name="list")
def list_(fmt: Optional[ListFormat] = format_option(), as_json: bool = json_alias_option()) -> None:
    """Every registered weight file, its source, licence and whether it is installed."""
    _load_registry()
    rows = [Listed(spec, weights.status(spec.name)) for spec in weights.registered()]
    fmt = chosen_format(fmt, as_json)
    document = {"cache_dir": str(weights.cache_dir()),
                "weights": [{**w.spec.to_dict(), "status": w.status.to_dict()} for w in rows]}
    print_listing(fmt, rows, COLUMNS, json_document=document)
    if fmt is ListFormat.table:
        console.print(f"cache: {weights.cache_dir()}", soft_wrap=True, markup=False)


@app.command()
def fetch(
    name: str = typer.Argument(..., help="Weight name (see `talkbench weights list`)."),
    url: str = typer.Option(None, "--url", help="Download from this mirror instead of the registered URL."),
    replace: bool = typer.Option(False, "--replace", help=REPLACE_HELP),
) -> None:
    """Download a weight file into the cache and check its sha256."""
    _load_registry()
    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=err_console) as bar:
        task = bar.add_task(name, total=None)
        path = weights.fetch(name, url=url, replace=replace,
                             progress=lambda done, total, _label: bar.update(task, completed=done, total=total))
    console.print(f"{name}: {path} (sha256 {weights.file_sha256(path)})", soft_wrap=True, markup=False)


@app.command(name="import")
def import_(
    name: str = typer.Argument(..., help="Weight name (see `talkbench weights list`)."),
    path: Path = typer.Argument(..., help="A copy of the file obtained elsewhere."),
    replace: bool = typer.Option(False, "--replace", help=REPLACE_HELP),
) -> None:
    """Install a weight file copied from another machine (checked against its sha256; the sha256
    of a file without a published one is recorded)."""
    _load_registry()
    target = weights.import_file(name, path, replace=replace)
    console.print(f"{name}: installed {target} (sha256 {weights.file_sha256(target)})", soft_wrap=True, markup=False)


@app.command()
def verify(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Re-hash every installed weight file; exit 1 if any fails its check (bad-hash, or an
    unpinned file whose sha256 is not recorded)."""
    _load_registry()
    statuses = weights.verify()
    if as_json:
        print_json([s.to_dict() for s in statuses])
    else:
        table = Table("name", "state", "sha256", "expected", "path")
        for s in statuses:
            table.add_row(s.name, s.state, (s.sha256 or "-")[:16], (s.expected or "-")[:16], s.path or "-")
        console.print(table)
        for s in statuses:
            if s.state in ("bad-hash", "unrecorded"):
                err_console.print(f"{s.name}: {s.detail}", soft_wrap=True, markup=False)
    if any(s.state in ("bad-hash", "unrecorded") for s in statuses):
        raise typer.Exit(1)
