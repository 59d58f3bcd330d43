"""The typed records between the dataset layers: ``CatalogRow`` (one row of catalog.duckdb) and
``BuildSummary`` (what a build returns and ``talkbench data build/status --json`` print).

The catalog's DuckDB schema and the printed JSON are the ones of the dict-based versions
before them: the expected values below were captured from that code on the same sample clip
(ar_001 of the sample corpus, a missing file, a file that is not a video)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from talkbench.cli import app
from talkbench.clip import Clip
from talkbench.datasets.catalog import COLUMNS, BuildSummary, Catalog, CatalogError, CatalogRow, open_summary
from talkbench.datasets.language import packaged_base
from talkbench.errors import TalkbenchError
from talkbench.samples import sample_dir

runner = CliRunner()

# DESCRIBE clips of a catalog made by the dict-based Catalog (column, type, null, key)
SCHEMA = [("clip_id", "VARCHAR", "NO", "PRI")] + [
    (name, sql, "YES", None) for name, sql in [
        ("dataset", "VARCHAR"), ("source", "VARCHAR"), ("range_start", "DOUBLE"), ("range_end", "DOUBLE"),
        ("split", "VARCHAR"), ("person", "VARCHAR"), ("emotion", "VARCHAR"), ("intensity", "INTEGER"),
        ("expected_language", "VARCHAR"), ("manifest_crop", "VARCHAR"), ("meta", "VARCHAR"), ("status", "VARCHAR"),
        ("stage", "VARCHAR"), ("reason", "VARCHAR"), ("error", "VARCHAR"), ("raw_path", "VARCHAR"),
        ("path", "VARCHAR"), ("source_width", "INTEGER"), ("source_height", "INTEGER"), ("source_fps", "DOUBLE"),
        ("clip_start", "DOUBLE"), ("clip_end", "DOUBLE"), ("duration", "DOUBLE"), ("width", "INTEGER"),
        ("height", "INTEGER"), ("fps", "DOUBLE"), ("frames", "INTEGER"), ("face_px", "DOUBLE"),
        ("crop_px", "INTEGER"), ("crop_box", "VARCHAR"), ("crop_method", "VARCHAR"), ("face_frames", "VARCHAR"),
        ("multi_face_frames", "INTEGER"), ("min_face_px", "INTEGER"), ("min_seconds", "DOUBLE"),
        ("language", "VARCHAR"), ("language_prob", "DOUBLE"), ("language_top3", "VARCHAR"),
        ("speech_seconds", "DOUBLE"), ("lid_engine", "VARCHAR"), ("lid_model", "VARCHAR"),
        ("tool_versions", "VARCHAR"), ("timings", "VARCHAR"), ("started_at", "VARCHAR"), ("finished_at", "VARCHAR"),
    ]
]


def _stage(name, entered, passed, rejected=0, failed=0):
    return {"stage": name, "entered": entered, "passed": passed, "rejected": rejected, "failed": failed}


# `talkbench data build files ... --json` of the dict-based pipeline, but for the catalog path
BUILD_JSON = {
    "clips": 3, "accepted": 1, "rejected": 1, "failed": 1,
    "stages": [_stage("fetch", 3, 2, failed=1), _stage("cut", 2, 1, rejected=1), _stage("face", 1, 1),
               _stage("filter", 1, 1), _stage("language", 1, 1), _stage("resize", 1, 1)],
    "reasons": {
        "not_video": {"count": 1, "stage": "cut", "meaning": "the file is not a video FFmpeg can read"},
        "source_missing": {"count": 1, "stage": "fetch",
                           "meaning": "the local source file does not exist (yet); retried on re-run"},
    },
    "languages": {"ar": 1},
    "catalog": "CATALOG", "skipped": 0, "engine": "local", "min_face_px": 256,
}

# the stable columns of ar_001's row, as the dict-based pipeline stored them
AR_001 = {
    "clip_id": "ar_001", "dataset": "files", "range_start": 0.0, "range_end": None, "meta": "{}",
    "status": "accepted", "stage": "done", "reason": None, "error": None, "path": "clips/ar_001.mp4",
    "source_width": 512, "source_height": 512, "source_fps": 25.0, "clip_start": 0.0, "clip_end": 4.8,
    "duration": 4.8, "width": 512, "height": 512, "fps": 25.0, "frames": 120, "face_px": 310.0, "crop_px": 512,
    "crop_box": "[0, 0, 512, 512]", "crop_method": "detected", "face_frames": "8/8", "multi_face_frames": 0,
    "min_face_px": 256, "min_seconds": 3.0, "language": "ar", "lid_engine": "faster-whisper", "lid_model": "base",
}


def test_catalog_schema_is_the_one_before_the_records(tmp_path):
    with Catalog(tmp_path):
        pass
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
    try:
        described = [tuple(r[:4]) for r in con.execute("DESCRIBE clips").fetchall()]
        meta = [tuple(r[:4]) for r in con.execute("DESCRIBE meta").fetchall()]
    finally:
        con.close()
    assert described == SCHEMA
    assert meta == [("key", "VARCHAR", "NO", "PRI"), ("value", "VARCHAR", "YES", None)]
    assert list(COLUMNS) == [name for name, *_ in SCHEMA]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One real build through the CLI: a sample clip, a missing file, a file that is no video."""
    if importlib.util.find_spec("faster_whisper") is None or packaged_base() is None:
        pytest.skip("language ID (faster-whisper and the packaged base model) is not installed")
    tmp = tmp_path_factory.mktemp("records")
    bad = tmp / "bad.mp4"
    bad.write_bytes(b"not a video")
    out = tmp / "ds"
    result = runner.invoke(app, ["data", "build", "files", "-m", str(sample_dir() / "ar_001.mp4"),
                                 "-m", str(tmp / "gone.mp4"), "-m", str(bad), "--out", str(out),
                                 "--min-face-px", "256", "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    return out, result.stdout


def test_build_json_is_unchanged_and_round_trips(built):
    out, printed = built
    data = json.loads(printed)
    assert data == BUILD_JSON | {"catalog": str(out / "catalog.duckdb")}
    assert list(data) == list(BUILD_JSON)  # the key order too
    summary = BuildSummary.from_json(printed)
    assert summary.to_json(indent=2) + "\n" == printed  # byte for byte, as print_json wrote it
    assert (summary.accepted, summary.reasons["not_video"].stage, summary.stages[1].rejected) == (1, "cut", 1)
    assert summary.to_dict()["reasons"]["not_video"]["count"] == 1


def test_status_json_and_rows_round_trip(built):
    out, printed = built
    result = runner.invoke(app, ["data", "status", str(out), "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert list(status) == ["clips", "accepted", "rejected", "failed", "stages", "reasons", "languages", "meta",
                            "catalog"]
    assert {k: status[k] for k in ("clips", "stages", "reasons", "languages")} == {
        k: BUILD_JSON[k] for k in ("clips", "stages", "reasons", "languages")}
    assert status["meta"]["params"]["min_face_px"] == 256 and status["meta"]["source"] == "files"
    again = open_summary(out)
    assert again.to_dict() == status and BuildSummary.from_dict(status) == again

    with Catalog(out, read_only=True) as cat:
        records, rows, clips = cat.records(), cat.rows(), cat.clips()
    assert [r.clip_id for r in records] == ["ar_001", "bad", "gone"]
    assert rows == [r.to_dict() for r in records]
    for r in records:
        assert CatalogRow.from_dict(r.to_dict()) == r and CatalogRow.from_json(r.to_json()) == r
    ar = records[0]
    assert {k: v for k, v in ar.to_dict().items() if k in AR_001} == AR_001
    assert (records[1].status, records[1].reason, records[2].status, records[2].reason) == (
        "rejected", "not_video", "failed", "source_missing")

    (clip,) = clips
    assert clip == Clip(id="ar_001", dataset="files", language="ar", duration=4.8,
                        video=(out / "clips" / "ar_001.mp4").resolve(), family="Afro-Asiatic",
                        provenance={"catalog": str(out / "catalog.duckdb")})
    assert clip.video.is_file() and Clip.from_json(clip.to_json()) == clip
    with pytest.raises(CatalogError, match=r"catalog.duckdb: clip bad has no clip file \(status rejected, "
                                           r"reason not_video\)"):
        records[1].to_clip(out)


def test_records_refuse_what_they_do_not_know(tmp_path):
    with pytest.raises(CatalogError, match=r"catalog row 'x': unknown column\(s\) lang"):
        CatalogRow.from_dict({"clip_id": "x", "lang": "en"})
    with pytest.raises(CatalogError, match="no clip_id"):
        CatalogRow.from_dict({"status": "accepted"})
    with Catalog(tmp_path) as cat:
        with pytest.raises(CatalogError, match="unknown column"):
            cat.upsert({"clip_id": "x", "languge": "en"})
        cat.upsert({"clip_id": "x", "status": "failed"})  # a mapping with known columns is a row
        assert cat.records() == [CatalogRow(clip_id="x", status="failed")]
    with pytest.raises(CatalogError, match=r"build summary: unknown key\(s\) extra"):
        BuildSummary.from_dict(BUILD_JSON | {"extra": 1})
    with pytest.raises(CatalogError, match="not a summary"):
        BuildSummary.from_dict({"clips": 1})
    with pytest.raises(TalkbenchError, match=r"clip record 'a': unknown field\(s\) path"):
        Clip.from_dict({"id": "a", "dataset": "d", "language": "en", "duration": 1.0, "video": "/a.mp4",
                        "path": "/a.mp4"})
    with pytest.raises(TalkbenchError, match=r"clip record 'a': missing field\(s\) video"):
        Clip.from_dict({"id": "a", "dataset": "d", "language": "en", "duration": 1.0})
    assert Clip.from_dict({"id": "a", "dataset": "d", "language": "en", "duration": 1.0,
                           "video": "/a.mp4"}).video == Path("/a.mp4")
