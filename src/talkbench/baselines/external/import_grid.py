"""Split a released side-by-side comparison video into one video per panel, audio kept.

Papers and project pages often publish only a grid (source | method A | method B | ...). The
grid must be exact: its width and height must be whole multiples of the panel size, so no
border or gap is left over (crop those first). Panels are cut at the grid's own resolution and
frame rate (nothing is resampled here; ``import_dir`` normalises later) and written lossless
(``media.LOSSLESS_CODEC``), so a panel decodes to exactly the grid's decoded pixels; panels that look
blank (one flat colour) or identical to another panel are reported, since both usually mean a
wrong layout or a placeholder in the published video.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from talkbench import media
from talkbench.errors import MediaError, TalkbenchError

SKIP = "-"  # a name that means "do not keep this panel" (the source or ground-truth column)
BLANK_STD = 2.0  # a panel whose pixels never vary more than this (uint8) is blank
# Two panels are "identical" when, in every sampled frame, 99% of their 8x8 block means differ by
# less than this (uint8): codec noise averages out in blocks, a moving mouth does not. Measured on
# the sample corpus: a duplicated panel peaks at 3.0, the same photo with other speech at 52.
IDENTICAL_BLOCK_DIFF = 6.0
BLOCK = 8
SAMPLES = 24  # frames sampled for the blank/identical checks
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+()-]*$")


class GridError(TalkbenchError):
    """A grid video that cannot be split as asked."""


@dataclass
class PanelReport:
    index: int
    name: str
    row: int
    col: int
    path: str | None  # None for skipped panels
    mean: float
    std: float
    blank: bool = False
    identical_to: list[str] = field(default_factory=list)


@dataclass
class GridImport:
    source: str
    cols: int
    rows: int
    panel: int
    fps: float
    frames: int
    has_audio: bool
    panels: list[PanelReport]
    codec: str = media.LOSSLESS_CODEC
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def parse_layout(text: str) -> tuple[int, int]:
    """'3x2' → (cols=3, rows=2)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise GridError(f"layout {text!r} must be COLSxROWS, e.g. 3x1 for three panels side by side")
    return int(m.group(1)), int(m.group(2))


def check_grid(width: int, height: int, cols: int, rows: int, panel: int, path: str | Path = "") -> None:
    """Raise ``GridError`` unless the frame is exactly cols x rows panels of ``panel`` px."""
    want_w, want_h = cols * panel, rows * panel
    if (width, height) == (want_w, want_h):
        return
    parts = []
    if width != want_w:
        d = width - want_w
        parts.append(f"{abs(d)} px {'left over' if d > 0 else 'missing'} horizontally "
                     f"({width} vs {cols}x{panel}={want_w})")
    if height != want_h:
        d = height - want_h
        parts.append(f"{abs(d)} px {'left over' if d > 0 else 'missing'} vertically "
                     f"({height} vs {rows}x{panel}={want_h})")
    hint = ""
    if width % cols == 0 and height % rows == 0 and width // cols == height // rows:
        hint = f"; the grid divides evenly into {width // cols} px panels: pass --panel {width // cols}"
    elif width % cols or height % rows:
        hint = "; the size does not divide by the layout, so there is a border or gap: crop it first"
    raise GridError(f"{path}: {width}x{height} is not an exact {cols}x{rows} grid of {panel} px panels: "
                    + "; ".join(parts) + hint)


def _block_means(tile: np.ndarray) -> np.ndarray:
    h, w = tile.shape[:2]
    k = BLOCK if min(h, w) >= BLOCK else 1
    return tile[: h // k * k, : w // k * k].reshape(h // k, k, w // k, k, -1).mean(axis=(1, 3))


def _panel_stats(video: Path, cols: int, rows: int, panel: int, frame_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-panel mean and max-over-samples std, and between panels the largest (over sampled
    frames) 99th percentile of their 8x8-block mean differences."""
    n = cols * rows
    step = max(1, frame_count // SAMPLES)
    means = np.zeros(n)
    stds = np.zeros(n)
    diff = np.zeros((n, n))
    count = 0
    for i, frame in enumerate(media.iter_frames(video, fps=None)):
        if i % step:
            continue
        tiles = [frame[r * panel:(r + 1) * panel, c * panel:(c + 1) * panel].astype(np.float32)
                 for r in range(rows) for c in range(cols)]
        blocks = [_block_means(t) for t in tiles]
        for k, t in enumerate(tiles):
            means[k] += t.mean()
            stds[k] = max(stds[k], float(t.std()))
        for a in range(n):
            for b in range(a + 1, n):
                d = float(np.percentile(np.abs(blocks[a] - blocks[b]), 99))
                diff[a, b] = diff[b, a] = max(diff[a, b], d)
        count += 1
    if count == 0:
        raise MediaError(video, "no frames to split")
    return means / count, stds, diff


def split_grid(
    video: str | Path,
    out_dir: str | Path,
    layout: str | tuple[int, int],
    panel: int,
    names: list[str],
    fps: float | None = None,
) -> GridImport:
    """Write ``out_dir/<name>.mp4`` for every panel (row-major order) whose name is not '-'.

    ``fps=None`` keeps the grid's frame rate; frames are cut, never rescaled, and encoded
    lossless, so a panel decodes to exactly the grid's decoded crop. The grid's audio goes into
    every panel.
    """
    video = Path(video)
    cols, rows = parse_layout(layout) if isinstance(layout, str) else layout
    n = cols * rows
    if len(names) != n:
        raise GridError(f"{n} panels in a {cols}x{rows} grid but {len(names)} names given "
                        f"({', '.join(names)}); give one name per panel, row by row, '-' to skip one")
    kept = [x for x in names if x != SKIP]
    for name in kept:
        if not _NAME.match(name):
            raise GridError(f"panel name {name!r} cannot be a file name; use letters, digits and ._+()-")
    dupes = sorted({x for x in kept if kept.count(x) > 1})
    if dupes:
        raise GridError(f"panel names must differ: {', '.join(dupes)} given twice")
    if not kept:
        raise GridError("every panel is skipped ('-'); nothing to import")
    info = media.probe(video)
    if not info.has_video:
        raise MediaError(video, "has no video stream")
    check_grid(info.width, info.height, cols, rows, panel, video)

    audio = media.read_audio(video) if info.has_audio else None
    out_fps = fps or info.fps
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    means, stds, diff = _panel_stats(video, cols, rows, panel, info.frame_count)

    reports: list[PanelReport] = []
    frames_written = 0
    for k, name in enumerate(names):
        r, c = divmod(k, cols)
        rep = PanelReport(index=k, name=name, row=r, col=c, path=None,
                          mean=round(float(means[k]), 3), std=round(float(stds[k]), 3),
                          blank=bool(stds[k] < BLANK_STD))
        rep.identical_to = [names[j] for j in range(n) if j != k and diff[k, j] < IDENTICAL_BLOCK_DIFF]
        if name != SKIP:
            path = out_dir / f"{name}.mp4"
            counter = {"n": 0}

            def tiles(r=r, c=c, counter=counter):
                for frame in media.iter_frames(video, fps=fps):
                    counter["n"] += 1
                    yield frame[r * panel:(r + 1) * panel, c * panel:(c + 1) * panel]

            media.write_video(path, tiles(), fps=out_fps, audio=audio, lossless=True)
            frames_written = counter["n"]
            rep.path = str(path)
        reports.append(rep)

    result = GridImport(source=str(video), cols=cols, rows=rows, panel=panel, fps=out_fps,
                        frames=frames_written, has_audio=audio is not None, panels=reports)
    for rep in reports:
        if rep.name == SKIP:
            continue
        if rep.blank:
            result.warnings.append(f"panel {rep.index} ({rep.name}, row {rep.row} col {rep.col}) is blank "
                                   f"(pixel std ≤ {rep.std:.2f}); is the layout right?")
        if rep.identical_to:
            result.warnings.append(f"panel {rep.index} ({rep.name}) looks identical to "
                                   f"{', '.join(rep.identical_to)}; check the layout and names")
    if audio is None:
        result.warnings.append("the grid has no audio; the panels are silent (import will mux the clip's audio)")
    return result
