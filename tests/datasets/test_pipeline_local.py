"""Local files through the pipeline: a video without sound passes when audio is not required
(VFHQ's case) and is encoded without an audio stream; a missing local source fails that clip
only (source_missing) and is retried by the next run; an unknown source name is a clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from talkbench import media
from talkbench.datasets.catalog import Catalog
from talkbench.datasets.pipeline import build_dataset
from talkbench.datasets.sources import ClipSpec
from talkbench.datasets.stages import REASONS, RETRIED
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
    assert (summary.accepted, summary.rejected, summary.failed) == (1, 0, 1)
    with Catalog(out) as cat:
        rows = {r["clip_id"]: r for r in cat.rows()}
    assert (rows["gone"]["status"], rows["gone"]["stage"], rows["gone"]["reason"]) == ("failed", "fetch", "source_missing")
    assert "gone.mp4 does not exist" in rows["gone"]["error"]
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
    assert summary.min_face_px == 256 and summary.failed == 1


@pytest.mark.parametrize("source", ["files", "mnte"])
def test_a_missing_file_in_a_manifest_is_one_clip_retried_on_resume(tmp_path, source):
    """The manifest names a file that is not there (yet): the build goes on, the clip gets
    source_missing, and the next run retries it and finds the file (here a non-video, so the
    retry ends quickly at the cut stage)."""
    present = tmp_path / "present.mp4"
    present.write_bytes(b"not a video")
    gone = tmp_path / "later.mp4"
    if source == "files":
        manifest = [str(present), str(gone)]
    else:
        manifest = tmp_path / "mnte.csv"
        manifest.write_text("clip_id,language,source,start,end,note\n"
                            "present,ko,present.mp4,,,\nlater,ja,later.mp4,0,4,\n")
    out = tmp_path / "out"
    first = build_dataset(source, manifest, out, workers=0, progress=False)
    assert (first.clips, first.rejected, first.failed, first.skipped) == (2, 1, 1, 0)
    assert {code: r.count for code, r in first.reasons.items()} == {"not_video": 1, "source_missing": 1}
    with Catalog(out) as cat:
        row = {r["clip_id"]: r for r in cat.rows()}["later"]
    assert (row["status"], row["reason"], row["error"]) == ("failed", "source_missing", f"{gone.resolve()} does not exist")

    gone.write_bytes(b"still not a video")
    second = build_dataset(source, manifest, out, workers=0, progress=False)
    assert (second.clips, second.rejected, second.failed, second.skipped) == (2, 2, 0, 1)
    assert {code: r.count for code, r in second.reasons.items()} == {"not_video": 2}


def test_a_missing_folder_of_files_is_a_clear_error(tmp_path):
    with pytest.raises(TalkbenchError, match=r"videos: no such folder or file \(a video file ends in \.mp4"):
        build_dataset("files", [str(tmp_path / "videos")], tmp_path / "out", progress=False)


def test_the_build_doc_lists_every_reason_code():
    """docs/datasets/build.md's table: every code, its stage, and whether the row is retried."""
    doc = (Path(__file__).parents[2] / "docs" / "datasets" / "build.md").read_text()
    table = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            table[cells[0].strip("`")] = (cells[1], cells[2])
    assert table == {code: (stage or "any", "failed" if code in RETRIED else "rejected")
                     for code, (stage, _) in REASONS.items()}
