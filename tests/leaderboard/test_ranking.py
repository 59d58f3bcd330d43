"""Rankings from real runs: IE / non-IE columns, the gap, protocol separation, formats, CLI."""

from __future__ import annotations

import csv
import io
import json

import pytest

from talkbench.leaderboard.ranking import IE, NON_IE, gap_percent, leaderboard, marks
from talkbench.leaderboard.store import ClipValue, Run
from talkbench.leaderboard.tables import boards_csv, boards_latex, boards_markdown


def test_gap_is_positive_when_worse_outside_indo_european():
    assert gap_percent(0.8, 0.6, "ssim") == pytest.approx(25.0)  # higher is better, dropped
    assert gap_percent(0.1, 0.15, "lmd") == pytest.approx(50.0)  # lower is better, rose
    assert gap_percent(0.1, 0.05, "lmd") == pytest.approx(-50.0)
    assert gap_percent(None, 0.5, "ssim") is None


def test_marks_follow_distinct_values_and_skip_reference_rows():
    assert marks([0.9, 0.8, 0.8, 0.7], True) == ["best", "second", "second", ""]
    assert marks([1.0, 0.5, 0.4], True, [True, False, False]) == ["", "best", "second"]
    assert marks([3.0, 1.0, None], False) == ["second", "best", ""]


def test_measured_board_from_real_runs(measured_store):
    boards = [b for b in leaderboard(measured_store, "sample-mini") if b.provenance == "measured"]
    assert len(boards) == 1
    b = boards[0]
    assert [r.method for r in b.rows][0] == "ground-truth"
    assert set(b.metrics) == {"ssim", "cpbd"}
    assert b.columns()[:2] == [(IE, "ssim"), (IE, "cpbd")] and ("gap", "ssim") in b.columns()
    gt = b.rows[0]
    assert gt.value(IE, "ssim") == pytest.approx(1.0) and gt.value(NON_IE, "ssim") == pytest.approx(1.0)
    static = next(r for r in b.rows if r.method == "static-source")
    h264 = next(r for r in b.rows if r.method == "h264")
    assert static.value(NON_IE, "ssim") < h264.value(NON_IE, "ssim") < 1.0
    assert static.gap("ssim") == pytest.approx(
        100 * (static.value(IE, "ssim") - static.value(NON_IE, "ssim")) / static.value(IE, "ssim"))
    ssim_marks = b.column_marks((NON_IE, "ssim"))
    assert ssim_marks[[r.method for r in b.rows].index("h264")] == "best"  # GT is not ranked
    assert 100 < h264.attributes["mean_measured_kbps"] < 600


def test_different_protocols_are_never_ranked_together(measured_store, tmp_path):
    from talkbench.leaderboard.store import Store

    store = Store(tmp_path / "lb.duckdb")
    base = measured_store.runs(provenance="measured")[0]
    for res, name in ((256, "A"), (512, "B")):
        proto = dict(base["protocol"], resolution=res)
        store.add_run(Run(method=name, benchmark="sample", benchmark_version="1", task="speech-driven",
                          provenance="measured", protocol=proto), [ClipValue("de_001", "ssim", 0.9)])
    boards = leaderboard(store, "sample")
    assert len(boards) == 2 and [len(b.rows) for b in boards] == [1, 1]
    assert boards[1].differences == ["resolution"]
    assert "protocol differs in resolution" in boards[1].note


def test_hdtf_and_mnte_pair_up_only_within_one_reference_build(tmp_path):
    """Two users' MNTE builds (different reference files) must never be ranked together; while
    each benchmark has one build, its HDTF and MNTE runs make one board with the gap."""
    from talkbench.leaderboard.store import Store

    store = Store(tmp_path / "lb.duckdb")

    def add(method, benchmark, refs, value):
        store.add_run(Run(method=method, benchmark=benchmark, benchmark_version="1", task="speech-driven",
                          provenance="measured", protocol={"resolution": 256},
                          attributes={"references_sha256": refs}), [ClipValue("c1", "ssim", value)])

    add("A", "hdtf-test", "h1", 0.8)
    add("A", "mnte", "m1", 0.6)
    add("B", "hdtf-test", "h1", 0.7)
    add("B", "mnte", "m1", 0.65)
    [board] = [b for b in leaderboard(store, reported=False)]
    assert board.benchmarks == ["hdtf-test", "mnte"] and {r.method for r in board.rows} == {"A", "B"}
    assert board.rows[0].gap("ssim") is not None

    add("C", "mnte", "m2", 0.9)  # another MNTE build
    boards = leaderboard(store, reported=False)
    by_key = {b.key: b for b in boards}
    assert all(len(b.benchmarks) == 1 for b in boards), "no board mixes HDTF and MNTE builds any more"
    mnte = [b for b in boards if b.benchmarks == ["mnte"]]
    assert sorted(sorted(r.method for r in b.rows) for b in mnte) == [["A", "B"], ["C"]]
    assert len(by_key) == len(boards) and all("references" in b.title for b in mnte)


def test_reported_table2_board_keeps_the_papers_numbers(measured_store):
    board = next(b for b in leaderboard(measured_store) if b.provenance == "reported")
    vq = next(r for r in board.rows if r.method == "VQTalker")
    assert vq.value(IE, "ssim") == 0.835 and vq.value(NON_IE, "ssim") == 0.730
    assert vq.gap("ssim") == pytest.approx(100 * (0.835 - 0.730) / 0.835)


def test_formats(measured_store):
    boards = leaderboard(measured_store, "sample-mini")
    md = boards_markdown(boards)
    assert "| # | Method | Prov. | SSIM IE | CPBD IE | SSIM non-IE |" in md
    rows = list(csv.DictReader(io.StringIO(boards_csv(boards))))
    h = [r for r in rows if r["method"] == "h264" and r["side"] == NON_IE and r["metric"] == "ssim"]
    assert h[0]["mark"] == "best" and 0.5 < float(h[0]["value"]) < 1.0
    latex = boards_latex(boards)
    assert r"\textbf{" in latex and r"\underline{" in latex and latex.count("{") == latex.count("}")


def test_cli_leaderboard_and_tables(measured_store, tmp_path):
    from typer.testing import CliRunner

    from talkbench.cli import app

    runner = CliRunner()
    db = str(measured_store.path)
    r = runner.invoke(app, ["leaderboard", "--store", db, "--format", "csv", "--benchmark", "sample-mini"])
    assert r.exit_code == 0, r.output
    assert "ground-truth" in r.output and "h264" in r.output
    r = runner.invoke(app, ["leaderboard", "--store", db, "--format", "md", "--out", str(tmp_path / "lb.md")])
    assert r.exit_code == 0 and "VQTalker Table 2" in (tmp_path / "lb.md").read_text()
    r = runner.invoke(app, ["leaderboard", "--store", db, "--format", "json"])
    assert {b["provenance"] for b in json.loads(r.output)} == {"measured", "reported"}
    r = runner.invoke(app, ["tables", "--paper", "vqtalker", "--format", "latex", "--store", db])
    assert r.exit_code == 0 and r.output.count(r"\begin{table}") == 4
    r = runner.invoke(app, ["tables", "--paper", "nope", "--store", db])
    assert r.exit_code != 0 and "unknown paper 'nope'" in r.output
    r = runner.invoke(app, ["leaderboard", "--store", db])
    assert r.exit_code == 0 and "measured" in r.output
    r = runner.invoke(app, ["leaderboard", "--store", db, "--format", "html", "--out", str(tmp_path / "site")])
    assert r.exit_code == 0 and (tmp_path / "site" / "index.html").is_file()
    r = runner.invoke(app, ["leaderboard", "--store", db, "--format", "xml"])
    assert r.exit_code != 0 and "unknown format 'xml'" in r.output
