"""Benchmark specs: versioned clip lists that cannot change in place, resolvable clips."""

from __future__ import annotations

from collections import Counter

import pytest

from talkbench.leaderboard.benchmarks import (
    BenchmarkError, all_specs, clip_list_sha256, get_benchmark, parse_spec, resolve_clips,
)
from talkbench.leaderboard.benchmarks import make_specs


def test_shipped_specs_load_and_pin_their_clip_lists():
    specs = {s.name: s for s in all_specs()}
    assert set(specs) == {"sample", "mnte", "hdtf-test", "mead-emotion"}
    for s in specs.values():
        assert s.clip_list_sha256 == clip_list_sha256(s.clips)
    assert len(specs["sample"].clips) == 8 and len(specs["hdtf-test"].clips) == 20
    mnte = Counter(c.language for c in specs["mnte"].clips)
    assert mnte == {lang: 5 for lang in ("ar", "sw", "zh", "ko", "ja", "tr")}
    assert all(c.family != "Indo-European" for c in specs["mnte"].clips)
    assert {c.language for c in specs["sample"].clips if c.family == "Indo-European"} == {"en", "de"}
    mead = specs["mead-emotion"].clips
    assert len(mead) == 160 and Counter(c.emotion for c in mead) == {e: 20 for e in make_specs.MEAD_EMOTIONS}
    assert {c.id.split("_")[0] for c in mead} == {"M003", "M030", "W009", "W015"}
    assert {c.intensity for c in mead if c.emotion == "neutral"} == {1} and {c.intensity for c in mead} == {1, 3}
    assert specs["mead-emotion"].model_dump() == get_benchmark("mead-emotion").model_dump()
    assert make_specs.mead_spec()["clips"] == [c.model_dump(exclude_none=True) for c in mead]  # the spec is what make_specs writes


def test_editing_a_clip_list_in_place_is_refused():
    from importlib import resources

    text = (resources.files("talkbench.leaderboard.benchmarks") / "sample-v1.yaml").read_text()
    edited = text.replace("id: de_001", "id: de_002")
    with pytest.raises(BenchmarkError, match="must be a\nnew version|must be a new version"):
        parse_spec(edited, "sample-v1.yaml")


def test_get_benchmark_by_name_and_version():
    assert get_benchmark("sample").key == "sample@2"
    assert get_benchmark("sample@1").superseded_by == "2"
    with pytest.raises(BenchmarkError, match="unknown benchmark 'nope'; choose from hdtf-test, mead-emotion, mnte, sample"):
        get_benchmark("nope")
    assert get_benchmark("sample-v1").key == get_benchmark("sample@1").key == "sample@1"
    assert get_benchmark("mead-emotion-v1").key == "mead-emotion@1"
    with pytest.raises(BenchmarkError, match="has no version '9'"):
        get_benchmark("sample", "9")


def test_sample_clips_resolve_and_match_their_pinned_hashes():
    clips = resolve_clips(get_benchmark("sample"))
    assert [c.id for c in clips] == ["ar_001", "sw_001", "zh_001", "ko_001", "ja_001", "tr_001", "en_001", "de_001"]
    assert all(c.video.is_file() for c in clips)
    assert clips[-1].family == "Indo-European" and clips[0].family == "Afro-Asiatic"


def test_a_superseded_sample_version_no_longer_resolves_against_the_new_files():
    with pytest.raises(BenchmarkError, match="ar_001"):
        resolve_clips(get_benchmark("sample@1"))


def test_catalog_benchmarks_need_a_data_dir_and_name_missing_clips(tmp_path):
    with pytest.raises(BenchmarkError, match="talkbench data build mnte"):
        resolve_clips(get_benchmark("mnte"))
    from talkbench.datasets.catalog import Catalog

    with Catalog(tmp_path) as cat:
        cat.upsert({"clip_id": "mnte_ar_001", "status": "accepted", "path": "clips/mnte_ar_001.mp4"})
    with pytest.raises(BenchmarkError, match=r"29 of 30 clips of mnte@1 are not built \(e.g. mnte_ar_002"):
        resolve_clips(get_benchmark("mnte"), tmp_path)


@pytest.mark.shared_data
def test_hdtf_test_split_is_reproducible_from_the_official_lists(shared_data):
    spec = make_specs.hdtf_spec(shared_data / "manifests" / "hdtf")
    shipped = get_benchmark("hdtf-test")
    assert [c["id"] for c in spec["clips"]] == [c.id for c in shipped.clips]
    people = [c.id.rsplit("_", 1)[0] for c in shipped.clips]
    assert len(set(people)) == 20  # identity-disjoint: one clip per person


def test_make_specs_writes_the_shipped_sample_clip_list():
    """``sample_spec`` builds its entries from the sample corpus' Clip records (frames and
    sha256 pinned): they are the shipped spec's, field for field."""
    shipped = get_benchmark("sample")
    assert make_specs.sample_spec()["clips"] == [c.model_dump(exclude_none=True) for c in shipped.clips]


def test_benchmark_clip_and_clip_convert_both_ways(tmp_path):
    from talkbench.clip import Clip
    from talkbench.leaderboard.benchmarks import BenchmarkClip

    bc = next(c for c in get_benchmark("mead-emotion").clips if c.emotion == "happy")
    clip = bc.to_clip(tmp_path / "a.mp4", "mead", 3.5, {"catalog": "x"})
    assert clip == Clip(id=bc.id, dataset="mead", language="en", duration=3.5, video=tmp_path / "a.mp4",
                        family="Indo-European", emotion="happy", provenance={"catalog": "x"})
    back = BenchmarkClip.from_clip(clip, intensity=bc.intensity)
    assert back == bc.model_copy(update={"duration": 3.5})
    assert bc.to_clip(tmp_path / "a.mp4", "mead").duration == 0.0  # the spec gives none
