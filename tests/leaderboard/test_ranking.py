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


# -- bootstrap intervals, ties and the gap's significance ----------------------------------

SEED, REPLICATES = 7, 400
PROTOCOL = {"resolution": 256, "seed": SEED, "bootstrap_replicates": REPLICATES, "bootstrap_level": 0.95}


def test_tie_rule_overlapping_disjoint_and_missing_intervals():
    from talkbench.leaderboard.ranking import Estimate, tied

    assert tied(Estimate(0.80, (0.75, 0.85)), Estimate(0.78, (0.70, 0.79)))  # overlapping
    assert tied(Estimate(0.80, (0.75, 0.85)), Estimate(0.70, (0.65, 0.75)))  # touching counts
    assert not tied(Estimate(0.80, (0.75, 0.85)), Estimate(0.60, (0.55, 0.65)))  # disjoint
    assert not tied(Estimate(0.80, (0.75, 0.85)), Estimate(0.79))  # no interval: only equal values tie
    assert not tied(Estimate(0.80), Estimate(0.79))
    assert tied(Estimate(0.80), Estimate(0.80, (0.7, 0.9)))


def test_ranks_chain_ties_skip_the_reference_and_count_positions():
    from talkbench.leaderboard.ranking import Board, Rank, Row

    def row(method, value, interval):
        return Row(method, "measured", [], {(NON_IE, "ssim"): value}, intervals={(NON_IE, "ssim"): interval})

    rows = [row("ground-truth", 1.0, (1.0, 1.0)), row("A", 0.80, (0.76, 0.84)), row("B", 0.75, (0.72, 0.78)),
            row("C", 0.70, (0.66, 0.73)),  # overlaps B but not A: a chain is one tie
            row("D", 0.50, (0.45, 0.55)), row("E", 0.40, None)]
    board = Board("k", "t", "measured", "speech-driven", ["sample"], "0" * 64, PROTOCOL, ["ssim"], rows)
    assert board.ranks() == [Rank(None), Rank(1, True), Rank(1, True), Rank(1, True), Rank(4), Rank(5)]
    assert [str(r) for r in board.ranks()] == ["–", "1=", "1=", "1=", "4", "5"]


def _measured_board(store):
    [board] = leaderboard(store, reported=False)
    return board, {r.method: r for r in board.rows}


def test_overlapping_intervals_tie_and_disjoint_ones_do_not(sample_runs):
    board, rows = _measured_board(sample_runs.store)
    ranks = dict(zip([r.method for r in board.rows], board.ranks()))
    assert [r.method for r in board.rows] == ["ground-truth", "A", "B", "D", "C"]
    a, b = rows["A"].interval(NON_IE, "ssim"), rows["B"].interval(NON_IE, "ssim")
    assert a[0] <= b[1] and b[0] <= a[1], "the fixture's A and B must overlap"
    assert (ranks["A"].position, ranks["A"].tied) == (1, True) and (ranks["B"].position, ranks["B"].tied) == (1, True)
    assert rows["D"].interval(NON_IE, "ssim")[1] < b[0], "D lies below B's interval"
    assert (ranks["D"].position, ranks["D"].tied) == (3, False) and (ranks["C"].position, ranks["C"].tied) == (4, False)
    assert ranks["ground-truth"].position is None  # shown, never ranked


def test_cell_intervals_resample_the_stored_clips_with_the_protocols_seed(sample_runs):
    from talkbench.metrics import bootstrap

    _, rows = _measured_board(sample_runs.store)
    for method in ("A", "C"):
        ie, non_ie = sample_runs.values[method]
        for side, values in ((IE, ie), (NON_IE, non_ie)):
            in_clip_order = [values[c] for c in sorted(values)]
            expected = bootstrap.mean_interval(in_clip_order, sample_runs.replicates, sample_runs.seed)
            assert rows[method].interval(side, "ssim") == expected
            assert rows[method].value(side, "ssim") == pytest.approx(sum(in_clip_order) / len(in_clip_order))
    assert rows["A"].interval(NON_IE, "ssim") != rows["A"].interval(IE, "ssim")


def test_gap_interval_is_the_difference_interval_and_marks_significance(sample_runs):
    from talkbench.metrics import bootstrap

    board, rows = _measured_board(sample_runs.store)
    for method in ("A", "C", "D"):
        ie, non_ie = sample_runs.values[method]
        expected = bootstrap.difference_interval([ie[c] for c in sorted(ie)], [non_ie[c] for c in sorted(non_ie)],
                                                 sample_runs.replicates, sample_runs.seed)
        assert rows[method].gap_differences["ssim"] == expected
        ie_mean = rows[method].value(IE, "ssim")
        in_percent = (100 * expected[0] / ie_mean, 100 * expected[1] / ie_mean)  # SSIM: higher is better
        assert rows[method].gap_interval("ssim") == pytest.approx(in_percent)
    assert rows["A"].gap_significant("ssim") is True and rows["C"].gap_significant("ssim") is True
    low, high = rows["D"].gap_differences["ssim"]
    assert low <= 0 <= high and rows["D"].gap_significant("ssim") is False
    md = boards_markdown([board])
    d_line = next(line for line in md.splitlines() if "| D |" in line)
    assert "≈+0.0** [" in d_line and "≈" not in next(line for line in md.splitlines() if "| A |" in line)


def test_runs_without_bootstrap_fields_get_the_default_replicates(store):
    """Runs stored before intervals existed: protocol seed (or 0), 1000 replicates."""
    from talkbench.metrics import bootstrap

    values = [0.5, 0.7, 0.6, 0.9]
    store.add_run(Run(method="old", benchmark="mnte", benchmark_version="1", task="speech-driven",
                      provenance="measured", protocol={"resolution": 256}),
                  [ClipValue(f"c{i}", "ssim", v) for i, v in enumerate(values)])
    [board] = leaderboard(store, reported=False)
    assert board.rows[0].interval(NON_IE, "ssim") == bootstrap.mean_interval(values, 1000, 0)


def test_fid_uses_the_stored_interval_and_paired_runs_give_the_gap(store):
    """HDTF (IE) and MNTE (non-IE) are one board; FID's interval is the engine's, stored with
    the value; the SSIM gap resamples the two runs' clips."""
    from talkbench.leaderboard.store import AggregateValue
    from talkbench.metrics import bootstrap

    hdtf, mnte = {"h1": 0.82, "h2": 0.86, "h3": 0.80}, {"m1": 0.61, "m2": 0.66, "m3": 0.70, "m4": 0.58}
    for benchmark, values, fid in (("hdtf-test", hdtf, (20.0, (18.5, 22.0))), ("mnte", mnte, (31.0, (28.0, 35.5)))):
        store.add_run(Run(method="A", benchmark=benchmark, benchmark_version="1", task="speech-driven",
                          provenance="measured", protocol=PROTOCOL),
                      [ClipValue(c, "ssim", v) for c, v in values.items()],
                      [AggregateValue("all", "fid", fid[0], ci=fid[1])])
    [board] = leaderboard(store, reported=False)
    row = board.rows[0]
    assert row.interval(IE, "fid") == (18.5, 22.0) and row.interval(NON_IE, "fid") == (28.0, 35.5)
    assert row.gap_significant("fid") is None and board.cell_interval(row, ("gap", "fid")) is None
    assert row.interval(IE, "ssim") == bootstrap.mean_interval(list(hdtf.values()), REPLICATES, SEED)
    assert row.gap_differences["ssim"] == bootstrap.difference_interval(
        list(hdtf.values()), list(mnte.values()), REPLICATES, SEED)


def test_formats_show_intervals_ties_and_the_legend(sample_runs):
    from talkbench.leaderboard.ranking import boards_json
    from talkbench.leaderboard.tables import boards_rich

    board, rows = _measured_board(sample_runs.store)
    low, high = rows["A"].interval(NON_IE, "ssim")
    md = boards_markdown([board])
    a_line = next(line for line in md.splitlines() if "| A |" in line)
    assert a_line.startswith("| 1= | A |")
    assert f"**{rows['A'].value(NON_IE, 'ssim'):.3f}** [{low:.3f}, {high:.3f}]" in a_line
    assert "bootstrap intervals over clips of methods ranked next to each other overlap" in md
    assert "| – | ground-truth |" in md

    by_cell = {(r["method"], r["side"], r["metric"]): r for r in csv.DictReader(io.StringIO(boards_csv([board])))}
    a = by_cell["A", NON_IE, "ssim"]
    assert (float(a["ci_low"]), float(a["ci_high"])) == (low, high) and (a["rank"], a["tied"]) == ("1", "true")
    assert by_cell["C", NON_IE, "ssim"]["tied"] == "false" and by_cell["ground-truth", IE, "ssim"]["rank"] == ""
    assert by_cell["D", "gap", "ssim"]["significant"] == "false"
    assert by_cell["A", "gap", "ssim"]["significant"] == "true"

    [data] = json.loads(boards_json([board]))
    a = next(r for r in data["rows"] if r["method"] == "A")
    assert (a["rank"], a["tied"]) == (1, True) and a["gap_significant"] == {"ssim": True}
    assert (a["ci_low"][f"{NON_IE}:ssim"], a["ci_high"][f"{NON_IE}:ssim"]) == (low, high)
    assert "overlap" in data["legend"] and data["rank_by"] == "ssim"

    latex = boards_latex([board])
    assert rf"\scriptsize [{low:.3f}, {high:.3f}]" in latex and latex.count("{") == latex.count("}")
    assert r"$\approx$+0.0" in latex

    from rich.console import Console

    console = Console(width=100, record=True)
    for t in boards_rich([board]):
        console.print(t)
    text = console.export_text()
    assert f"[{low:.3f}, {high:.3f}]" in text and "1=" in text


def test_reported_cells_have_no_interval(measured_store):
    board = next(b for b in leaderboard(measured_store) if b.provenance == "reported")
    assert all(not r.intervals and not r.gap_differences for r in board.rows)
    assert "published numbers carry no interval" in board.legend()
    assert "[" not in next(line for line in boards_markdown([board]).splitlines() if "| VQTalker |" in line)


def test_a_board_without_a_measured_metric_says_why_in_every_format(tmp_path):
    from talkbench.leaderboard.ranking import leaderboard
    from talkbench.leaderboard.store import Run, Store
    from talkbench.leaderboard.tables import boards_markdown, boards_rich

    store = Store(tmp_path / "lb.duckdb")
    store.add_run(Run(method="m", benchmark="sample", benchmark_version="2", task="speech-driven", provenance="measured",
                      protocol={"name": "talkbench-v1"},
                      attributes={"unavailable": {"lse": "weights 'syncnet-v2' are not installed",
                                                  "retired-metric": "no longer registered"}}), [])
    [board] = leaderboard(store, "sample")
    assert board.unmeasured == {"lse": "weights 'syncnet-v2' are not installed", "retired-metric": "no longer registered"}
    [table] = boards_rich([board])
    assert "not measured: lse (weights 'syncnet-v2' are not installed)" in str(table.caption)
    assert "Not measured: lse (" in boards_markdown([board])
