"""``talkbench audit``: the language-bias audit of a dataset (how Indo-European is it?)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import typer
from rich.progress import Progress
from rich.table import Table

from talkbench.cli.common import console, err_console, print_json
from talkbench.datasets.audit import (DEFAULT_THRESHOLD, AuditError, AuditReport, compare_table, fmt_ci, fmt_hours,
                                      fmt_pct, low_confidence_by_family, model_line)
from talkbench.datasets.audit import audit as run_audit
from talkbench.datasets.audit import compare as run_compare
from talkbench.util import ProgressCallback


def audit(
    sources: list[Path] = typer.Argument(..., help="A catalog.duckdb (or its folder) or a folder of audio/video "
                                                   "files; with --compare, several of these or audit report folders."),
    out: Path = typer.Option(None, "--out", help="Report folder (default: audit-NAME, NAME from the source)."),
    engine: str = typer.Option("faster-whisper", help="Language-ID engine: faster-whisper | openai-whisper."),
    model: str = typer.Option("base", help="Whisper model: a name (base, small, medium, large-v3, ...; our cache "
                                           "first, else the library downloads it) or a local folder/checkpoint. A "
                                           "larger one for short clips and languages where base is unsure."),
    labels_from_folders: bool = typer.Option(False, "--labels-from-folders",
                                             help="Each file's parent folder names its known language (ISO code); "
                                                  "misses of language ID are listed."),
    compare: bool = typer.Option(False, "--compare", help="Put the SOURCES side by side (VQTalker Table 6 layout)."),
    dataset: str = typer.Option(None, help="Dataset name (matched with the paper's Table 6); default: from the source."),
    threshold: float = typer.Option(DEFAULT_THRESHOLD, "--min-confidence", "--threshold",
                                    help="Clips whose top language probability is under this are reported apart as "
                                         "low confidence (the default is measured: docs/language-id.md)."),
    seed: int = typer.Option(0, min=0, help="Bootstrap seed (recorded in the report)."),
    bootstrap: int = typer.Option(2000, help="Bootstrap resamples for the 95% intervals."),
    cache: Path = typer.Option(None, help="Language-ID cache file (default: USER_CACHE/talkbench/audit-lid.sqlite)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the language-ID cache."),
    threads: int = typer.Option(2, min=1, help="CPU threads for language ID."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Counts, hours and shares by language and family, the Indo-European share with a bootstrap
    95% interval, no-speech and low-confidence clips, the paper's figure when it measured the dataset;
    written as Markdown, HTML, CSV and JSON."""
    cache_arg = None if no_cache else (cache or "default")
    kwargs = dict(engine=engine, model=model, threads=threads, labels_from_folders=labels_from_folders,
                  threshold=threshold, seed=seed, n_bootstrap=bootstrap, cache=cache_arg)
    if compare:
        out_dir = out or Path("audit-compare")
        result = run_compare(sources, out_dir, **kwargs)
        if as_json:
            print_json(result.to_json())
            return
        table = Table("dataset", "Indo-European, clips (95% CI)", "by hours (95% CI)", "paper", "clips", "hours",
                      title="Indo-European share (VQTalker Table 6 layout)")
        for row in compare_table(result.rows):
            table.add_row(row[0], f"{row[1]} ({row[2]})", f"{row[3]} ({row[4]})", row[5], row[6], row[7])
        console.print(table)
        console.print(f"reports: {result.files['md']}, {result.files['html']}")
        return
    if len(sources) != 1:
        raise AuditError(f"one SOURCE to audit, got {len(sources)}; to put several side by side add --compare")
    source = sources[0]
    out_dir = out or Path(f"audit-{source.resolve().name if source.is_dir() else source.resolve().parent.name}")

    with _progress(as_json) as progress:
        res = run_audit(source, out_dir, dataset=dataset, progress=progress, **kwargs)
    if as_json:
        print_json(res.report.to_json() | {"files": res.files})
        return
    print_summary(res.report, res.files)


@contextmanager
def _progress(quiet: bool) -> Iterator[ProgressCallback | None]:
    if quiet:
        yield None
        return
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("language ID", total=None)

        def update(done: int, total: int | None, name: str) -> None:
            bar.update(task, completed=done, total=total, description=f"language ID {name}"[:60])

        yield update


def print_summary(r: AuditReport, files: dict) -> None:
    ie, t, ls = r.indo_european, r.totals, r.language_sources
    table = Table("language", "family", "clips", "share", "hours", title=f"{r.title}  ({t.clips} clips, "
                                                                        f"{fmt_hours(t.hours)} h)")
    for x in r.languages[:15]:
        name = f"{x.name} ({x.code})"
        table.add_row(f"[bold]{name}[/]" if x.indo_european else name, x.family, str(x.clips),
                      fmt_pct(x.share_clips), fmt_hours(x.hours))
    if len(r.languages) > 15:
        table.add_row(f"… {len(r.languages) - 15} more", "", "", "", "")
    console.print(table)
    line = (f"Indo-European: [bold]{fmt_pct(ie.clips)}[/] of clips (95% CI {fmt_ci(ie.clips_ci95)}), "
            f"{fmt_pct(ie.hours)} of hours (95% CI {fmt_ci(ie.hours_ci95)})")
    if r.paper:
        p = r.paper
        where = p.where if p.kind == "measured" else "stated in its text"
        line += f"; paper ({where}): {p.indo_european_pct:g}%"
    console.print(line)
    console.print(f"no speech: {t.no_speech}, unreadable: {t.errors}; languages from catalog {ls.catalog}, "
                  f"cache {ls.cache}, new LID {ls.lid}; language ID: {model_line(r.settings)}",
                  soft_wrap=True, markup=False)
    lc = r.low_confidence
    by_family = low_confidence_by_family(r)
    console.print(f"low confidence (p < {lc.threshold:g}): {lc.count} of {t.clips} clips"
                  + (f"; of each family: {by_family}" if by_family else "")
                  + (" (listed in the report and low_confidence.csv)" if lc.count else ""), soft_wrap=True)
    if r.emotions:
        shares = ", ".join(f"{x.emotion} {fmt_pct(x.share_clips)}" for x in r.emotions)
        levels = ", ".join(f"level {x.intensity} {fmt_pct(x.share_clips)}" for x in r.intensities or [])
        console.print(f"emotions (of clips): {shares}" + (f"; intensities: {levels}" if levels else ""), soft_wrap=True)
    if r.labels:
        console.print(f"labels: {len(r.labels.misses)} language-ID misses of {r.labels.labelled} "
                      f"(listed in the report); labels say Indo-European {fmt_pct(r.labels.indo_european.clips)}")
    console.print(f"report: {files.get('html')}  (also {Path(files.get('markdown', '')).name}, report.json, CSV)",
                  soft_wrap=True)  # a path stays on one line, for copying
