"""CPU throughput of talkbench's LSE-C / LSE-D scoring against syncnet_python's (the
transcription in tests/metrics/reference/syncnet_python.py), on the same frames, face boxes,
audio and random SyncNet weights, in one process.

    python benchmarks/syncnet_throughput.py [--frames N] [--repeat R] [--json]

Frames: the first N frames of a real clip with speech at the protocol's 256×256 / 25 fps (the
first WDA_* clip in $TALKBENCH_SHARED_DATA/video, else the sample corpus's en_001). Faces are
found once with dlib, outside the timings. Both sides time everything after that: face crops,
lip and audio embeddings, offset search. talkbench streams the frames in the engine's 64-frame
batches; the reference scores the whole track at once (batch size 20, as run_syncnet.py).
The machine is shared: take the best of ``--repeat`` runs and expect ±30 % noise.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.metrics.reference


def real_clip() -> Path:
    root = os.environ.get("TALKBENCH_SHARED_DATA")
    candidates = sorted(Path(root, "video").glob("WDA_*.mp4")) if root else []
    if candidates:
        return candidates[0]
    from talkbench.samples import load_sample_corpus

    return next(c.video for c in load_sample_corpus() if c.id == "en_001")


def best_of(fn, repeat: int):
    wall, cpu, out = [], [], None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return out, min(wall), min(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from talkbench import media
    from talkbench.face import get_backend
    from talkbench.metrics import syncnet
    from talkbench.metrics.analysis import analyse_frames
    from talkbench.metrics.base import Batch, ClipInfo, ModelSource
    from talkbench.metrics.lse import LSE
    from talkbench.metrics.scorer import BATCH
    from talkbench.metrics.settings import EvalSettings
    from tests.metrics.reference import syncnet_python as reference

    path = real_clip()
    frames = np.stack(list(itertools.islice(media.iter_frames(path, size=256), args.frames)))
    faces = analyse_frames(frames, get_backend("dlib"))
    if not faces.valid.all():
        raise SystemExit(f"{path}: {faces.missing} of the first {len(frames)} frames have no face; pick another clip")
    state_dict = syncnet.random_state_dict()
    metric = LSE(EvalSettings(metrics=("lse",)))
    metric.load(ModelSource({"lse": syncnet.load_syncnet(state_dict)}))
    instance = reference.SyncNetInstance()
    getattr(instance, "__S__").load_state_dict(state_dict)
    audio = reference.ffmpeg_pcm_s16le(path)
    track = {"frame": np.arange(len(frames)), "bbox": faces.boxes[:, :4]}

    def ours():
        state = metric.new_state(ClipInfo("bench", path, None, path, None, syncnet.FPS))
        for start in range(0, len(frames), BATCH):
            metric.update(state, Batch(start, frames[start : start + BATCH], faces=faces[start : start + BATCH]))
        values = metric.compute(state)
        return values["lse_c"], values["lse_d"], state.scores[0].windows

    def theirs():
        crops = reference.crop_video([f[..., ::-1] for f in frames], track)
        _, conf, minval = instance.evaluate(crops, reference.track_audio(audio, track))
        return float(conf), float(minval)

    (c_ours, d_ours, windows), wall_ours, cpu_ours = best_of(ours, args.repeat)
    (c_ref, d_ref), wall_ref, cpu_ref = best_of(theirs, args.repeat)
    rows = [
        {"side": "talkbench (streamed, 64-frame batches)", "wall_s": wall_ours, "cpu_s": cpu_ours},
        {"side": "syncnet_python (transcription)", "wall_s": wall_ref, "cpu_s": cpu_ref},
    ]
    for row in rows:
        row["windows_per_s"] = windows / row["wall_s"]
        row["frames_per_s"] = len(frames) / row["wall_s"]
    report = {
        "clip": str(path), "frames": len(frames), "windows": windows, "threads": torch.get_num_threads(),
        "rows": rows, "lse_c": [c_ours, c_ref], "lse_d": [d_ours, d_ref],
        "max_abs_difference": max(abs(c_ours - c_ref), abs(d_ours - d_ref)),
    }  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{path.name}: {len(frames)} frames at 256x256, {windows} windows, {report['threads']} torch threads, random weights")
    print(f"{'':40s} {'wall s':>8s} {'CPU s':>8s} {'windows/s':>10s} {'frames/s':>9s}")
    for row in rows:
        print(f"{row['side']:40s} {row['wall_s']:8.2f} {row['cpu_s']:8.2f} {row['windows_per_s']:10.2f} {row['frames_per_s']:9.2f}")
    print(f"speed-up {wall_ref / wall_ours:.2f}x; |LSE-C, LSE-D difference| ≤ {report['max_abs_difference']:.2e} "
          f"(LSE-C {c_ours:.4f} vs {c_ref:.4f}, LSE-D {d_ours:.4f} vs {d_ref:.4f})")


if __name__ == "__main__":
    main()
