"""``talkbench data``: build a dataset from a manifest (MEAD: from its download folder), and show
a built dataset's summary."""

from __future__ import annotations

from pathlib import Path

import typer

from talkbench.cli.common import console, err_console, output_folder, print_json
from talkbench.datasets.catalog import open_summary
from talkbench.datasets.engines import ENGINES
from talkbench.datasets.language import ENGINES as LID_ENGINES
from talkbench.datasets.pipeline import build_dataset, summary_tables
from talkbench.datasets.sources import check_build_options
from talkbench.errors import TalkbenchError

app = typer.Typer(help="Build talking-face datasets (HDTF, VoxCeleb, VFHQ, MNTE, MEAD, local files).",
                  no_args_is_help=True)


@app.command()
def build(
    source: str = typer.Argument(..., help="hdtf | voxceleb | vfhq | mnte | mead | files"),
    manifest: list[Path] | None = typer.Option(None, "--manifest", "-m", help="Manifest file/folder (files: videos or a folder; repeatable). Every source but mead."),
    root: Path | None = typer.Option(None, "--root", help="mead: the download's root folder (M003/, W009/, ... each with video.tar + audio.tar or their unpacked video/ and audio/)."),
    view: str | None = typer.Option(None, help="mead: camera view (front, down, top, left_30, left_60, right_30, right_60; default front)."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder (catalog.duckdb, clips/, raw/)."),
    engine: str = typer.Option("local", help="local | ray"),
    workers: int = typer.Option(2, min=0, help="Worker processes (local; 0 runs clips in this process) or CPUs for a local Ray."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address (engine ray)."),
    limit: int | None = typer.Option(None, min=1, help="Build a seeded random subset of this many clips."),
    split: str | None = typer.Option(None, help="Only this split (HDTF: RD/WDA/WRA; VoxCeleb: train/test; MEAD: test-4id-v1/official-test-v1/train-4id-v1)."),
    languages: str | None = typer.Option(None, help="Only clips whose manifest language is in this comma list."),
    seed: int = typer.Option(0, help="Seed of --limit's subset."),
    min_face_px: int | None = typer.Option(None, min=1, help="Reject clips whose face crop is smaller (default 512, the paper's; mead 256, see docs/datasets/mead.md)."),
    min_seconds: float = typer.Option(3.0, min=0, help="Reject clips shorter than this."),
    check_language: bool | None = typer.Option(None, "--check-language/--no-check-language", help="Reject clips whose Whisper language differs from the manifest's (default: on for mnte)."),
    lid_engine: str = typer.Option("faster-whisper", help="faster-whisper | openai-whisper"),
    lid_model: str = typer.Option("base", help="Whisper model name or local folder/checkpoint."),
    cookies: Path | None = typer.Option(None, help="Cookies file for yt-dlp."),
    retries: int = typer.Option(3, min=0, help="Retries of transient download failures."),
    rate_limit: int | None = typer.Option(None, min=1, help="Download rate limit, bytes/s."),
    keyint: int | None = typer.Option(None, min=1, help="Keyframe interval (GOP, frames) of the encoded clips (default: x264's, 250). 25 about halves what VQTalker's training loader decodes per frame pair, for ~50% larger files; see docs/datasets/build.md."),
    force: bool = typer.Option(False, help="Rebuild clips already in the catalog."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Fetch, cut, crop, filter, language-tag and encode clips into OUT/catalog.duckdb.
    MEAD: talkbench data build mead --root DIR --out OUT (see docs/datasets/mead.md)."""
    source = source.lower()
    if source == "mead":
        if root is None and manifest:
            root = manifest[0]  # --manifest DIR means the same root
        if root is None:
            raise TalkbenchError("mead needs --root DIR: the folder holding the identities (M003/, W009/, ...)")
        src = root
    elif root is not None:
        raise TalkbenchError(f"--root is for mead; {source} reads --manifest")
    elif not manifest:
        raise TalkbenchError(f"{source} needs --manifest (its manifest file or folder)")
    else:
        src = [str(m) for m in manifest] if source == "files" else manifest[0]
    if engine not in ENGINES:
        raise TalkbenchError(f"unknown --engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if lid_engine not in LID_ENGINES:
        raise TalkbenchError(f"unknown --lid-engine {lid_engine!r}; choose one of {', '.join(LID_ENGINES)}")
    check_build_options(source, min_seconds=min_seconds, min_face_px=min_face_px,
                        check_language=check_language)  # e.g. MNTE's 3 s, 512 px and Whisper check
    output_folder(out, "--out")  # after every check above: a refused build leaves no folder behind
    summary = build_dataset(  # bars on stderr around the engine run only; --json keeps stderr quiet too
        source, src, out, engine=engine, workers=workers, ray_address=ray_address, limit=limit, split=split,
        view=view, languages=languages.split(",") if languages else None, seed=seed, min_face_px=min_face_px,
        min_seconds=min_seconds, check_language=check_language, lid_engine=lid_engine, lid_model=lid_model,
        cookies=str(cookies) if cookies else None, retries=retries, rate_limit=rate_limit, keyint=keyint, force=force,
        progress=not as_json, console=err_console,
    )
    if as_json:
        print_json(summary.to_dict())
        return
    for table in summary_tables(summary):
        console.print(table)
    console.print(f"catalog: {summary.catalog} ({summary.skipped} clips already done, skipped)")


@app.command()
def status(
    out: Path = typer.Argument(..., help="A dataset folder built by 'talkbench data build'."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Print a built dataset's summary again: counts per stage and per reason."""
    summary = open_summary(out)
    if as_json:
        print_json(summary.to_dict())
        return
    for table in summary_tables(summary):
        console.print(table)
    params = (summary.meta or {}).get("params", {})
    console.print(f"catalog: {summary.catalog}  min_face_px={params.get('min_face_px')}  "
                  f"lid={params.get('lid_engine')}/{params.get('lid_model')}  keyint={params.get('keyint') or 'x264 default'}")
