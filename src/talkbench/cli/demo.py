"""``talkbench demo``: the main job on the embedded sample corpus, end to end."""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from talkbench import media
from talkbench.cli.audit import print_summary
from talkbench.cli.baselines import status_table
from talkbench.cli.common import console, err_console, output_folder
from talkbench.cli.listing import print_table
from talkbench.datasets.audit import audit
from talkbench.datasets.pipeline import build_clips, summary_tables
from talkbench.face import analyse_image, get_backend
from talkbench.samples import load_sample_corpus

FACE_FRAME_STRIDE = 5  # the demo checks every 5th frame: enough to show tracking, quick on a CPU


def corpus_table() -> Table:
    """Probe every sample clip and run face analysis on it."""
    backend = get_backend()
    table = Table(title="Sample corpus", title_justify="left")
    for column in ("clip", "lang", "seconds", "frames", "video", "audio", "faces", "face px"):
        table.add_column(column)
    for clip in load_sample_corpus():
        info = media.probe(clip.video)
        checked, sizes = 0, []
        for i, frame in enumerate(media.iter_frames(clip.video)):
            if i % FACE_FRAME_STRIDE:
                continue
            checked += 1
            face = analyse_image(frame, backend, landmarks=False)
            if face.found:
                sizes.append(face.box.size)
        table.add_row(
            clip.id,
            clip.language,
            f"{info.duration:.2f}",
            str(info.frame_count),
            f"{info.width}x{info.height}@{info.fps:g}",
            f"{info.audio_sample_rate / 1000:g} kHz" if info.has_audio else "-",
            f"{len(sizes)}/{checked}",
            f"{np.mean(sizes):.0f}" if sizes else "-",
        )
    table.caption = f"face backend: {backend.name}; every {FACE_FRAME_STRIDE}th frame checked"
    return table


def unmeasured_lines(missing: dict[str, str]) -> list[str]:
    """The metrics no demo run measured: those whose weights are absent with the command that
    installs them, the others with their reason."""
    no_weights = {m: why for m, why in missing.items() if "weights" in why and "not installed" in why}
    lines = []
    if no_weights:
        # each reason's first command: `weights fetch NAME`, or `weights import NAME PATH` for
        # files without a download link
        commands = sorted({m.group(1) for why in no_weights.values() if (m := re.search(r"`(talkbench weights [^`]+)`", why))})
        lines.append(f"[yellow]not measured here[/]: {', '.join(no_weights)} (their weights are not installed"
                     + (f": {'; '.join(commands)}" if commands else "") + ")")
    for metric, why in missing.items():
        if metric not in no_weights:
            lines.append(f"[yellow]not measured here[/]: {metric} ({escape(why)})")
    return lines


@contextmanager
def section(name: str, title: str, timings: dict[str, float]):
    """A titled part of the demo; its wall time goes into ``timings[name]``."""
    console.rule(title)
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start


def demo(
    out: Path = typer.Option(Path("talkbench-demo"), help="Where the demo writes its outputs."),
    workers: int = typer.Option(None, "--workers", "-w", min=1, help="Evaluation processes (default: all cores)."),
) -> None:
    """Run the main job on the embedded sample corpus, end to end: probe and face analysis, the
    dataset pipeline, every built-in method (tiny VQTalker included) scored into the leaderboard,
    the competitor methods' status, and the language-bias audit."""
    from talkbench.leaderboard.demo import run_demo_leaderboard  # the metrics engine (torch)

    output_folder(out, "--out")
    timings: dict[str, float] = {}
    with section("corpus", "talkbench demo: the sample corpus, probed and face-checked", timings):
        console.print(corpus_table())

    with section("dataset pipeline", "1. dataset pipeline: the sample clips as local files", timings):
        dataset = out / "dataset"
        # Whisper tags every clip; check_language=False keeps a clip it hears as another language
        # (tr_001 is espeak-ng's voice, which Whisper base is unsure of) so the audit below shows
        # such a miss against the labels instead of dropping the clip.
        summary = build_clips(load_sample_corpus(), dataset, check_language=False, console=err_console)
        for table in summary_tables(summary):
            console.print(table)
        console.print(f"catalog: {summary.catalog}")

    with section("leaderboard", "2. leaderboard: built-in methods scored on the sample benchmark", timings):
        with err_console.status("scoring") as status:
            result = run_demo_leaderboard(out / "leaderboard", say=lambda m: status.update(escape(m)),
                                          workers=workers)
        for table in result.rich_tables():
            console.print(table)
        for line in unmeasured_lines(result.unavailable()):
            console.print(line, soft_wrap=True)
        console.print(f"store: {result.store}\nsite:  {result.site}")
        print_table(status_table(detail=False))

    with section("audit", "3. language-bias audit of the sample corpus (its catalog's language tags)", timings):
        audit_result = audit(dataset, out / "audit", dataset="sample")
        print_summary(audit_result.report, audit_result.files)
    runs = ", ".join(f"{task} {seconds:.0f} s" for task, seconds in result.run_seconds.items())
    console.print(f"demo: {sum(timings.values()):.0f} s (" + ", ".join(
        f"{name} {seconds:.0f} s" for name, seconds in timings.items()) + f"; leaderboard runs: {runs})")
