"""End to end through real yt-dlp: an HTTP server on 127.0.0.1 serves real shared clips and
broken files; a small HDTF-style manifest (official file formats) points at it. In one run,
every fault ends with its own reason code and the good clips land as 512x512 25 fps H.264 +
AAC with an English language tag; one bad clip never stops the others. Re-running the same
build does nothing and leaves the same catalog (idempotent)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from talkbench import media
from talkbench.datasets.catalog import Catalog
from talkbench.datasets.pipeline import build_dataset


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _serve(shared: Path, root: Path) -> None:
    video = shared / "video"
    for name, src in {
        "KatieHill.mp4": "WDA_KatieHill_000.mp4",
        "AlexandriaOcasioCortez.mp4": "WDA_AlexandriaOcasioCortez_000.mp4",
        "LatentSync.mp4": "latentsync_demo1_video.mp4",
        "NoAudio.mp4": "liveportrait_d0.mp4",
    }.items():
        os.symlink(video / src, root / name)
    data = (video / "retalking_2.mp4").read_bytes()
    (root / "Truncated.mp4").write_bytes(data[: len(data) * 2 // 5])
    (root / "NotVideo.mp4").write_bytes((shared / "README.md").read_bytes())
    # a real face with its sound track silenced: frames of a real clip, zero audio
    frames = media.read_frames(video / "WDA_KatieHill_000.mp4")[:100]
    media.write_video(root / "Muted.mp4", frames, audio=np.zeros(4 * media.AUDIO_RATE, np.float32))


def _manifest(folder: Path, base: str) -> Path:
    folder.mkdir()
    names = ["KatieHill", "AlexandriaOcasioCortez", "LatentSync", "NoAudio", "Truncated", "NotVideo",
             "Muted", "Missing"]
    # official quirks kept: BOM on the url list, no final newline on the annotation list
    (folder / "TST_video_url.txt").write_bytes(
        "\ufeff".encode() + "\n".join(f"{n} {base}/{n}.mp4" for n in names).encode() + b"\n")
    ranges = {n: "00:00-00:03" for n in names}
    ranges["KatieHill"] = "00:00-00:04 00:04-00:08"  # two clips, one download
    (folder / "TST_annotion_time.txt").write_text("\n".join(f"{n}.mp4 {r}" for n, r in ranges.items()))
    # a manifest crop for one clip (the whole 512 frame); the others are detected
    (folder / "TST_crop_wh.txt").write_text("AlexandriaOcasioCortez_0.mp4 0 512 0 512\n")
    (folder / "TST_crop_ratio.txt").write_text("AlexandriaOcasioCortez_0.mp4 1.0\n")
    (folder / "TST_resolution.txt").write_text("AlexandriaOcasioCortez.mp4 512\n")
    return folder


EXPECTED = {
    "TST_KatieHill_000": ("accepted", None),
    "TST_KatieHill_001": ("accepted", None),
    "TST_AlexandriaOcasioCortez_000": ("accepted", None),
    "TST_LatentSync_000": ("rejected", "face_too_small"),
    "TST_NoAudio_000": ("rejected", "no_audio"),
    "TST_Muted_000": ("rejected", "no_speech"),
    "TST_Truncated_000": ("rejected", "truncated"),
    "TST_NotVideo_000": ("rejected", "not_video"),
    "TST_Missing_000": ("rejected", "http_error"),
}


@pytest.mark.slow
@pytest.mark.shared_data
def test_hdtf_style_manifest_over_http_with_faults(shared_data, http_root, tmp_path):
    root, base = http_root
    _serve(shared_data, root)
    manifest = _manifest(tmp_path / "manifest", base)
    out = tmp_path / "built"
    summary = build_dataset("hdtf", manifest, out, workers=2, retries=1, backoff=0.1, progress=False)

    with Catalog(out) as cat:
        rows = {r["clip_id"]: r for r in cat.rows()}
    got = {cid: (r["status"], r["reason"]) for cid, r in rows.items()}
    print(json.dumps({cid: [r["status"], r["reason"], r["error"] and r["error"][:90]] for cid, r in rows.items()}, indent=1))
    assert got == EXPECTED
    assert summary.accepted == 3 and summary.rejected == 6
    assert summary.reasons["http_error"].count == 1
    assert "404" in rows["TST_Missing_000"]["error"]

    for cid, frames in (("TST_KatieHill_000", 100), ("TST_KatieHill_001", 100), ("TST_AlexandriaOcasioCortez_000", 75)):
        r = rows[cid]
        info = media.probe(out / r["path"])
        assert (info.width, info.height) == (512, 512)
        assert info.fps == 25 and info.video_codec == "h264" and info.audio_codec == "aac"
        assert info.frame_count == frames == r["frames"]
        assert len(media.read_audio(out / r["path"])) == pytest.approx(frames / 25 * 16000, abs=1600)
        assert r["language"] == "en" and r["language_prob"] > 0.8
        assert r["min_face_px"] == 512 and r["crop_px"] >= 512
        assert r["raw_path"].startswith("raw/")
    # the two KatieHill clips share one download; the manifest crop was used where given
    assert rows["TST_KatieHill_000"]["raw_path"] == rows["TST_KatieHill_001"]["raw_path"]
    assert rows["TST_AlexandriaOcasioCortez_000"]["crop_method"] == "manifest"
    assert rows["TST_KatieHill_000"]["crop_method"] == "detected"
    # the far-too-small face: measured, not guessed
    small = rows["TST_LatentSync_000"]
    assert small["crop_px"] < 512 and small["face_px"] < 300 and small["source_height"] == 1920

    # per stage: everyone was fetched (404 stops there), 3 reach the encoder
    stages = {s.stage: s for s in summary.stages}
    assert stages["fetch"].entered == 9 and stages["fetch"].rejected == 1
    assert stages["cut"].rejected == 2 and stages["language"].rejected == 2
    assert stages["resize"].passed == 3

    # a second run skips everything and leaves the same rows
    again = build_dataset("hdtf", manifest, out, workers=2, retries=1, backoff=0.1, progress=False)
    assert again.skipped == 9
    with Catalog(out) as cat:
        assert {r["clip_id"]: r for r in cat.rows()} == rows
