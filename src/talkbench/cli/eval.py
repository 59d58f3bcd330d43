"""``talkbench eval``: the metrics of generated videos against ground truth and/or portraits."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from talkbench.cli.common import console, err_console, print_json


def eval_(
    generated: Path = typer.Option(..., "--generated", "-g", help="A generated video, or a folder of them."),
    reference: Path = typer.Option(None, "--reference", "-r", help="Ground-truth video, or folder matched by file name."),
    source_portrait: Path = typer.Option(
        None, "--source-portrait", "-p", help="Identity image for CSIM: one image, or a folder matched by file name."
    ),
    metrics: str = typer.Option(None, "--metrics", "-m", help="Comma-separated subset, e.g. ssim,cpbd,lmd."),
    identity_backend: str = typer.Option("dlib", "--identity", help="CSIM embedding: dlib (offline) or arcface."),
    face_backend: str = typer.Option("dlib", "--face-backend", help="Landmarks for LMD and MSI: dlib (offline) or fan."),
    csim_reference: str = typer.Option("auto", "--csim-reference", help="portrait, ground-truth-frame or auto."),
    csim_stride: int = typer.Option(None, "--csim-stride", help="Embed every Nth frame (default 5 for dlib, 1 for arcface)."),
    fid_stride: int = typer.Option(1, "--fid-stride", help="Use every Nth frame for FID."),
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON."),
) -> None:
    """Evaluate generated talking-head videos: per-clip values, means, FID/FVD and the protocol."""
    from rich.progress import Progress

    from talkbench.errors import MetricError
    from talkbench.metrics.engine import DEFAULT_METRICS, EvalSettings, evaluate_folders, evaluate_pair

    for path, what in ((generated, "--generated"), (reference, "--reference"), (source_portrait, "--source-portrait")):
        if path is not None and not path.exists():
            raise MetricError(f"{path}: {what} does not exist")
    if reference is not None and generated.is_dir() != reference.is_dir():
        raise MetricError(f"{generated} and {reference}: give two videos or two folders, not one of each")
    settings = EvalSettings(
        metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics else DEFAULT_METRICS,
        identity_backend=identity_backend,
        face_backend=face_backend,
        csim_reference=csim_reference,
        csim_frame_stride=csim_stride,
        fid_frame_stride=fid_stride,
    )
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("evaluating", total=None)

        def progress(done: int, total: int, clip: str) -> None:
            bar.update(task, completed=done, total=total, description=f"evaluating {clip}")

        if generated.is_dir():
            result = evaluate_folders(generated, reference, source_portrait, settings, progress)
        else:
            result = evaluate_pair(generated, reference, source_portrait, settings)
    if as_json:
        print_json(result)
    else:
        _render(result)
    if result["errors"]:
        raise typer.Exit(1)


MAX_CLIP_COLUMNS = 6


def _render(result: dict) -> None:
    """One row per value; the mean over clips, then each clip while they fit (--json has all)."""
    from talkbench.metrics.registry import available_metrics, get_metric

    better = {v: ("↑" if get_metric(m).higher_is_better else "↓") for m in available_metrics() for v in get_metric(m).values}
    clips = result["clips"] if len(result["clips"]) <= MAX_CLIP_COLUMNS else []
    table = Table("value", "mean", "clips", *(c["id"] for c in clips))
    for name, agg in result["aggregates"].items():
        label = f"{name} {better.get(name, '')}".strip()
        table.add_row(label, _fmt(agg["mean"]), str(agg["clips"]), *(_fmt(c["values"].get(name)) for c in clips))
    console.print(table)
    for name, value in result["distribution"].items():
        if not name.endswith("_samples"):
            samples = result["distribution"][f"{name}_samples"]
            console.print(f"{name}: {value:.3f} ({samples['generated']} generated vs {samples['reference']} reference samples)")
    for clip in result["clips"]:
        faces = clip.get("faces") or {}
        missing = {k: v for k, v in faces.items() if k.endswith("without_face") and v}
        if missing:
            console.print(f"[yellow]{clip['id']}[/]: frames without a face skipped by face metrics: {missing}")
    for name, reason in result["unavailable"].items():
        err_console.print(f"[yellow]{name} unavailable[/]: {reason}")
    for error in result["errors"]:
        err_console.print(f"[red]{error['id']}[/]: {error['error']}")
    timing = result["timing"]
    console.print(
        f"{len(result['clips'])} clips, {timing['frames']} frames in {timing['seconds']:.1f} s "
        f"({timing['cpu_ms_per_frame'] or 0:.0f} CPU-ms/frame); protocol {result['protocol']['name']} "
        f"sha256 {result['protocol_sha256'][:12]}"
    )


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"
