"""Local files through the pipeline: a video without sound passes when audio is not required
(VFHQ's case) and is encoded without an audio stream; a missing local source is a rejection
of that clip only; an unknown source name is a clear error."""

from __future__ import annotations

import os

import pytest

from talkbench import media
from talkbench.datasets.catalog import Catalog
from talkbench.datasets.pipeline import build_dataset
from talkbench.datasets.sources import ClipSpec
from talkbench.errors import TalkbenchError


@pytest.mark.shared_data
def test_video_only_clip_and_missing_source(shared_data, tmp_path):
    d0 = shared_data / "video" / "liveportrait_d0.mp4"  # real face, 512x512, no audio stream
    specs = [
        ClipSpec("d0", "vfhq", str(d0), 0.0, 3.0),
        ClipSpec("gone", "vfhq", str(tmp_path / "gone.mp4")),
    ]
    out = tmp_path / "out"
    summary = build_dataset("vfhq", None, out, specs=specs, workers=1, progress=False)
    assert (summary["accepted"], summary["rejected"]) == (1, 1)
    with Catalog(out) as cat:
        rows = {r["clip_id"]: r for r in cat.rows()}
    assert rows["gone"]["reason"] == "source_missing" and "gone.mp4 does not exist" in rows["gone"]["error"]
    d = rows["d0"]
    assert d["status"] == "accepted" and d["language"] is None and d["frames"] == 75
    info = media.probe(out / d["path"])
    assert (info.width, info.height, info.frame_count, info.has_audio) == (512, 512, 75, False)


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(TalkbenchError, match="unknown source 'youtube'"):
        build_dataset("youtube", tmp_path, tmp_path / "out", progress=False)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(TalkbenchError, match=r"empty: no \*_video_url.txt file"):
        build_dataset("hdtf", tmp_path / "empty", tmp_path / "out", progress=False)


def test_resuming_with_other_settings_is_refused(tmp_path):
    """A missing source is rejected in the fetch stage, so this build is quick; what matters is
    that the second call would keep clips made under min_face_px=512 in a 256 catalog."""
    specs = [ClipSpec("gone", "vfhq", str(tmp_path / "gone.mp4"))]
    out = tmp_path / "out"
    build_dataset("vfhq", None, out, specs=specs, workers=1, progress=False)
    build_dataset("vfhq", None, out, specs=specs, workers=1, progress=False)  # same settings: resumes
    with pytest.raises(TalkbenchError, match=r"catalog.duckdb: built with other settings \(min_face_px: 512 -> 256\)"):
        build_dataset("vfhq", None, out, specs=specs, workers=1, progress=False, min_face_px=256)
    summary = build_dataset("vfhq", None, out, specs=specs, workers=1, progress=False, min_face_px=256, force=True)
    assert summary["min_face_px"] == 256 and summary["rejected"] == 1
