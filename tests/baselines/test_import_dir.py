"""import: a folder of per-clip videos mapped onto a benchmark's clip ids (by name or by a
mapping file), normalised onto the protocol (written lossless: exactly the resampled, resized
pixels) and accepted by the submission validator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from talkbench import media
from talkbench.baselines.external import get_preset
from talkbench.baselines.external.import_dir import (ImportDirError, Target, import_dir, match_files,
                                                     read_mapping)

IDS = ["ar_001", "sw_001", "zh_001", "ko_001", "ja_001", "tr_001", "en_001", "de_001"]


def _target(clip) -> Target:
    """A clip as the import targets it: the reference's frame count at 25 fps, from its duration."""
    return Target(clip.id, clip.video, round(clip.duration * 25))


def test_match_by_name_case_and_unmatched(tmp_path):
    for name in ("de_001.mp4", "EN_001.MP4", "extra.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    r = match_files(tmp_path, IDS)
    assert r.matched == {"de_001": str(tmp_path / "de_001.mp4"), "en_001": str(tmp_path / "EN_001.MP4")}
    assert r.unmatched == ["extra.mp4"]
    assert r.missing == [c for c in IDS if c not in ("de_001", "en_001")]


def test_mapping_files_csv_yaml_json(tmp_path):
    (tmp_path / "videos").mkdir()
    for name in ("clip_a.mp4", "clip_b.mp4", "clip_c.mp4"):
        (tmp_path / "videos" / name).write_bytes(b"x")
    csv_map = tmp_path / "map.csv"
    csv_map.write_text("file,clip_id\nclip_a.mp4,de_001\nclip_b.mp4,xx_999\nclip_gone.mp4,tr_001\n")
    yaml_map = tmp_path / "map.yaml"
    yaml_map.write_text(yaml.safe_dump({"clip_a.mp4": "de_001", "clip_c": "en_001"}))
    json_map = tmp_path / "map.json"
    json_map.write_text(json.dumps({"clip_a.mp4": "de_001"}))
    r = match_files(tmp_path / "videos", IDS, read_mapping(csv_map))
    assert r.matched == {"de_001": str(tmp_path / "videos" / "clip_a.mp4")}
    assert sorted(r.unmatched) == ["clip_b.mp4", "clip_c.mp4"]
    assert any("xx_999" in w for w in r.warnings) and any("clip_gone.mp4" in w for w in r.warnings)
    r = match_files(tmp_path / "videos", IDS, read_mapping(yaml_map))
    assert set(r.matched) == {"de_001", "en_001"}  # by file name or by stem
    assert read_mapping(json_map) == {"clip_a.mp4": "de_001"}
    bad = tmp_path / "bad.csv"
    bad.write_text("name,id\na,b\n")
    with pytest.raises(ImportDirError, match="'file' and 'clip_id'"):
        read_mapping(bad)
    with pytest.raises(ImportDirError, match="both"):
        match_files(tmp_path / "videos", IDS, {"clip_a.mp4": "de_001", "clip_b.mp4": "de_001"})


def test_import_normalises_and_the_validator_accepts(sample_clips, tmp_path):
    from talkbench.leaderboard.benchmarks import clip_list_sha256, get_benchmark
    from talkbench.leaderboard.submission import validate_submission

    clip = next(c for c in sample_clips if c.id == "de_001")
    src = tmp_path / "released"
    src.mkdir()
    # a released video in its own format: 30 fps, 300x300, silent, under another name
    media.write_video(src / "result_07.mp4", media.iter_frames(clip.video, fps=30, size=300), fps=30)
    (tmp_path / "map.csv").write_text("file,clip_id\nresult_07.mp4,de_001\n")
    info = get_preset("SadTalker").method_info()
    out = tmp_path / "sub"
    result = import_dir(src, out, [_target(clip)], info, "speech-driven",
                        mapping=read_mapping(tmp_path / "map.csv"))
    assert result.matched == {"de_001": str(src / "result_07.mp4")} and not result.missing
    video = out / "videos" / "de_001.mp4"
    probe = media.probe(video)
    assert (probe.width, probe.height, probe.fps) == (512, 512, 25.0) and probe.has_audio
    assert probe.frame_count == _target(clip).frames  # 30 fps resampled onto the reference's count
    # lossless: the submission decodes to exactly media's 25 fps / 512 px resampling of the source
    assert result.codec == media.LOSSLESS_CODEC
    expected = media.read_frames(src / "result_07.mp4", fps=25, size=512)[: probe.frame_count]
    assert len(expected) == probe.frame_count  # nothing padded, so the comparison is frame by frame
    assert np.array_equal(media.read_frames(video, fps=None), expected)
    meta = yaml.safe_load((out / "submission.yaml").read_text())
    assert meta["method"] == "SadTalker" and meta["code"] == "https://github.com/OpenTalker/SadTalker"
    assert meta["resolution"] == 512 and meta["task"] == "speech-driven" and meta["authors"][0] == "Wenxuan Zhang"
    spec = get_benchmark("sample")
    one = [c for c in spec.clips if c.id == "de_001"]
    sub_spec = spec.model_copy(update={"clips": one, "clip_list_sha256": clip_list_sha256(one)})
    with validate_submission(out, sub_spec, [clip]) as sub:
        assert set(sub.videos) == {"de_001"}


def test_missing_clips_are_an_error_unless_allowed(sample_clips, tmp_path):
    by_id = {c.id: c for c in sample_clips}
    src = tmp_path / "released"
    src.mkdir()
    media.write_video(src / "de_001.mp4", media.iter_frames(by_id["de_001"].video, size=256), fps=25)
    targets = [_target(by_id["de_001"]), _target(by_id["tr_001"])]
    info = get_preset("EAT").method_info()
    with pytest.raises(ImportDirError, match="no video for 1 of 2 clips .*tr_001"):
        import_dir(src, tmp_path / "a", targets, info, "speech-driven")
    r = import_dir(src, tmp_path / "b", targets, info, "speech-driven", allow_missing=True, lossless=False)
    assert r.missing == ["tr_001"] and (tmp_path / "b" / "videos" / "de_001.mp4").exists()
    assert r.codec == "libx264 yuv420p crf=18"
    assert media.probe(tmp_path / "b" / "videos" / "de_001.mp4").frame_count == round(by_id["de_001"].duration * 25)
