"""``talkbench submit``, ``talkbench score``, ``talkbench leaderboard``, ``talkbench tables``:
thin wrappers over ``talkbench.leaderboard``. What reaches the metrics (evaluation, the papers'
protocols, the tables and the site: torch through the metric registry) is imported inside the
commands that use it, so ``talkbench --help`` stays quick."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from talkbench.baselines.method import MethodError
from talkbench.baselines.registry import method_names, method_options
from talkbench.cli.common import console, err_console, os_error_text, print_json
from talkbench.cli.listing import print_table
from talkbench.leaderboard.benchmarks import BenchmarkError, benchmark_names, get_benchmark, split_version
from talkbench.leaderboard.names import load_submitter_key
from talkbench.leaderboard.paper import PAPERS
from talkbench.leaderboard.ranking import boards_json
from talkbench.leaderboard.ranking import leaderboard as build_boards
from talkbench.leaderboard.reported import load_reported
from talkbench.leaderboard.store import Store, StoreError, default_store_path
from talkbench.util import atomic_write_text

STORE_HELP = "Leaderboard store (DuckDB); default $TALKBENCH_LEADERBOARD or the user data dir."


def _store(path: Optional[Path]) -> Store:
    target = path or default_store_path()
    check_store_path(target)
    try:
        store = Store(target)
        load_reported(store)
    except OSError as exc:  # e.g. under /proc, on a read-only file system
        raise StoreError(f"{target}: cannot open or create the leaderboard store ({os_error_text(exc)})") from None
    return store


def check_store_path(path: Path) -> None:
    """A store path that cannot be a DuckDB file fails here, before any work and without
    creating anything: a folder, something else that is not a file, a parent that is a file,
    a place that cannot be written to."""
    lock = path.with_name(path.name + ".lock")
    for candidate in (path, lock):
        if candidate.is_dir():
            raise StoreError(f"{candidate}: --store is a folder; give a DuckDB file, e.g. {path / 'leaderboard.duckdb'}")
        if candidate.exists() and not candidate.is_file():
            raise StoreError(f"{candidate}: --store is not a regular file")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise StoreError(f"{path}: cannot create the leaderboard store, {parent} is a file, not a folder")
    # Tried, not judged by permission bits (root passes those; /proc and read-only mounts do not):
    # the store opened for writing as it is, or a nameless file made and gone in its folder.
    try:
        if path.exists():
            with open(path, "r+b"):
                pass
        else:
            with tempfile.TemporaryFile(dir=parent):
                pass
    except OSError as exc:
        where = path if path.exists() else parent
        raise StoreError(f"{path}: cannot create or write the leaderboard store ({where}: {exc.strerror or exc})") from None


def _settings(metrics: Optional[str], protocol: str = "talkbench"):
    from talkbench.metrics.paper_protocols import protocol_settings  # the metric registry (torch)

    return protocol_settings(protocol, metrics)


def submit(
    path: Path = typer.Argument(..., help="Submission folder or zip: submission.yaml + videos/<clip_id>.mp4."),
    benchmark: str = typer.Option(..., "--benchmark", "-b", help="Benchmark name (sample, mnte, hdtf-test, mead-emotion)."),
    data: Optional[Path] = typer.Option(None, "--data", help="'talkbench data build' output holding the benchmark's clips."),
    store: Optional[Path] = typer.Option(None, "--store", help=STORE_HELP),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated metrics (default: the protocol's)."),
    protocol: str = typer.Option("talkbench", "--protocol", help="Named protocol: talkbench, or a paper table's (vqtalker-t2, flowvqtalker-t1, …) so the run fills that table's measured cells."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Evaluation processes (default: all cores) or Ray actors."),
    engine: str = typer.Option("local", "--engine", help="local (processes on this machine) or ray."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored run as JSON."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", help="File holding your submitter key (default: $TALKBENCH_SUBMITTER_KEY). The first submission of a method name makes it yours; later ones need the same key."),
) -> None:
    """Validate a submission (every problem at once), evaluate it with the metrics engine, store it."""
    from talkbench.leaderboard.evaluate import submit as do_submit  # the metrics engine (torch)

    settings = _settings(metrics, protocol)  # a bad metric or protocol fails before the validation, not after it
    spec = get_benchmark(benchmark)
    target = store or default_store_path()
    check_store_path(target)
    key = load_submitter_key(key_file)
    # A store that does not exist yet is created only once there is a run for it: a failing
    # submit leaves nothing behind.
    run_id = do_submit(path, spec, _store(target) if target.exists() else target, data_dir=data,
                       settings=settings, say=lambda m: err_console.print(f"[dim]{escape(m)}[/]"),
                       workers=workers or os.cpu_count() or 1, engine=engine, key=key)  # fmt: skip
    db = _store(target)
    run = next(r for r in db.runs(provenance="measured") if r["run_id"] == run_id)
    if as_json:
        print_json({"run_id": run_id, "store": str(db.path), "run": run})
        return
    console.print(f"stored run [bold]{run_id}[/] for {escape(run['method'])} on {run['benchmark']}@{run['benchmark_version']} "
                  f"(protocol {run['protocol_hash'][:12]}) in {db.path}")


def score(
    methods: list[str] = typer.Argument(..., help="Built-in methods (see 'baselines list'), e.g. static-source vqtalker-tiny."),
    benchmark: str = typer.Option(..., "--benchmark", "-b", help="Benchmark name (sample, mnte, hdtf-test, mead-emotion)."),
    data: Optional[Path] = typer.Option(None, "--data", help="'talkbench data build' output holding the benchmark's clips."),
    task: str = typer.Option("speech-driven", "--task", help="speech-driven or reconstruction."),
    store: Optional[Path] = typer.Option(None, "--store", help=STORE_HELP),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated metrics (default: the protocol's)."),
    protocol: str = typer.Option("talkbench", "--protocol", help="Named protocol: talkbench, or a paper table's (flowvqtalker-t1, …)."),
    out: Path = typer.Option(Path("talkbench-outputs"), "--out", "-o", help="Where the generated videos go."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Evaluation processes (default: all cores)."),
    device: Optional[str] = typer.Option(None, "--device", help="Where VQTalker's methods run: cpu (their default), auto, cuda, cuda:N or mps."),
) -> None:
    """Generate built-in methods' outputs on a benchmark, evaluate them, store one run each."""
    from talkbench.leaderboard.evaluate import check_protocol_fits, run_methods  # the metrics engine (torch)

    settings = _settings(metrics, protocol)
    spec = get_benchmark(benchmark)
    check_protocol_fits(settings.protocol_name, task, spec.name, spec.key)
    if task not in spec.tasks:  # this and the methods before the store is opened (and created)
        raise BenchmarkError(f"benchmark {spec.key} has no {task!r} task; it has {', '.join(spec.tasks)}")
    unknown = [m for m in methods if m not in method_names()]
    if unknown:
        raise MethodError(f"unknown method {unknown[0]!r}; registered: {', '.join(method_names())}")
    if device is not None:
        from talkbench.vqtalker.inference import resolve_device  # torch

        resolve_device(device, "--device")
        if not any("device" in method_options(m) for m in methods):
            err_console.print(f"warning: --device {escape(device)}: none of {', '.join(map(escape, methods))} "
                              "takes a device; they run as they always do")
    db = _store(store)
    run_ids = run_methods(db, methods, spec, task, out, data_dir=data, settings=settings,
                          say=lambda m: err_console.print(f"[dim]{escape(m)}[/]"),
                          workers=workers or os.cpu_count() or 1, device=device)  # fmt: skip
    for method, run_id in run_ids.items():
        console.print(f"stored run [bold]{run_id}[/] for {escape(method)} on {spec.key} ({task}) in {db.path}")


def leaderboard(
    benchmark: Optional[str] = typer.Option(None, "--benchmark", "-b", help="Only this benchmark."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | md | latex | csv | html | json"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write here (a directory for html)."),
    store: Optional[Path] = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """The ranking: each metric on Indo-European and non-Indo-European clips and the gap."""
    from talkbench.leaderboard import tables  # the papers' protocols: the metric registry (torch)

    renderers = {"md": tables.boards_markdown, "latex": tables.boards_latex, "csv": tables.boards_csv,
                 "json": boards_json}
    if fmt not in ("table", "html", *renderers):
        raise typer.BadParameter(f"unknown format {fmt!r}; choose table, md, latex, csv, html or json")
    name = split_version(benchmark)[0] if benchmark else None
    shipped = benchmark_names()
    target = store or default_store_path()
    if name is not None and name not in shipped and not target.exists():  # nothing to open, nothing created
        raise BenchmarkError(f"unknown benchmark {name!r}; choose from {', '.join(shipped)}")
    db = _store(target)
    if name is not None and name not in shipped:  # a misspelt name would show an empty board
        stored = sorted({b["name"] for b in db.benchmarks()})
        if name not in stored:
            raise BenchmarkError(f"unknown benchmark {name!r}; choose from {', '.join(sorted({*shipped, *stored}))}")
    boards = build_boards(db, benchmark)
    if fmt == "html":
        from talkbench.leaderboard.site import build_site  # the tables (torch, as above)

        index = build_site(db, out or Path("talkbench-site"), benchmark)
        console.print(f"site: {index}")
        return
    if fmt == "table":
        if not boards:
            where = f"of {benchmark} " if benchmark else ""
            console.print(f"no runs {where}yet: try 'talkbench demo', 'talkbench score' or 'talkbench submit'")
        for t in tables.boards_rich(boards):
            print_table(t)
        return
    text = renderers[fmt](boards)
    if out:
        atomic_write_text(out, text)
        console.print(f"wrote {out}")
    else:
        typer.echo(text, nl=False)


def tables_cmd(
    paper: str = typer.Option(..., "--paper", help="vqtalker | flowvqtalker"),
    fmt: str = typer.Option("md", "--format", "-f", help="md | latex"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file."),
    store: Optional[Path] = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """The papers' tables in their own layout, every cell marked reported or measured."""
    from talkbench.leaderboard.tables import render_paper  # the papers' protocols: the metric registry (torch)

    if paper.lower() not in PAPERS:
        raise typer.BadParameter(f"unknown paper {paper!r}; choose {' or '.join(PAPERS)}")
    if fmt not in ("md", "latex"):
        raise typer.BadParameter(f"unknown format {fmt!r}; choose md or latex")
    text = render_paper(_store(store), paper, fmt)
    if out:
        atomic_write_text(out, text)
        console.print(f"wrote {out}")
    else:
        typer.echo(text, nl=False)
