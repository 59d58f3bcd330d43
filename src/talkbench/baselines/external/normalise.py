"""Bring a method's video onto the protocol: 25 fps, the protocol's square size, exactly the
clip's frame count, the clip's own audio. Every decode, resample, resize and encode goes
through ``talkbench.media`` (FFmpeg ``fps``-filter resampling, swscale AREA resizing), and
the result is written lossless (``media.LOSSLESS_CODEC``) so that no codec loss is added to
what is measured.

A method that writes a side-by-side comparison (PD-FGC, PC-AVS, EMOPortraits do) names the
panel to keep; the grid is scaled so that one panel becomes the target size and the panel is
cut out, so the resize is still media's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from talkbench import media
from talkbench.errors import MediaError

# A method whose output is this much shorter than the clip is reported (it is padded anyway).
SHORT_WARNING = 0.1
LOSSY_CODEC = "libx264 yuv420p crf=18"


@dataclass
class NormaliseReport:
    source: str
    source_fps: float
    source_size: tuple[int, int]
    source_frames: int
    frames_decoded: int  # at the protocol fps, before trim/pad
    frames_written: int
    padded: int
    trimmed: int
    size: tuple[int, int]
    fps: float
    panel: dict | None = None
    codec: str = media.LOSSLESS_CODEC
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _target_size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def panel_box(width: int, height: int, cols: int, rows: int, index: int, path: str | Path = "") -> tuple[int, int, int, int]:
    """(x, y, w, h) of panel ``index`` (row-major) in an exact ``cols``x``rows`` grid."""
    if width % cols or height % rows:
        raise MediaError(path, f"{width}x{height} is not an exact {cols}x{rows} grid "
                               f"({width % cols} px of columns and {height % rows} px of rows left over)")
    pw, ph = width // cols, height // rows
    r, c = divmod(index, cols)
    return c * pw, r * ph, pw, ph


def normalise_video(
    src: str | Path,
    out: str | Path,
    frames: int,
    size: int | tuple[int, int],
    fps: float = media.DEFAULT_FPS,
    audio: np.ndarray | None = None,
    panel: tuple[int, int, int] | None = None,  # (cols, rows, index)
    lossless: bool = True,
) -> NormaliseReport:
    """Write ``src`` to ``out`` resampled to ``fps``, resized to ``size``, trimmed or padded
    (last frame repeated) to ``frames``, with ``audio`` (16 kHz mono) muxed in.
    ``lossless=False`` writes H.264 4:2:0 CRF 18 instead (smaller, but lossy)."""
    if frames <= 0:
        raise ValueError(f"frames must be positive, got {frames}")
    info = media.probe(src)
    if not info.has_video:
        raise MediaError(src, "has no video stream")
    tw, th = _target_size(size)
    decode_size: tuple[int, int] = (tw, th)
    crop = None
    panel_info = None
    if panel is not None:
        cols, rows, index = panel
        x, y, pw, ph = panel_box(info.width, info.height, cols, rows, index, src)
        decode_size = (cols * tw, rows * th)
        crop = ((x // pw) * tw, (y // ph) * th)
        panel_info = {"cols": cols, "rows": rows, "index": index, "native_panel": [pw, ph]}

    state = {"decoded": 0, "padded": 0, "last": None}

    def stream() -> Iterator[np.ndarray]:
        for frame in media.iter_frames(src, fps=fps, size=decode_size):
            state["decoded"] += 1
            if state["decoded"] > frames:
                continue  # keep counting what the method produced; it is trimmed
            if crop is not None:
                frame = frame[crop[1]:crop[1] + th, crop[0]:crop[0] + tw]
            state["last"] = frame
            yield frame
        if state["last"] is None:
            raise MediaError(src, "no frames to normalise")
        while state["decoded"] + state["padded"] < frames:
            state["padded"] += 1
            yield state["last"]

    written_audio = None
    if audio is not None:
        written_audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    media.write_video(out, stream(), fps=fps, audio=written_audio, lossless=lossless)
    decoded, padded = state["decoded"], state["padded"]
    report = NormaliseReport(
        source=str(src), source_fps=info.fps, source_size=(info.width, info.height),
        source_frames=info.frame_count, frames_decoded=decoded, frames_written=min(decoded, frames) + padded,
        padded=padded, trimmed=max(0, decoded - frames), size=(tw, th), fps=fps, panel=panel_info,
        codec=media.LOSSLESS_CODEC if lossless else LOSSY_CODEC,
    )
    if padded > SHORT_WARNING * frames:
        report.warnings.append(f"the method wrote {decoded} frames at {fps:g} fps for a {frames}-frame clip; "
                               f"{padded} frames were padded with the last one")
    if report.trimmed > SHORT_WARNING * frames:
        report.warnings.append(f"the method wrote {decoded} frames at {fps:g} fps for a {frames}-frame clip; "
                               f"{report.trimmed} were cut")
    return report
