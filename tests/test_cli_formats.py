"""Listings that survive a pipe: ``baselines list``, ``weights list``, ``media probe`` and
``leaderboard`` print whole names when stdout is not a terminal (CliRunner's never is), and
take ``--format table|csv|json``."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from talkbench.cli import app

runner = CliRunner()

# A name that an 80-column table would have cut to "a-meth…".
LONG_NAME = "a-method-whose-name-is-far-too-long-for-eighty-columns"


@pytest.fixture(autouse=True)
def not_a_terminal(monkeypatch):
    """rich treats FORCE_COLOR / TTY_COMPATIBLE=1 as a terminal; these tests are about pipes."""
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _has_whole_cell(output: str, text: str) -> bool:
    """``text`` fills a table cell on one line: "│ text │", padded, not folded or cut."""
    return any(f"│ {text} " in line for line in output.splitlines())


# -- baselines list ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline_rows():
    from talkbench.leaderboard.baseline_status import baseline_status_rows

    return baseline_status_rows()


def test_baselines_table_keeps_every_name_and_note_whole(baseline_rows):
    result = runner.invoke(app, ["baselines", "list"])
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    for r in baseline_rows:
        assert _has_whole_cell(result.stdout, r.method), r.method
        assert r.note in result.stdout  # the widest column is not cut either


def test_baselines_table_survives_a_real_pipe(baseline_rows):
    """What ``talkbench baselines list | cat`` does, even with a narrow COLUMNS."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    result = subprocess.run([sys.executable, "-m", "talkbench", "baselines", "list"],
                            capture_output=True, text=True, timeout=120, env=env | {"COLUMNS": "40"})
    assert result.returncode == 0, result.stderr
    for r in baseline_rows:
        assert _has_whole_cell(result.stdout, r.method), r.method


def test_baselines_csv_is_the_registry_whole(baseline_rows):
    result = runner.invoke(app, ["baselines", "list", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = _csv_rows(result.stdout)
    assert list(rows[0]) == ["method", "status", "tables", "tasks", "code", "commit", "licence", "official", "note"]
    assert [row["method"] for row in rows] == [r.method for r in baseline_rows]
    for row, r in zip(rows, baseline_rows):
        assert row["commit"] == r.commit  # the full hash, where the table shows 10 characters
        assert row["note"] == r.note and row["licence"] == r.licence
        assert row["tables"].split() == list(r.tables)
        assert row["official"] == ("true" if r.official else "false")


def test_baselines_json_and_its_old_flag_agree(baseline_rows):
    by_format = runner.invoke(app, ["baselines", "list", "-f", "json"])
    by_flag = runner.invoke(app, ["baselines", "list", "--json"])
    assert by_format.exit_code == 0 and by_flag.exit_code == 0
    assert by_format.stdout == by_flag.stdout
    assert [d["method"] for d in json.loads(by_format.stdout)] == [r.method for r in baseline_rows]


def test_json_flag_and_another_format_disagree():
    result = runner.invoke(app, ["baselines", "list", "--json", "--format", "csv"])
    assert result.exit_code == 2
    assert "--json and --format csv disagree" in result.output


def test_demo_table_keeps_its_four_columns(baseline_rows):
    from rich.console import Console

    from talkbench.cli.baselines import status_table

    table = status_table(baseline_rows, detail=False)
    assert [str(c.header) for c in table.columns] == ["method", "status", "tables", "task"]
    assert table.row_count == len(baseline_rows)
    console = Console(width=300, record=True, file=io.StringIO())
    console.print(status_table(baseline_rows))
    text = console.export_text()
    anitalker = next(r for r in baseline_rows if r.method == "AniTalker")
    assert f"X-LANCE/AniTalker @ {anitalker.commit[:10]}" in text and "vqtalker:1 (reported only)" in text


# -- weights list -----------------------------------------------------------------------------


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKBENCH_WEIGHTS_DIR", str(tmp_path / "weights"))
    return tmp_path / "weights"


def _registered():
    from talkbench import weights

    # the command itself loads the modules that register weights, so read this after invoking it
    return weights.registered()


def test_weights_table_keeps_names_and_urls_whole(empty_cache):
    result = runner.invoke(app, ["weights", "list"])
    assert result.exit_code == 0, result.output
    specs = _registered()
    assert len(specs) > 3
    assert "…" not in result.stdout
    for spec in specs:
        assert _has_whole_cell(result.stdout, spec.name), spec.name
        assert spec.url in result.stdout
    assert f"cache: {empty_cache}" in result.stdout


def test_weights_csv_and_json(empty_cache):
    from talkbench import weights

    result = runner.invoke(app, ["weights", "list", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = _csv_rows(result.stdout)
    specs = _registered()
    assert [row["name"] for row in rows] == [s.name for s in specs]
    by_name = {row["name"]: row for row in rows}
    for spec in specs:
        status = weights.status(spec.name)  # "missing" unless a pip package bundles a copy
        row = by_name[spec.name]
        assert row["state"] == status.state and row["path"] == (status.path or "")
        assert row["sha256"] == (status.sha256 or spec.sha256 or spec.sha256_prefix or "")  # whole, not 16 chars
        assert row["licence"] == spec.licence and row["url"] == spec.url
    assert any(len(row["sha256"]) == 64 for row in rows)
    assert "cache:" not in result.stdout  # nothing but CSV on stdout

    document = json.loads(runner.invoke(app, ["weights", "list", "--format", "json"]).stdout)
    assert document["cache_dir"] == str(empty_cache)
    assert [w["name"] for w in document["weights"]] == [s.name for s in specs]


# -- media probe ------------------------------------------------------------------------------


@pytest.fixture
def long_named_clip(sample_clips, tmp_path):
    path = tmp_path / f"{LONG_NAME}.mp4"
    shutil.copy(sample_clips[0].video, path)
    return path


def test_media_table_keeps_a_long_file_name_whole(long_named_clip, sample_clips):
    result = runner.invoke(app, ["media", "probe", str(long_named_clip), str(sample_clips[1].video)])
    assert result.exit_code == 0, result.output
    assert _has_whole_cell(result.stdout, long_named_clip.name)
    assert _has_whole_cell(result.stdout, sample_clips[1].video.name)


def test_media_csv_keeps_stdout_clean_when_a_file_fails(long_named_clip, sample_clips, tmp_path):
    from talkbench import media

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    result = runner.invoke(app, ["media", "probe", str(long_named_clip), str(bad), str(sample_clips[1].video),
                                 "--format", "csv"])
    assert result.exit_code == 1  # one file failed; the others are still listed
    rows = _csv_rows(result.stdout)
    assert [row["path"] for row in rows] == [str(long_named_clip), str(sample_clips[1].video)]
    expected = media.probe(sample_clips[1].video)
    assert int(rows[1]["frame_count"]) == expected.frame_count
    assert float(rows[1]["duration"]) == expected.duration
    assert rows[1]["size"] == f"{expected.width}x{expected.height}"
    assert str(bad) in result.stderr and str(bad) not in result.stdout


def test_media_format_json_is_the_json_flag(sample_clips):
    video = str(sample_clips[0].video)
    by_format = runner.invoke(app, ["media", "probe", video, "--format", "json"])
    by_flag = runner.invoke(app, ["media", "probe", video, "--json"])
    assert by_format.exit_code == 0 and by_format.stdout == by_flag.stdout
    assert json.loads(by_format.stdout)["files"][0]["path"] == video


# -- leaderboard ------------------------------------------------------------------------------


@pytest.fixture
def store_with_long_name(tmp_path):
    """The papers' reported rows plus one more in VQTalker Table 2 under a long method name."""
    from talkbench.baselines.method import MethodInfo
    from talkbench.leaderboard.paper import TABLES
    from talkbench.leaderboard.reported import load_reported, reported_runs
    from talkbench.leaderboard.store import Store

    store = Store(tmp_path / "lb.duckdb")
    load_reported(store)
    table = next(t for t in TABLES if (t.paper.lower(), str(t.number)) == ("vqtalker", "2"))
    run, cells = reported_runs(table)[0]
    run = dataclasses.replace(run, method=LONG_NAME, row_label=LONG_NAME, row_order=99, run_id="reported-long-name")
    store.add_run(run, aggregates=cells, method=MethodInfo(name=LONG_NAME, kind="reported", paper="a test"))
    return store


def test_leaderboard_table_keeps_method_names_whole(store_with_long_name):
    from talkbench.leaderboard.ranking import leaderboard

    result = runner.invoke(app, ["leaderboard", "--store", str(store_with_long_name.path)])
    assert result.exit_code == 0, result.output
    methods = {r.method for board in leaderboard(store_with_long_name) for r in board.rows}
    assert LONG_NAME in methods
    assert "…" not in result.stdout
    for method in methods:
        assert _has_whole_cell(result.stdout, method), method


# -- a format that does not exist -------------------------------------------------------------


@pytest.mark.parametrize("command", [["baselines", "list"], ["weights", "list"], ["media", "probe", "x.mp4"]])
def test_unknown_format_is_refused_by_name(command):
    result = runner.invoke(app, [*command, "--format", "xml"])
    assert result.exit_code == 2
    flat = " ".join(result.output.replace("│", " ").split())  # the message is boxed and wrapped
    assert "'xml' is not one of 'table', 'csv', 'json'" in flat


def test_leaderboard_unknown_format_is_refused_before_opening_the_store(tmp_path):
    store = tmp_path / "lb.duckdb"
    result = runner.invoke(app, ["leaderboard", "--store", str(store), "--format", "xml"])
    assert result.exit_code == 2 and "unknown format 'xml'" in result.output
    assert not store.exists()
