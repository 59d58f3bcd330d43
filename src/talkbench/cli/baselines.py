"""``talkbench baselines``: the papers' competitor methods — list them, run one from its own
checkout onto a benchmark, or import its released videos (comparison grids, per-clip folders)
as a submission that ``talkbench submit`` accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from talkbench.baselines.external import ExternalMethod, ExternalMethodError, PresetError, get_preset
from talkbench.baselines.external.import_dir import Target, import_dir, read_mapping
from talkbench.baselines.external.import_grid import split_grid
from talkbench.baselines.external.run import run_benchmark
from talkbench.baselines.method import MethodInfo, Task
from talkbench.cli.common import console, err_console, markup_safe, print_json
from talkbench.cli.listing import (Column, ListFormat, chosen_format, format_option, json_alias_option, print_listing,
                                   rich_table)
from talkbench.leaderboard.baseline_status import StatusRow, baseline_status_rows
from talkbench.leaderboard.benchmarks import get_benchmark, resolve_clips
from talkbench.leaderboard.submission import SubmissionError, validate_submission

app = typer.Typer(help="Competitor methods: list, run from a checkout, import released videos.",
                  no_args_is_help=True)

DATA_HELP = "'talkbench data build' output holding the benchmark's clips (not needed for 'sample')."


def _benchmark(name: str, data: Optional[Path]):
    spec = get_benchmark(name)
    clips = resolve_clips(spec, data)
    return spec, clips


def _pick_task(spec, tasks: list[str], requested: Optional[str], method: str) -> str:
    if requested:
        if requested not in spec.tasks:
            raise ExternalMethodError(f"benchmark {spec.key} has no {requested} task (it has {', '.join(spec.tasks)})")
        if tasks and requested not in tasks:
            raise ExternalMethodError(f"{method} does not do {requested} (it does {', '.join(tasks)})")
        return requested
    common = [t for t in spec.tasks if not tasks or t in tasks]
    if not common:
        raise ExternalMethodError(f"{method} does {', '.join(tasks)} but benchmark {spec.key} has "
                                  f"{', '.join(spec.tasks)}: nothing to run")
    return common[0]


def _verdict(out: Path, spec, problems: list[str], note: str = "") -> None:
    if problems:
        err_console.print(f"[yellow]the submission validator rejects {markup_safe(out)}[/]{note}")
        for p in problems[:20]:
            err_console.print(f"  - {markup_safe(p)}")
    else:
        console.print(f"[green]accepted by the submission validator[/]: talkbench submit {markup_safe(str(out))} --benchmark {spec.name}")


def _validate(out: Path, spec, clips) -> list[str]:
    """The submission validator's verdict: [] when it accepts the folder."""
    try:
        with validate_submission(out, spec, clips):
            return []
    except SubmissionError as exc:
        return exc.messages()


STATUS_COLOUR = {"runnable preset": "green", "import only": "yellow", "reported only": "red"}
TITLE = "Competitor methods (VQTalker / FlowVQTalker)"


def _tables_cell(r: StatusRow) -> str:
    return " ".join(key if status == r.status else f"{key} ({status})" for key, status in r.by_table)


def _code_cell(r: StatusRow) -> str:
    return f"{r.code.removeprefix('https://github.com/')} @ {r.commit[:10]}" if r.code else "-"


# The first four columns are the demo's short table; CSV carries every column whole.
COLUMNS: list[Column[StatusRow]] = [
    Column("method", lambda r: r.method, is_name=True),
    Column("status", lambda r: r.status, cell=lambda r: f"[{STATUS_COLOUR[r.status]}]{r.status}[/]"),
    Column("tables", lambda r: " ".join(r.tables), cell=_tables_cell),
    Column("tasks", lambda r: " ".join(r.tasks), heading="task", cell=lambda r: ", ".join(r.tasks)),
    Column("code", lambda r: r.code, heading="code @ commit", cell=_code_cell),
    Column("commit", lambda r: r.commit, in_table=False),
    Column("licence", lambda r: r.licence),
    Column("official", lambda r: r.official, in_table=False),
    Column("note", lambda r: r.note),
]


@app.command("list")
def list_(fmt: Optional[ListFormat] = format_option(), as_json: bool = json_alias_option()) -> None:
    """Every competitor method of the two papers: runnable preset, import only, or reported only."""
    rows = baseline_status_rows()
    print_listing(chosen_format(fmt, as_json), rows, COLUMNS, json_document=[r.to_dict() for r in rows], title=TITLE)


def status_table(rows: Optional[list[StatusRow]] = None, detail: bool = True) -> Table:
    """The competitor methods as a rich table (the demo shows it with ``detail=False``)."""
    rows = baseline_status_rows() if rows is None else rows
    return rich_table(rows, COLUMNS if detail else COLUMNS[:4], TITLE)


@app.command()
def show(name: str = typer.Argument(..., help="Method name (see 'baselines list')."),
         as_json: bool = typer.Option(False, "--json", help="Print the preset as JSON.")) -> None:
    """A method's preset: sources with commits, set-up, weights, inputs, commands, output."""
    p = get_preset(name)
    if as_json:
        print_json(json.loads(p.model_dump_json()) | {"status": p.status_label})
        return
    console.print(f"[bold]{p.name}[/] — {p.paper.title} ({p.paper.venue} {p.paper.year or ''}) — {p.status_label}")
    if p.code.public:
        console.print(f"code: {p.code.url} @ {p.code.commit}{'' if p.code.official else ' (unofficial)'}; "
                      f"licence: {p.code.licence} ({p.code.licence_source})")
        for s in p.code.sources:
            console.print(escape(f"  source {s.path} @ {s.commit[:12]}: {s.used_for}"))
    else:
        console.print(escape(f"code: not public — {p.code.note}"))
    for line in p.setup:
        console.print(escape(f"  setup: {line}"))
    for w in p.weights:
        console.print(escape(f"  weights: {w}"))
    for step in p.steps:
        console.print(escape(f"  run (cwd {step.cwd}): {' '.join(step.run)}"))
    if p.output:
        panel = f", panel {p.output.panel.index} of {p.output.panel.cols}x{p.output.panel.rows}" if p.output.panel else ""
        console.print(escape(f"  output: {p.output.dir}/{p.output.glob}{panel}"))
    if p.notes:
        console.print(escape(f"  notes: {p.notes}"))


@app.command()
def run(
    name: str = typer.Argument(..., help="Method name (see 'baselines list') or a preset YAML file."),
    benchmark: str = typer.Option(..., "--benchmark", "-b", help="Benchmark name (sample, mnte, hdtf-test, mead-emotion)."),
    repo: Path = typer.Option(..., "--repo", help="The method's checkout (at the preset's commit)."),
    python: Optional[str] = typer.Option(None, "--python", help="The method's interpreter (default: REPO/.venv/bin/python, else python3)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Submission folder (default: submissions/<method>-<benchmark>)."),
    data: Optional[Path] = typer.Option(None, "--data", help=DATA_HELP),
    task: Optional[str] = typer.Option(None, "--task", help="speech-driven or reconstruction (default: what both support)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N clips (a trial run; not submittable)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=1, help="Seconds per step (default: the preset's)."),
    size: Optional[int] = typer.Option(None, "--size", min=16, help="Output side in px (default: the reference's)."),
    controls: Optional[Path] = typer.Option(None, "--controls", help="Folder of <clip_id> control files, for methods that need them."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Carry on after a failing clip and list failures at the end."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the commands for the first clip; run nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Run a method from its own checkout on every clip of a benchmark → a submission folder."""
    preset = get_preset(name)
    spec, clips = _benchmark(benchmark, data)
    kind = _pick_task(spec, list(preset.tasks), task, preset.name)
    method = ExternalMethod(preset, repo, python=python, size=size, timeout_s=timeout, controls_dir=controls)
    frames = {c.id: c.frames for c in spec.clips}
    tasks = [Task(kind=kind, clip_id=c.id, reference=c.video, language=c.language, fps=spec.fps,
                  frames=frames.get(c.id) or 0, emotion=c.emotion) for c in clips][: limit or None]
    out = out or Path("submissions") / f"{preset.name}-{spec.name}"
    if dry_run:
        plan = method.plan(tasks[0])
        if as_json:
            print_json(plan)
            return
        console.print(f"{preset.name} on {tasks[0].clip_id} ({kind}), python {plan['python']}, checkout {plan['repo']}")
        for name, path in plan["inputs"].items():
            console.print(escape(f"  input {name}: {path}"))
        for item in plan["stage"]:
            console.print(escape(f"  stage {item['input']} -> {item['to']}"))
        for step in plan["steps"]:
            console.print(escape(f"  $ cd {step['cwd']} && {' '.join(step['argv'])}"))
        console.print(escape(f"  output: {plan['output']['dir']}/{plan['output']['glob']}"))
        return

    def progress(done: int, total: int | None, clip: str) -> None:
        err_console.print(f"[dim]{preset.name}: clip {done + 1}/{total} {clip}[/]")

    summary = run_benchmark(method, tasks, out, keep_going=keep_going, progress=progress)
    problems = _validate(out, spec, clips) if not summary.failed else []
    result = summary.to_dict() | {"benchmark": spec.key, "task": kind, "validator": problems or "accepted"}
    if as_json:
        print_json(result)
    else:
        console.print(f"{preset.name} on {spec.key} ({kind}): {len(summary.done)} clip(s) in {out}; logs in {summary.logs}")
        for w in summary.warnings:
            console.print(f"[yellow]warning[/] {markup_safe(w)}")
        for cid, err in summary.failed.items():
            err_console.print(f"[red]{markup_safe(cid)}[/]: {markup_safe(str(err))}")
        if not summary.failed:
            _verdict(out, spec, problems, " (--limit ran a subset)" if limit else "")
    if summary.failed or (problems and not limit):
        raise typer.Exit(1)


@app.command("import-grid")
def import_grid(
    video: Path = typer.Argument(..., help="A side-by-side comparison video."),
    layout: str = typer.Option(..., "--layout", help="COLSxROWS, e.g. 4x1."),
    panel: int = typer.Option(..., "--panel", min=1, help="Panel side in pixels; the grid must be exactly COLS*panel x ROWS*panel."),
    names: str = typer.Option(..., "--names", help="One name per panel, row by row, comma-separated; '-' skips a panel."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: <video stem>-panels)."),
    fps: Optional[float] = typer.Option(None, "--fps", min=1, help="Resample to this frame rate (default: keep the grid's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Split a COLSxROWS grid video into one video per panel (audio kept); report blank or identical panels."""
    result = split_grid(video, out or video.with_name(f"{video.stem}-panels"), layout, panel,
                        [n.strip() for n in names.split(",")], fps=fps)
    if as_json:
        print_json(result.to_dict())
        return
    table = Table("#", "name", "row", "col", "file", "mean", "std", "check",
                  title=f"{markup_safe(video.name)}: {result.cols}x{result.rows} panels of {result.panel} px, "
                        f"{result.frames} frames at {result.fps:g} fps", title_justify="left")
    for p in result.panels:
        check = "blank" if p.blank else (f"= {', '.join(p.identical_to)}" if p.identical_to else "ok")
        table.add_row(str(p.index), p.name, str(p.row), str(p.col), p.path or "(skipped)",
                      f"{p.mean:.1f}", f"{p.std:.1f}", check)
    console.print(table)
    for w in result.warnings:
        console.print(f"[yellow]warning[/] {markup_safe(w)}")


@app.command("import")
def import_(
    src: Path = typer.Argument(..., help="Folder of per-clip videos."),
    method: str = typer.Option(..., "--method", "-m", help="Method name (a known preset fills the metadata)."),
    benchmark: str = typer.Option(..., "--benchmark", "-b", help="Benchmark name."),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="YAML/JSON {file: clip_id} or CSV file,clip_id."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Submission folder (default: submissions/<method>-<benchmark>)."),
    data: Optional[Path] = typer.Option(None, "--data", help=DATA_HELP),
    task: Optional[str] = typer.Option(None, "--task", help="speech-driven or reconstruction."),
    size: Optional[int] = typer.Option(None, "--size", min=16, help="Output side in px (default: the reference's)."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Write what matches even if clips are missing."),
    licence: Optional[str] = typer.Option(None, "--licence", help="Licence of the imported videos."),
    lossy: bool = typer.Option(False, "--lossy", help="Write H.264 CRF 18 instead of lossless video "
                               "(~20x smaller, e.g. for the leaderboard's per-video size cap; adds codec loss)."),
    as_json: bool = typer.Option(False, "--json", help="Print the import report as JSON."),
) -> None:
    """Map a folder of per-clip videos onto a benchmark's clip ids → a submission folder."""
    spec, clips = _benchmark(benchmark, data)
    try:
        preset = get_preset(method)
        info = preset.method_info()
        tasks = list(preset.tasks)
    except PresetError:
        info = MethodInfo(name=method, kind="external", description=f"{method}: imported released videos")
        tasks = []
    if licence:
        info = info.model_copy(update={"licence": licence})
    # released videos can be of a task the public code does not run (AniTalker's Table 1 rows)
    kind = _pick_task(spec, [] if task else tasks, task, info.name)
    frames = {c.id: c.frames for c in spec.clips}
    targets = [Target(clip_id=c.id, reference=c.video, frames=frames.get(c.id)) for c in clips]
    out = out or Path("submissions") / f"{info.name}-{spec.name}"
    result = import_dir(src, out, targets, info, kind, mapping=read_mapping(mapping) if mapping else None,
                        size=size, fps=spec.fps, allow_missing=allow_missing, lossless=not lossy)
    problems = _validate(out, spec, clips)
    report = result.to_dict() | {"benchmark": spec.key, "task": kind, "validator": problems or "accepted"}
    if as_json:
        print_json(report)
    else:
        console.print(f"{info.name}: {len(result.matched)} of {len(targets)} clips of {spec.key} imported into {out}")
        for name in result.unmatched:
            console.print(f"[yellow]unmatched file[/] {markup_safe(name)}")
        for cid in result.missing:
            console.print(f"[yellow]missing clip[/] {markup_safe(cid)}")
        for w in result.warnings:
            console.print(f"[yellow]warning[/] {markup_safe(w)}")
        _verdict(out, spec, problems)
    if problems and not allow_missing:
        raise typer.Exit(1)
