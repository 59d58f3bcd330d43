"""The official manifests parse to the exact counts their files hold (counted independently
here with plain line arithmetic), quirks included; VFHQ and MNTE from small fixtures in the
published / our format; bad lines raise errors naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkbench.datasets.sources import ManifestError, select
from talkbench.datasets.sources.hdtf import load_hdtf, parse_hdtf
from talkbench.datasets.sources.mnte import load_mnte
from talkbench.datasets.sources.vfhq import load_vfhq
from talkbench.datasets.sources.voxceleb import load_voxceleb, parse_vox_metadata


def _lines(path: Path) -> list[str]:
    return [l for l in path.read_text(encoding="utf-8-sig").splitlines() if l.strip()]


@pytest.mark.shared_data
def test_hdtf_counts_match_files(shared_data):
    folder = shared_data / "manifests" / "hdtf"
    subsets = parse_hdtf(folder)
    assert sorted(subsets) == ["RD", "WDA", "WRA"]
    total = 0
    for p, sub in subsets.items():
        ann = _lines(folder / f"{p}_annotion_time.txt")
        ranges = sum(len(l.split()) - 1 for l in ann)
        assert len(sub.ranges) == len(ann)
        assert sub.clip_count == ranges
        assert len(sub.urls) == len(_lines(folder / f"{p}_video_url.txt"))
        assert len(sub.crops) == len(_lines(folder / f"{p}_crop_wh.txt"))
        total += ranges
    # the numbers themselves, so a silent change in parsing or in the files shows up
    assert {p: s.clip_count for p, s in subsets.items()} == {"RD": 66, "WDA": 195, "WRA": 175}
    assert {p: len(s.urls) for p, s in subsets.items()} == {"RD": 57, "WDA": 183, "WRA": 130}
    specs = load_hdtf(folder)
    assert len(specs) == total == 436
    assert len({s.clip_id for s in specs}) == 436
    # BOM: the first WDA name is clean
    assert "CarolynMaloney2" in subsets["WDA"].urls
    # no final newline: the last lines are there
    assert subsets["WDA"].ranges["ZoeLofgren"] == [(5.0, 190.0)]
    assert subsets["WRA"].urls["TomPrice"] == "https://www.youtube.com/watch?v=LS2TFNwPVUM"
    # clips without a crop entry fall back to detection (crop None): 2 + 6 + 7
    assert sum(s.crop is None for s in specs) == 15
    by_id = {s.clip_id: s for s in specs}
    radio11 = by_id["RD_Radio11_001"]
    assert (radio11.start, radio11.end) == (90.0, 150.0)
    assert radio11.crop == (557, 0, 557 + 478, 478)  # 'Radio11_1.mp4 557 478 0 478'
    assert radio11.meta["crop_ratio"] == 1.2
    assert by_id["RD_Radio6_000"].crop is None
    # resolution 0 in the published file (KevinMcCarthy1): no reference frame
    assert by_id["WRA_KevinMcCarthy1_000"].crop_frame is None
    # a crop taller than its listed resolution ('MaggieHassan_0.mp4 389 776 0 776', 720): unscaled
    assert by_id["WDA_MaggieHassan_000"].crop_frame is None
    assert radio11.crop_frame == (0, 720)
    assert sum(s.crop is not None and s.crop_frame is None for s in specs) == 5


@pytest.mark.shared_data
def test_voxceleb_metadata_counts(shared_data):
    path = shared_data / "manifests" / "voxceleb" / "vox-metadata.csv"
    data_lines = len(_lines(path)) - 1
    rows = parse_vox_metadata(path)
    assert len(rows) == data_lines == 20075
    assert sum(r.partition == "test" for r in rows) == 525
    assert len({r.person_id for r in rows}) == 435
    assert len({r.video_id for r in rows}) == 3442
    specs = load_voxceleb(path)
    assert len(specs) == 20075 - 308  # verbatim repeated rows kept once
    assert len({s.clip_id for s in specs}) == len(specs)
    first = specs[0]
    assert first.clip_id == "id10005#WMh3ye5tBsE#003657#003994"
    assert (first.start, first.end) == (3657 / 25, 3994 / 25)
    assert first.crop == (624, 48, 1018, 553) and first.crop_frame == (1280, 720)
    assert len(select(specs, split="test")) == sum(1 for r in set(rows) if r.partition == "test")


def test_voxceleb_segment_txt(tmp_path):
    d = tmp_path / "id10001" / "1zcIwhmdeo4"
    d.mkdir(parents=True)
    (d / "00001.txt").write_text(
        "Identity  : \tid10001\nReference : \t1zcIwhmdeo4\nOffset    : \t1\n"
        "FV Conf   : \t16.647\t(1)\nASD Conf  : \t4.465\n\nFRAME \tX \tY \tW \tH \n"
        "000245 \t223 \t80 \t130 \t130 \n000246 \t220 \t82 \t130 \t131 \n000247 \t218 \t75 \t132 \t130 \n"
    )
    (d / "00002.txt").write_text(
        "Identity  : \tid10001\nReference : \t1zcIwhmdeo4\nOffset    : \t2\n"
        "FV Conf   : \t20.230\t(1)\nASD Conf  : \t2.765\n\nFRAME \tX \tY \tW \tH \n"
        "000349 \t0.319 \t0.067 \t0.424 \t0.753 \n000350 \t0.320 \t0.066 \t0.424 \t0.753"
    )
    specs = load_voxceleb(tmp_path)
    assert [s.clip_id for s in specs] == ["id10001#1zcIwhmdeo4#00001", "id10001#1zcIwhmdeo4#00002"]
    a, b = specs
    assert (a.start, a.end) == (245 / 25, 248 / 25)
    assert a.crop == (218, 75, 353, 213) and a.crop_frame is None
    assert b.crop_frame == (10000, 10000) and b.crop == (3190, 660, 7440, 8200)
    assert a.meta["fv_conf"] == "16.647"
    (d / "00003.txt").write_text("Identity : id1\nReference : x\n\nFRAME X Y W H\n0001 a b c d\n")
    with pytest.raises(ManifestError, match=r"00003.txt:5: expected 'FRAME X Y W H'"):
        load_voxceleb(tmp_path)


def test_vfhq_meta(tmp_path):
    name = "Clip+G0DGRma_p48+P0+C1+F11937-12060.txt"
    (tmp_path / name).write_text(
        "Video: G0DGRma_p48\nH: 1080\nW: 1920\nFPS: 29.97\nPID: 0\nCLIP: 1\nCROP: 698 131 1218 651\n\n"
        "FRAME INDEX LANDMARKS (5 POINTS)\n00011937 800.1 300.2 900.3 301.1 850.0 350.0 810.0 400.0 890.0 400.0\n"
    )
    (spec,) = load_vfhq(tmp_path)
    assert spec.clip_id == name[:-4]
    assert spec.source == "https://www.youtube.com/watch?v=G0DGRma_p48"
    assert spec.crop == (698, 131, 1218, 651) and spec.crop_frame == (1920, 1080)
    assert spec.start == pytest.approx(11937 / 29.97) and spec.end == pytest.approx(12060 / 29.97)
    (tmp_path / "Clip+abc+P0+C0+F1-50.txt").write_text("H: 720\nW: 1280\nFPS: 25\n")
    with pytest.raises(ManifestError, match="missing CROP"):
        load_vfhq(tmp_path)


def test_mnte_manifest_and_rules(tmp_path):
    video = tmp_path / "a.mp4"
    video.write_bytes(b"x")
    (tmp_path / "m.csv").write_text(
        "clip_id,language,source,start,end,note\n"
        "ar_1,ar,a.mp4,0,4.5,own recording CC-BY\n"
        "sw_1,sw,https://example.org/v.mp4,01:05,01:12,VOA\n"
    )
    specs = load_mnte(tmp_path / "m.csv")
    assert [(s.clip_id, s.language, s.start, s.end) for s in specs] == [
        ("ar_1", "ar", 0.0, 4.5), ("sw_1", "sw", 65.0, 72.0)]
    assert specs[0].source == str(video.resolve())
    (tmp_path / "bad.csv").write_text("clip_id,language,source\nx,en,a.mp4\n")
    with pytest.raises(ManifestError, match=r"bad.csv:2: language 'en' is not an MNTE language"):
        load_mnte(tmp_path / "bad.csv")
    (tmp_path / "m.yaml").write_text("clips:\n  - {clip_id: ko_1, language: ko, source: a.mp4}\n")
    assert load_mnte(tmp_path / "m.yaml")[0].end is None


@pytest.mark.shared_data
def test_select_is_deterministic(shared_data):
    specs = load_hdtf(shared_data / "manifests" / "hdtf")
    a = select(specs, limit=10, seed=3)
    assert a == select(specs, limit=10, seed=3) and len(a) == 10
    assert a != select(specs, limit=10, seed=4)
    assert {s.split for s in select(specs, split="RD")} == {"RD"}
    assert len(select(specs, split="RD")) == 66
