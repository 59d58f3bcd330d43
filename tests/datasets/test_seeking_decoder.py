"""The dataset pipeline's seeking decoder (``stages.iter_range``) gives exactly the frames of
``media.iter_frames`` for the same window: same indices, same pixels.

``iter_range`` seeks to a keyframe a little before the window and resamples from there, instead
of decoding the file from its start; frame k must still be frame k of ``media.iter_frames(path,
fps)``. Windows: the file's start, a start in the middle of a GOP (the seek lands on an earlier
keyframe), a start whose seek target is a keyframe's own time, a start on a keyframe, the file's
last frames, its very last frame, and a subset of wanted frames. Clips: H.264 with B-frames and
closed or open GOPs at 30 and 29.97 fps (resampled to 25 fps, so frames are dropped), encoded
here with PyAV, and real clips of the shared data (MPEG-4 at 25 fps, H.264 at 30 and 29.97 fps).
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from talkbench import media
from talkbench.datasets.stages import Cut, iter_range
from talkbench.media import SEEK_MARGIN

FPS = 25


def _encode(path: Path, rate: Fraction, gop: int, open_gop: bool, seconds: float = 12.0) -> Path:
    """A 96x64 H.264 clip whose every frame differs (a scrolling noise image with a frame
    counter bar), fixed GOP length, 3 B-frames, no scene-cut keyframes."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "bf": "3", "sc_threshold": "0", "crf": "23",
                          "preset": "veryfast", "x264-params": f"open-gop={int(open_gop)}:scenecut=0"}
        for i in range(int(seconds * rate)):
            image = np.roll(base, 3 * i, axis=1)
            image[:8, : 8 * (i % 12 + 1)] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def keyframe_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(float(p.pts * stream.time_base) for p in container.demux(stream) if p.is_keyframe and p.pts is not None)


def reference_frames(path: Path, indices: set[int], tail: int = 0) -> tuple[int, dict[int, np.ndarray]]:
    """``media.iter_frames`` at 25 fps: its frame count, the frames at ``indices`` and the last
    ``tail`` frames (kept as they stream by: a 720p clip does not fit in memory whole)."""
    kept, last = {}, deque(maxlen=tail or None)
    count = 0
    for i, frame in enumerate(media.iter_frames(path, fps=FPS)):
        if i in indices:
            kept[i] = frame
        if tail:
            last.append((i, frame))
        count += 1
    kept.update(last)
    return count, kept


def seeking(path: Path, first: int, last: int, wanted: set[int] | None = None) -> list[tuple[int, np.ndarray]]:
    info = media.probe(path)
    c = Cut(path, info.width, info.height, info.fps, first / FPS, last / FPS, first, last, None)
    return list(iter_range(c, FPS, wanted))


def assert_same_frames(path: Path, windows: list[tuple[int, int | None]]) -> None:
    """Every window (first, last exclusive; last None = the end, negative first = from the end)
    decodes by seeking to exactly the frames media.iter_frames gives."""
    ahead = {i for first, last in windows if first >= 0 and last is not None for i in range(first, last)}
    tail = max([-first for first, _ in windows if first < 0] + [0])
    total, reference = reference_frames(path, ahead, tail)
    for first, last in windows:
        last = total if last is None else last
        first = total + first if first < 0 else first
        got = seeking(path, first, last)
        assert [i for i, _ in got] == list(range(first, last)), (path.name, first, last)
        for i, frame in got:
            assert frame.shape == reference[i].shape and frame.dtype == np.uint8
            assert np.array_equal(frame, reference[i]), f"{path.name}: frame {i} of window [{first}, {last}) differs"


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("seek")
    return {
        "closed-gop-30": _encode(root / "closed-gop-30.mp4", Fraction(30), gop=48, open_gop=False),
        "open-gop-29.97": _encode(root / "open-gop-29.97.mp4", Fraction(30000, 1001), gop=48, open_gop=True),
    }


def test_the_generated_clips_have_the_gop_layout_the_windows_rely_on(encoded):
    """Keyframes every 48 source frames (1.6 s at 30 fps): the mid-GOP window below starts
    between two keyframes and its seek target lands on a later one than the first, so the
    decoder really starts mid-file (and does not fall back to decoding from the start)."""
    keys = keyframe_times(encoded["closed-gop-30"])
    assert keys[:5] == pytest.approx([0.0, 1.6, 3.2, 4.8, 6.4])
    first = 137  # 5.48 s: between the keyframes at 4.8 and 6.4 s
    target = first / FPS - SEEK_MARGIN  # 3.48 s
    landing = max(k for k in keys if k <= target)
    assert landing == pytest.approx(3.2) and 4.8 < first / FPS < 6.4
    with av.open(str(encoded["closed-gop-30"])) as container:  # the seek iter_range makes
        stream = container.streams.video[0]
        container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
        frame = next(container.decode(stream))
        assert float(frame.time) == pytest.approx(3.2)
        assert round(float(frame.time) * FPS) <= first  # no fall-back to the full decode


@pytest.mark.parametrize("name", ["closed-gop-30", "open-gop-29.97"])
def test_seeking_decoder_equals_iter_frames_on_h264_with_b_frames(encoded, name):
    assert_same_frames(encoded[name], [
        (0, 10),  # the file's start (seek to 0)
        (63, 90),  # 2.52 s: the seek target 0.52 s is inside the first GOP
        (130, 150),  # 5.2 s: the seek target is the keyframe at 3.2 s itself (30 fps clip)
        (137, 160),  # 5.48 s: mid-GOP, seek lands on the keyframe at 3.2 s
        (160, 175),  # 6.4 s: a window starting on a keyframe (30 fps clip)
        (-20, None),  # the last 20 frames, up to the end of the file
        (-1, None),  # the very last frame
    ])


def test_wanted_subset_returns_only_those_frames(encoded):
    path = encoded["closed-gop-30"]
    wanted = {140, 141, 150, 171, 199}
    got = seeking(path, 137, 200, wanted)
    assert [i for i, _ in got] == sorted(wanted)
    _, reference = reference_frames(path, wanted)
    for i, frame in got:
        assert np.array_equal(frame, reference[i]), i


@pytest.mark.shared_data
@pytest.mark.parametrize("name,windows", [
    # MPEG-4 Part 2, 25 fps, keyframes every 0.48 s; 200 frames
    ("WDA_KatieHill_000.mp4", [(0, 10), (137, 160), (151, 170), (-20, None), (-1, None)]),
    # H.264, 30 fps, 720x1280, keyframes at 0 and 10 s; 293 frames at 25 fps
    ("liveportrait_d13.mp4", [(0, 10), (100, 125), (-20, None)]),
    # H.264, 29.97 fps; 52 frames at 25 fps
    ("RD_Radio10_0_clip_0.mp4", [(0, 10), (20, 40), (-1, None)]),
])
def test_seeking_decoder_equals_iter_frames_on_real_clips(shared_data, name, windows):
    assert_same_frames(shared_data / "video" / name, windows)
