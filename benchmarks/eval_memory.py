"""Peak memory of ``talkbench eval`` against clip length: it must not grow with the clip.

    python benchmarks/eval_memory.py [--minutes 1,5,10] [--quick] [--size 64]
                                     [--metrics ssim,csim,lmd,cpbd,msi] [--source VIDEO]
                                     [--workdir DIR] [--json FILE]

For each length a generated clip and its ground truth are made by looping a real talking-face
clip (``src/talkbench/samples/en_001.mp4`` unless ``--source``) at ``--size``² pixels: the
source's frames are decoded once (a few seconds of video) and streamed into the encoder, so
this script never holds a whole clip. The ground truth is H.264 CRF 18, the "generated" clip
CRF 35 of the same frames. Each pair is scored by ``python -m talkbench eval -g GEN -r REF
--metrics M --workers 1 --json`` in its own process with a fresh, empty analysis cache, and
measured from outside:

* peak RSS: ``ru_maxrss`` of that process (``os.wait4``), the largest single process;
* tree RSS: the summed RSS of the process and its descendants, sampled every 0.2 s;
* wall seconds.

The table ends with the slope (MiB per minute of video) between the shortest and longest
clip, and the check: the 10-minute clip's peak ≤ 1.25 × the shortest's + 64 MiB (with
``--quick``, the 2-minute peak carried on along the slope to 10 minutes). Frames are
decoded at the protocol resolution (256²) whatever ``--size`` is, so a whole clip held in
memory costs 192 KiB per frame (2.8 GiB for 10 minutes) and cannot hide.

The default metrics are the default set's metrics that run without downloaded weights
(SSIM, dlib CSIM against the ground-truth frame, LMD, CPBD, MSI). Their dlib face analysis of
both clips (and an embedding of every 5th frame) costs 40-90 ms a frame on one busy core, so
1 + 5 + 10 minutes take 20-40 minutes; ``--quick`` measures 0.5, 1 and 2 minutes (5-8
minutes). The process exits 1 when the check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FPS = 25
DEFAULT_SOURCE = ROOT / "src" / "talkbench" / "samples" / "en_001.mp4"
DEFAULT_METRICS = "ssim,csim,lmd,cpbd,msi"
SAMPLE_S = 0.2
RATIO, SLACK_MIB = 1.25, 64.0
CHECK_MINUTES = 10.0  # the length the check is about (the 10-minute clip)


@dataclass
class Measured:
    minutes: float
    frames: int
    peak_rss_mib: float  # ru_maxrss of the eval process
    tree_rss_mib: float  # summed RSS of the process tree, sampled
    wall_s: float
    values: dict


def looped(frames: list[np.ndarray], count: int) -> Iterator[np.ndarray]:
    for i in range(count):
        yield frames[i % len(frames)]


def make_pair(folder: Path, source: Path, minutes: float, size: int) -> tuple[Path, Path, int]:
    from talkbench import media

    count = int(round(minutes * 60 * FPS))
    frames = list(media.iter_frames(source, fps=FPS, size=size))  # the source: a few seconds
    gen, ref = folder / f"clip_{minutes:g}min.mp4", folder / f"ref_{minutes:g}min.mp4"
    media.write_video(ref, looped(frames, count), fps=FPS, crf=18)
    media.write_video(gen, looped(frames, count), fps=FPS, crf=35)
    return gen, ref, count


def _children() -> dict[int, list[int]]:
    table: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            table.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    return table


def tree_rss_kib(root: int) -> int:
    children, total, frontier = _children(), 0, [root]
    while frontier:
        pid = frontier.pop()
        frontier += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def run_eval(gen: Path, ref: Path, metrics: str, cache_dir: str) -> tuple[float, float, float, dict]:
    command = [sys.executable, "-m", "talkbench", "eval", "-g", str(gen), "-r", str(ref), "--metrics", metrics,
               "--workers", "1", "--json"]  # fmt: skip
    env = {**os.environ, "TALKBENCH_CACHE_DIR": cache_dir}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        tree = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            tree = max(tree, tree_rss_kib(proc.pid))
            time.sleep(SAMPLE_S)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise SystemExit(f"talkbench eval failed ({proc.returncode}):\n{err.read()[-3000:]}")
        doc = json.loads(out.read())
    clips = doc["evaluations"][0]["clips"] if "evaluations" in doc else doc["clips"]
    return usage.ru_maxrss / 1024, tree / 1024, wall, clips[0]["values"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", default="1,5,10", help="clip lengths in minutes, comma-separated")
    parser.add_argument("--quick", action="store_true", help="0.5, 1 and 2 minutes")
    parser.add_argument("--size", type=int, default=64, help="pixels of the encoded clips (square, even)")
    parser.add_argument("--metrics", default=DEFAULT_METRICS)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="a real talking-face clip to loop")
    parser.add_argument("--workdir", type=Path, help="keep the clips here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    lengths = [0.5, 1.0, 2.0] if args.quick else [float(m) for m in args.minutes.split(",")]

    with tempfile.TemporaryDirectory(prefix="eval-memory-") as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for minutes in sorted(lengths):
            started = time.perf_counter()
            gen, ref, frames = make_pair(folder, args.source, minutes, args.size)
            print(f"{minutes:g} min: {frames} frames written in {time.perf_counter() - started:.0f} s; evaluating …",
                  file=sys.stderr, flush=True)  # fmt: skip
            with tempfile.TemporaryDirectory(prefix="cache-") as cache_dir:
                peak, tree, wall, values = run_eval(gen, ref, args.metrics, cache_dir)
            rows.append(Measured(minutes, frames, peak, tree, wall, values))
            print(f"  peak RSS {peak:.0f} MiB, {wall:.0f} s", file=sys.stderr, flush=True)
            if args.workdir is None:
                gen.unlink()
                ref.unlink()

    print(f"talkbench eval --metrics {args.metrics} --workers 1, {args.size}² clips looped from {args.source.name}, "
          "decoded at 256²")  # fmt: skip
    print(f"{'minutes':>8} {'frames':>7} {'peak RSS MiB':>13} {'tree RSS MiB':>13} {'wall s':>8}")
    for r in rows:
        print(f"{r.minutes:8g} {r.frames:7d} {r.peak_rss_mib:13.0f} {r.tree_rss_mib:13.0f} {r.wall_s:8.1f}")
    first, last = rows[0], rows[-1]
    if len(rows) > 1:
        slope = (last.peak_rss_mib - first.peak_rss_mib) / (last.minutes - first.minutes)
        bound = RATIO * first.peak_rss_mib + SLACK_MIB
        # the longest clip's peak, carried on along the slope to CHECK_MINUTES when shorter
        projected = last.peak_rss_mib + max(0.0, slope) * max(0.0, CHECK_MINUTES - last.minutes)
        ok = projected <= bound
        label = f"{CHECK_MINUTES:g}-min peak" + (" (projected)" if last.minutes < CHECK_MINUTES else "")
        print(f"slope {slope:+.1f} MiB per minute of video; {label} {projected:.0f} MiB "
              f"≤ {RATIO:g} × {first.minutes:g}-min peak + {SLACK_MIB:g} = {bound:.0f} MiB: {'PASS' if ok else 'FAIL'}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    if len(rows) > 1 and not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
