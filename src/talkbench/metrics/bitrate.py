"""Bitrate: the VQTalker Table 7 formulas for a motion representation, and the measured bitrate
of an encoded video file."""

from __future__ import annotations

import math
from pathlib import Path

from talkbench import media
from talkbench.metrics.base import Batch, ClipInfo, Metric, MetricSpec, Need

VERSION = "1"
FLOAT_BITS = 32


def continuous_bitrate(dims: int, fps: float = media.DEFAULT_FPS, bits: int = FLOAT_BITS) -> float:
    """bit/s of ``dims`` float32 values per frame: dims × 32 × fps."""
    return float(dims * bits * fps)


def discrete_bitrate(groups: int, residual_layers: int, codes: int, fps: float = media.DEFAULT_FPS) -> float:
    """bit/s of one code index per group and residual layer per frame:
    groups × layers × log2(codes) × fps (12 × 4 × log2 625 × 25 ≈ 11,146 bit/s)."""
    return float(groups * residual_layers * math.log2(codes) * fps)


def measured_bitrate(path: str | Path, video_only: bool = True) -> float:
    """bit/s of an encoded file from its probe: the video stream's bit rate when the container
    reports it, else the file size over the duration (which then includes audio and muxing)."""
    info = media.probe(path)
    if video_only and info.video_bit_rate:
        return float(info.video_bit_rate)
    if info.bit_rate:
        return float(info.bit_rate)
    if not info.duration:
        raise ValueError(f"{path}: no duration, cannot compute a bitrate")
    return Path(path).stat().st_size * 8 / info.duration


class Bitrate(Metric):
    spec = MetricSpec("bitrate", VERSION, "clip", ("bitrate_kbps",), False, frozenset({Need.FILE}),
                      description="measured video bitrate")

    def new_state(self, clip: ClipInfo) -> Path:
        return clip.generated

    def update(self, state: Path, batch: Batch) -> None:
        pass

    def merge(self, a: Path, b: Path) -> Path:
        return a

    def compute(self, state: Path) -> dict[str, float]:
        return {"bitrate_kbps": measured_bitrate(state) / 1000}
