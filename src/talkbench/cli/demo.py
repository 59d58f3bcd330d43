"""``talkbench demo``: the main job on the embedded sample corpus, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from talkbench import media
from talkbench.cli.common import console
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


def demo(
    out: Path = typer.Option(Path("talkbench-demo"), help="Where the demo writes its outputs."),
) -> None:
    """Run the main job on the embedded sample corpus and print what it found."""
    out.mkdir(parents=True, exist_ok=True)
    console.rule("talkbench demo")
    console.print(corpus_table())
