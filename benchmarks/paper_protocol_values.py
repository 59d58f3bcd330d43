"""The range of values the paper protocols' offline metrics give on the shared real clips, for
docs/paper-protocols.md: each clip's first 64 frames scored (a) against themselves re-encoded at
H.264 CRF 35, (b) against another clip (another person), and the ground truth's own MSI/CPBD.
Metrics that need weights this machine lacks (ArcFace, FID, FVD, SyncNet) are not in it.

    TALKBENCH_SHARED_DATA=../shared/data python benchmarks/paper_protocol_values.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


from talkbench import media
from talkbench.metrics.engine import ClipJob, evaluate
from talkbench.metrics.paper_protocols import protocol_settings

FRAMES = 64
VALUES = ("ssim", "cpbd", "lmd", "m_lmd", "f_lmd", "msi")


def main() -> None:
    root = os.environ.get("TALKBENCH_SHARED_DATA")
    if not root:
        sys.exit("set TALKBENCH_SHARED_DATA to the shared real media (../shared/data)")
    videos = sorted((Path(root) / "video").glob("*.mp4"))
    clips = {v.stem: media.read_frames(v, size=256)[:FRAMES] for v in videos}
    clips = {k: f for k, f in clips.items() if len(f) == FRAMES}
    names = list(clips)
    jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(names):
            lossy = media.write_video(Path(tmp) / f"{name}.mp4", clips[name], crf=35)
            jobs.append(ClipJob("crf35", name, media.read_frames(lossy, size=256)[:FRAMES], clips[name]))
            jobs.append(ClipJob("other-clip", name, clips[names[(i + 1) % len(names)]], clips[name]))
            jobs.append(ClipJob("ground-truth", name, clips[name], clips[name]))
        settings = protocol_settings("talkbench", ",".join(("ssim", "cpbd", "lmd", "msi")), use_cache=False,
                                     bootstrap_replicates=0)
        report = evaluate(jobs, settings, workers=os.cpu_count() or 1)
    print(f"{len(names)} shared clips, first {FRAMES} frames at 256², dlib landmarks")
    print(f"{'comparison':<14}" + "".join(f"{v:>20}" for v in VALUES))
    for result in report.evaluations:
        cells = []
        for value in VALUES:
            got = [c.values[value] for c in result.clips if value in c.values]
            cells.append(f"{min(got):.3f}–{max(got):.3f}" if got else "–")
        print(f"{result.method:<14}" + "".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    main()
