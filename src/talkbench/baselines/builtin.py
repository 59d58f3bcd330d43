"""The built-in methods, the bounds every table needs:

- ``ground-truth``: the reference video itself, byte for byte (the upper bound; its scores
  show what "perfect" looks like under each metric and protocol).
- ``static-source``: the portrait (first frame) repeated for the clip's length, with the clip's
  audio (the lower bound: no motion at all).
- ``h264``: the ground truth re-encoded with libx264 at a target bitrate (the codec row of
  VQTalker Table 1, 347 kbps by default); the bitrate actually reached is measured from the
  file (``measured_kbps``), not assumed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from talkbench import media
from talkbench.baselines.method import MethodInfo, Task
from talkbench.metrics.bitrate import measured_bitrate
from talkbench.util import atomic_path

H264_DEFAULT_KBPS = 347  # VQTalker Table 1, "H.264 Codec ≈ 347"


class GroundTruth:
    info = MethodInfo(
        name="ground-truth",
        kind="builtin",
        description="The reference video itself: the upper bound.",
    )

    def generate(self, task: Task, out: Path) -> Path:
        out = Path(out)
        with atomic_path(out) as tmp:
            shutil.copyfile(task.reference, tmp)
        return out


class StaticSource:
    info = MethodInfo(
        name="static-source",
        kind="builtin",
        description="The portrait (first frame) repeated for the clip's length, with its audio: "
        "the lower bound.",
    )

    def generate(self, task: Task, out: Path) -> Path:
        portrait = task.portrait()
        frames = task.frames or media.frame_count_at(media.probe(task.reference), task.fps)
        audio = task.audio() if media.probe(task.reference).has_audio else None
        return media.write_video(out, (portrait for _ in range(frames)), fps=task.fps, audio=audio)


class H264:
    def __init__(self, kbps: float = H264_DEFAULT_KBPS):
        self.kbps = float(kbps)
        self.info = MethodInfo(
            name="h264" if kbps == H264_DEFAULT_KBPS else f"h264-{kbps:g}k",
            kind="builtin",
            description=f"The ground truth re-encoded with libx264 at a {kbps:g} kbps target "
            "(VQTalker Table 1's codec row); the reached bitrate is measured.",
            paper="VQTalker Table 1 (H.264 Codec)",
            bitrate_kbps=self.kbps,
        )
        self.measured_kbps: dict[str, float] = {}

    def generate(self, task: Task, out: Path) -> Path:
        info = media.probe(task.reference)
        audio = media.read_audio(task.reference) if info.has_audio else None
        path = media.write_video(
            out, media.iter_frames(task.reference, fps=task.fps), fps=task.fps, audio=audio,
            bit_rate=int(self.kbps * 1000),
        )
        self.measured_kbps[task.clip_id] = measured_bitrate(path, video_only=True) / 1000.0
        return path


BOUNDS: tuple[tuple[str, type], ...] = (
    ("ground-truth", GroundTruth), ("static-source", StaticSource), ("h264", H264))
BUILTIN = tuple(name for name, _ in BOUNDS)
