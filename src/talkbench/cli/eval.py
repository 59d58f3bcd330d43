"""``talkbench eval``: the metrics of generated videos against ground truth and/or portraits,
one row per method; ``talkbench cache``: the on-disk analysis cache."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import typer
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from talkbench.cli.common import console, err_console, markup_safe, print_json, printable
from talkbench.cli.listing import print_table
from talkbench.errors import MetricError
from talkbench.leaderboard.directions import metric_direction
from talkbench.metrics import cache

ARROW = {True: "↑", False: "↓", None: ""}  # higher / lower is better / a value no metric declares


class NoValueError(MetricError):
    """An evaluation in which no metric produced a value for a method: the message says why."""


# What the user can give when a metric had no value for this reason (the scorer's wording).
HINTS = {
    "no ground-truth video given": "give --reference",
    "CSIM needs a source portrait or the ground-truth video": "give --source-portrait or --reference",
    "the clip has no emotion label": "give --emotion",
}


def eval_(
    generated: list[Path] = typer.Option(
        ..., "--generated", "-g", help="A generated video, or a folder of them; repeat for several methods."
    ),
    reference: Path = typer.Option(None, "--reference", "-r", help="Ground-truth video, or folder matched by file name."),
    source_portrait: Path = typer.Option(
        None, "--source-portrait", "-p", help="Identity image for CSIM: one image, or a folder matched by file name."
    ),
    protocol: str = typer.Option("talkbench", "--protocol", help="Named protocol: talkbench (default) or a paper table's, e.g. vqtalker-t2, flowvqtalker-t1 (docs/paper-protocols.md)."),
    metrics: str = typer.Option(None, "--metrics", "-m", help="Comma-separated subset of the protocol's metrics, e.g. ssim,cpbd,lmd."),
    identity_backend: str = typer.Option(None, "--identity", help="CSIM embedding: dlib (offline), arcface or insightface."),
    face_backend: str = typer.Option(None, "--face-backend", help="Landmarks for LMD and MSI: dlib (offline) or fan."),
    csim_reference: str = typer.Option(None, "--csim-reference", help="portrait, ground-truth-frame or auto."),
    csim_stride: int = typer.Option(None, "--csim-stride", help="Embed every Nth frame (default 5 for dlib, 1 for arcface)."),
    fid_stride: int = typer.Option(None, "--fid-stride", help="Use every Nth frame for FID."),
    audio: Path = typer.Option(None, "--audio", "-a", help="Driving speech for LSE-C/LSE-D: one file, or a folder matched by file name (default: each video's own audio)."),
    emotion: str = typer.Option(None, "--emotion", help="The clips' emotion label for emotion accuracy (MEAD's names)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the bootstrap intervals."),
    workers: int = typer.Option(None, "--workers", "-w", min=1, help="Processes (default: all cores) or Ray actors."),
    engine: str = typer.Option("local", "--engine", help="local (processes on this machine) or ray."),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster address (default: start a local Ray)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the analysis cache."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (docs/schemas/evaluation-report.schema.json)."),
) -> None:
    """Evaluate generated talking-head videos: per-clip values, means with 95% intervals,
    FID/FVD and the protocol; one row per method (-g)."""
    # the engine and the protocols load every metric module (torch): only when a command runs
    from talkbench.metrics.engine import ENGINES, ClipJob, evaluate, match_folders
    from talkbench.metrics.paper_protocols import protocol_settings

    if engine not in ENGINES:
        raise MetricError(f"unknown --engine {engine!r}; choose {' or '.join(ENGINES)}")
    if ray_address is not None and engine != "ray":
        raise MetricError(f"--ray-address {ray_address} is for --engine ray, not --engine {engine}")
    if emotion is not None:
        from talkbench.metrics.emotion import MEAD_TO_FER  # torch

        if emotion.strip().lower() not in MEAD_TO_FER:
            raise MetricError(f"unknown --emotion {emotion!r}; MEAD's labels are {', '.join(MEAD_TO_FER)}")
    for path, what in [*((g, "--generated") for g in generated), (reference, "--reference"), (source_portrait, "--source-portrait"), (audio, "--audio")]:
        if path is not None and not path.exists():
            raise MetricError(f"{path}: {what} does not exist")
    kinds = {g.is_dir() for g in generated}
    if len(kinds) > 1 or (reference is not None and kinds != {reference.is_dir()}):
        raise MetricError(f"{', '.join(map(str, [*generated, reference]))}: give videos or folders, not a mix")
    settings = protocol_settings(
        protocol, metrics, seed=seed, use_cache=not no_cache, identity_backend=identity_backend,
        face_backend=face_backend, csim_reference=csim_reference, csim_frame_stride=csim_stride, fid_frame_stride=fid_stride,
    )  # fmt: skip
    names = _method_names(generated)
    jobs = []
    for path, name in zip(generated, names):
        if path.is_dir():
            jobs += [replace(job, audio=_matching(audio, job.clip_id), emotion=emotion)
                     for job in match_folders(path, reference, source_portrait, name)]  # fmt: skip
        else:
            jobs.append(ClipJob(name, path.stem, path, reference, source_portrait, audio=_matching(audio, path.stem), emotion=emotion))
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("evaluating", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=f"evaluating {label}")

        report = evaluate(jobs, settings, workers or os.cpu_count() or 1, engine, progress, ray_address=ray_address)
    if as_json:
        print_json(report.to_dict())
    else:
        _render(report)
    for result in report.evaluations:  # on stderr with --json too: the JSON alone is easy to miss
        _warn(result)
    empty = [r for r in report.evaluations if not (r.summary or r.distribution)]
    if empty:
        raise NoValueError("; ".join(_why_no_value(r, len(report.evaluations) > 1) for r in empty))
    if any(r.errors for r in report.evaluations):
        raise typer.Exit(1)


def _matching(audio: Path | None, clip_id: str) -> Path | None:
    """The driving audio of one clip: the file given, or the file named like the clip in a folder.
    A folder without it gives a path that does not exist: that clip's lip-sync metrics say so,
    and the other clips and metrics are measured."""
    if audio is None or not audio.is_dir():
        return audio
    found = sorted(p for p in audio.iterdir() if p.stem == clip_id and p.is_file())
    return found[0] if found else audio / f"{clip_id}.*"


def _method_names(paths: list[Path]) -> list[str]:
    """A folder's name (a file's stem), or its path where two would share a name."""
    names = [p.name if p.is_dir() else p.stem for p in paths]
    if len(set(names)) != len(names):
        names = [str(p) for p in paths]
    return names


MAX_CLIP_COLUMNS = 6


def _render(report) -> None:
    results = report.evaluations
    better = {v: ARROW[metric_direction(v)] for r in results for v in (*r.summary, *r.distribution)}
    if len(results) == 1:
        _render_one(results[0], better)
    else:
        names = sorted({n for r in results for n in r.summary} | {n for r in results for n in r.distribution})
        faces = any(r.frames_without_face()[0] for r in results)
        table = Table("method", "clips", *(f"{n} {better.get(n, '')}".strip() for n in names),
                      *(["frames without a face"] if faces else []))
        for r in results:
            cells = []
            for n in names:
                s = r.summary.get(n) or r.distribution.get(n)
                cells.append(_with_interval(getattr(s, "mean", getattr(s, "value", None)), s.ci95) if s else "-")
            if faces:
                without, looked = r.frames_without_face()
                cells.append(_of(without, looked) if looked else "-")
            failed = f" ({len(r.errors)} failed)" if r.errors else ""
            table.add_row(Text(printable(r.method)), f"{len(r.clips)}{failed}", *cells)
        print_table(table)
        console.print("mean over clips [95% bootstrap interval]; --json has every clip")
    first = results[0]
    clip_seconds = sum(r.timing.clip_seconds for r in results)
    frames = sum(r.timing.frames for r in results)
    cached = sum(r.timing.clips_cached for r in results)
    console.print(
        f"{sum(len(r.clips) for r in results)} clips ({cached} from the cache), {frames} frames measured in "
        f"{first.timing.seconds:.1f} s wall on {first.timing.workers} {first.timing.engine} worker(s) "
        f"({1000 * clip_seconds / frames if frames else 0:.0f} ms/frame per worker); "
        f"protocol {first.protocol.name} sha256 {first.protocol_sha256[:12]}"
    )


def _render_one(result, better: dict) -> None:
    """One row per value; the mean over clips, then each clip while they fit; then the frames
    the values did not see (without a face, past the ground truth's end) and the failed clips."""
    if not (result.summary or result.distribution or result.clips):
        return  # every clip failed: the errors say why
    clips = result.clips if len(result.clips) <= MAX_CLIP_COLUMNS else []
    table = Table("value", "mean [95% CI]", "clips")
    for c in clips:
        table.add_column(Text(printable(c.id)))  # a file name: printed as it is, never as markup
    for name, s in result.summary.items():
        label = f"{name} {better.get(name, '')}".strip()
        table.add_row(label, _with_interval(s.mean, s.ci95), str(s.clips), *(_fmt(c.values.get(name)) for c in clips))
    without, looked = result.frames_without_face()
    if without:
        table.add_row("frames without a face", _of(without, looked), str(sum(bool(c.frames_without_face) for c in result.clips)),
                      *(_of(c.frames_without_face, c.frames.generated) if c.frames_without_face is not None else "-" for c in clips))  # fmt: skip
    not_compared = [c.frames.generated - c.frames.compared for c in result.clips]
    if any(not_compared):
        table.add_row("frames not compared", _of(sum(not_compared), sum(c.frames.generated for c in result.clips)),
                      str(sum(map(bool, not_compared))), *(str(n) for n in not_compared[: len(clips)]))  # fmt: skip
    if result.errors:
        table.add_row("clips failed", _of(len(result.errors), len(result.errors) + len(result.clips)), str(len(result.errors)),
                      *("" for _ in clips))  # fmt: skip
    if result.summary or without or any(not_compared) or result.errors:
        print_table(table)
    for name, d in result.distribution.items():
        console.print(f"{name}: {_with_interval(d.value, d.ci95)} ({d.generated_samples} generated vs "
                      f"{d.reference_samples} reference samples)")  # fmt: skip


def _warn(result) -> None:
    """A warning line on stderr for each clip with frames a metric did not see, each metric
    without a value and each failed clip."""
    prefix = f"{markup_safe(result.method)}: " if result.method else ""
    for clip in result.clips:
        name = markup_safe(clip.id) if clip.id == result.method else f"{prefix}{markup_safe(clip.id)}"
        used = ", ".join(f"{k.removesuffix('_frames')} used {v}" for k, v in clip.faces.items() if k.endswith("_frames") and not k.endswith("without_face"))
        if clip.frames_without_face:
            err_console.print(f"[yellow]warning:[/] {name}: {clip.frames_without_face} of "
                              f"{clip.frames.generated} generated frames have no face; the face metrics skipped them"
                              + (f" ({used})" if used else ""))  # fmt: skip
        reference = clip.faces.get("reference_frames_without_face")
        if reference:
            err_console.print(f"[yellow]warning:[/] {name}: {reference} of {clip.frames.reference} "
                              "ground-truth frames have no face; the face metrics skipped them")  # fmt: skip
        if clip.frames.generated > clip.frames.compared:
            err_console.print(f"[yellow]warning:[/] {name}: {clip.frames.generated - clip.frames.compared} "
                              f"of {clip.frames.generated} generated frames are past the ground truth's end, not compared")  # fmt: skip
    if result.summary or result.distribution:  # otherwise the error that ends the run gives these reasons
        for metric, reason in result.unavailable.items():
            err_console.print(f"[yellow]warning:[/] {prefix}{metric} has no value: {markup_safe(reason)}")
    for error in result.errors:
        name = markup_safe(error.id) if error.id == result.method else f"{prefix}{markup_safe(error.id)}"
        err_console.print(f"[red]failed:[/] {name}: {markup_safe(error.error)}")


def _why_no_value(result, name_method: bool) -> str:
    """Why a method has no value at all: each reason once, with the metrics it stopped and what
    the user can give."""
    who = f" for {result.method}" if name_method else ""
    if result.errors and not result.clips:
        return f"no metric produced a value{who}: {_of(len(result.errors), len(result.errors))} clips failed (listed above)"
    by_reason: dict[str, list[str]] = {}
    for name, reason in result.unavailable.items():
        by_reason.setdefault(reason, []).append(name)
    parts = []
    for reason, names in by_reason.items():
        hint = HINTS.get(reason)
        parts.append(f"{', '.join(names)}: {reason}" + (f" ({hint})" if hint else ""))
    return f"no metric produced a value{who}: " + ("; ".join(parts) or "no metric was measured")


def _of(part: int | None, whole: int | None) -> str:
    return "-" if part is None else f"{part} of {whole}"


def _with_interval(value, interval) -> str:
    if value is None:
        return "-"
    return f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else f"{value:.4f}"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


cache_app = typer.Typer(help="The on-disk analysis cache (face tracks, embeddings, features, clip results).",
                        no_args_is_help=True)  # fmt: skip


@cache_app.command("info")
def cache_info(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Where the cache is, and its entries and size per kind."""
    rows = cache.info()
    if as_json:
        print_json({"root": str(cache.cache_root()), "kinds": [r.__dict__ for r in rows]})
        return
    table = Table("kind", "entries", "MB", "partial")
    for r in rows:
        table.add_row(r.kind, str(r.entries), f"{r.bytes / 1e6:.1f}", str(r.partial))
    console.print(f"analysis cache: {cache.cache_root()}")
    console.print(table)


@cache_app.command("clear")
def cache_clear(
    kind: list[str] = typer.Option(None, "--kind", help="Only these kinds (faces, identity, features, clips)."),
) -> None:
    """Remove cached analyses (all kinds unless --kind)."""
    try:
        freed = cache.clear(tuple(kind) if kind else cache.KINDS)
    except ValueError as exc:
        raise MetricError(str(exc)) from None
    console.print(f"removed {freed / 1e6:.1f} MB from {cache.cache_root()}")
