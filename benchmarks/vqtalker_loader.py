"""Throughput of the VQTalker stage-1 loader (``vqtalker.data.pair_loader``) on real clips.

    python benchmarks/vqtalker_loader.py [--seconds 20] [--size 256] [--batch 8] [--steps 4]
                                         [--naive-picks 6] [--workdir DIR] [--json]

Clips: a built dataset's clips are minutes of one talking head without cuts, far longer than
the sample corpus's 5-second clips (shorter than one default GOP). So one test clip is made
from the sample clip en_001 (512x512, real video) played forward and backward until it lasts
``--seconds`` (no scene cut, so x264 adds no keyframes of its own), and encoded twice as
``talkbench data build`` encodes its clips (``media.write_video``): with x264's default GOP
(keyint 250, the build's default) and with ``keyint=25`` (``data build --keyint 25``).

Per clip, on the same ``pair_picks`` (seeded, as training draws them), one table row each:

- per-pick latency of ``FramePairs`` (seek + decode of the two frames + resize to ``--size``):
  median wall clock, and mean CPU time (steadier than wall clock on a loaded machine);
- pairs/s of ``pair_loader`` with 0 workers and with 2 worker processes (after the first
  batch, so worker start-up is not counted);
- the naive reference: plain PyAV decoding the file from its start up to the later frame of
  each pick (what a loader without seeking does): pairs/s and CPU ms per pick, and the
  loader's advantage over it in wall clock (0 workers) and in CPU time.

Times are wall-clock on a shared CPU: expect +-30 % noise. The encoded clips are kept in
``--workdir`` (default: a temporary folder) so a rerun skips encoding.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from talkbench import media
from talkbench.samples import sample_dir
from talkbench.vqtalker.data import FramePairs, TrainingClip, file_clip, pair_loader, pair_picks

SEED = 0


@dataclass
class Row:
    clip: str
    keyint: str
    keyframes: int
    frames: int
    pick_ms: float  # median FramePairs wall-clock latency per pick
    pick_cpu_ms: float  # mean CPU time per pick (this process, all its threads)
    loader_w0: float  # pairs/s
    loader_w2: float
    naive: float  # pairs/s, plain PyAV from the start
    naive_cpu_ms: float  # mean CPU time per pick
    speedup: float  # loader_w0 / naive (wall clock)
    cpu_speedup: float  # naive_cpu_ms / pick_cpu_ms


def make_clip(out: Path, seconds: float, keyint: int | None) -> Path:
    if out.is_file():
        return out
    forward = media.read_frames(sample_dir() / "en_001.mp4")
    swing = np.concatenate([forward, forward[-2:0:-1]])  # forward then back: no cut anywhere
    need = int(seconds * media.DEFAULT_FPS)
    frames = (swing[i % len(swing)] for i in range(need))
    return media.write_video(out, frames, keyint=keyint)


def keyframe_count(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.is_keyframe and p.pts is not None)


def naive_pick(path: Path, s: int, t: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode from the file's start to the later of the two frames (25 fps file: frame k is the
    k-th decoded frame) and keep the two, resized as the loader resizes them."""
    wanted, got = {s, t}, {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for k, frame in enumerate(container.decode(stream)):
            if k in wanted:
                got[k] = frame.to_ndarray(format="rgb24", width=size, height=size,
                                          interpolation=media.RESIZE_INTERPOLATION)
            if k >= max(wanted):
                break
    return got[s], got[t]


def loader_rate(clips: list[TrainingClip], size: int, batch: int, steps: int, workers: int, prefetch: int = 2) -> float:
    """Pairs per second over ``steps`` timed batches, after the batches the workers fetch ahead
    during their start-up (workers x prefetch), which would otherwise be counted as free."""
    warm = max(1, workers * prefetch)
    loader = pair_loader(clips, size, batch_size=batch, seed=SEED, workers=workers, steps=warm + steps,
                         prefetch=prefetch)
    it = iter(loader)
    for _ in range(warm):
        next(it)
    t0 = time.perf_counter()
    n = sum(len(src) for src, _, _ in it)
    rate = n / (time.perf_counter() - t0)
    del it, loader
    return rate


def measure(label: str, path: Path, keyint: int | None, args) -> Row:
    clip = file_clip(path)
    clips = [clip]
    picks = [p for step in range(args.steps) for p in pair_picks([clip.frames], args.batch, SEED, step)]
    pairs = FramePairs(clips, args.size)
    times, c0 = [], time.process_time()
    for pick in picks[: args.batch * 2]:
        t0 = time.perf_counter()
        src, tgt, _ = pairs[pick]
        times.append(time.perf_counter() - t0)
    pick_cpu = (time.process_time() - c0) / len(times)
    w0 = loader_rate(clips, args.size, args.batch, args.steps, 0)
    w2 = loader_rate(clips, args.size, args.batch, args.steps, 2)
    t0, c0 = time.perf_counter(), time.process_time()
    for _, s, t in picks[: args.naive_picks]:
        ref = naive_pick(path, s, t, args.size)
    naive = args.naive_picks / (time.perf_counter() - t0)
    naive_cpu = (time.process_time() - c0) / args.naive_picks
    assert np.array_equal(ref[0], pairs[picks[args.naive_picks - 1]][0].numpy())  # same frames, both ways
    return Row(label, str(keyint or "250 (x264 default)"), keyframe_count(path), clip.frames,
               round(1000 * statistics.median(times), 1), round(1000 * pick_cpu, 1), round(w0, 1), round(w2, 1),
               round(naive, 2), round(1000 * naive_cpu, 1), round(w0 / naive, 1), round(naive_cpu / pick_cpu, 1))


def format_table(rows: list[Row], args) -> str:
    head = (f"{'clip':<20} {'keyint':<19} {'keyframes':>9} {'frames':>6} {'ms/pick':>7} {'CPU ms/pick':>11} "
            f"{'w0 pairs/s':>10} {'w2 pairs/s':>10} {'naive pairs/s':>13} {'naive CPU ms':>12} {'w0/naive':>8} "
            f"{'CPU naive/loader':>16}")
    lines = [f"VQTalker stage-1 loader at {args.size}x{args.size}, batch {args.batch}, {os.cpu_count()} CPU cores",
             head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.clip:<20} {r.keyint:<19} {r.keyframes:>9} {r.frames:>6} {r.pick_ms:>7.1f} "
                     f"{r.pick_cpu_ms:>11.1f} {r.loader_w0:>10.1f} {r.loader_w2:>10.1f} {r.naive:>13.2f} "
                     f"{r.naive_cpu_ms:>12.1f} {r.speedup:>7.1f}x {r.cpu_speedup:>15.1f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the test clip")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="timed loader batches")
    parser.add_argument("--naive-picks", type=int, default=6)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for keyint in (None, 25):
            name = f"en_001-swing-{args.seconds:g}s-k{keyint or 'default'}.mp4"
            path = make_clip(work / name, args.seconds, keyint)
            rows.append(measure(f"en_001 swing {args.seconds:g} s", path, keyint, args))
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(format_table(rows, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
