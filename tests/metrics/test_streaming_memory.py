"""Evaluation memory does not grow with clip length (issue 16, item 7).

The test runs in a fresh process and reads its peak RSS (``ru_maxrss``), which is what a
user's machine runs out of. ``benchmarks/eval_memory.py`` measures the same over 1, 5 and 10
minutes through ``talkbench eval``."""

from __future__ import annotations

import json
import subprocess
import sys

FRAME_KIB = 256 * 256 * 3 / 1024  # one frame at the protocol resolution: 192 KiB

# A warm-up clip (models loaded, numba compiled, memo filled), then a short and a 3x longer
# one. Each clip is its own encode (another CRF), so no frame repeats one already analysed.
EVALUATE_LENGTHS = """
import json, resource, sys
from pathlib import Path
from talkbench import media
from talkbench.metrics.engine import ClipJob, evaluate
from talkbench.metrics.settings import EvalSettings

source, folder = Path(sys.argv[1]), Path(sys.argv[2])
distinct = list(media.iter_frames(source, size=256))
settings = EvalSettings(metrics=("msi",), use_cache=False, bootstrap_replicates=10)
rows = []
for frames, crf in ((64, 20), (128, 22), (384, 24)):
    path = folder / f"loop{frames}.mp4"
    media.write_video(path, (distinct[i % len(distinct)] for i in range(frames)), crf=crf)
    clip = evaluate([ClipJob("m", "c", path)], settings).evaluations[0].clips[0]
    rows.append({"frames": clip.frames.generated, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                 "values": clip.values, "faces": clip.faces})
print(json.dumps(rows))
"""

def _run(script: str, *args: str) -> object:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_peak_memory_of_an_evaluation_does_not_grow_with_clip_length(sample_clips, tmp_path):
    """A clip 3x as long as another (256 more frames, a face analysed in each) may add their
    per-frame analysis (~1.5 KiB a frame), never their frames: 256 frames held would be 48 MiB.
    Before ``scorer.keep_heap_flat`` glibc's heap grew 68 MiB here (freed frames' holes pinned
    by the landmarks kept between them); with it, under 1 MiB."""
    warm, short, long = _run(EVALUATE_LENGTHS, str(sample_clips[0].video), str(tmp_path))
    assert [warm["frames"], short["frames"], long["frames"]] == [64, 128, 384]
    assert long["faces"]["generated_frames_without_face"] == 0  # every frame went through the face analysis
    assert 0.3 < long["values"]["msi"] < 3.0
    extra_frames = long["frames"] - short["frames"]
    growth = long["peak_mib"] - short["peak_mib"]
    assert growth < 0.25 * extra_frames * FRAME_KIB / 1024, (short, long)
