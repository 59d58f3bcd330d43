"""The papers' tables rebuilt from the store: cell for cell equal to the shipped CSVs (which are
the published numbers), in the papers' layout, with bold/underline where the papers put them."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from talkbench.leaderboard.paper import TABLES, csv_text, table
from talkbench.leaderboard.reported import load_reported
from talkbench.leaderboard.tables import build_table, render_paper, table_latex, table_markdown



def shared_paper(shared_data: Path) -> Path:
    """The published tables as CSV, beside the real media ($TALKBENCH_SHARED_DATA/../paper)."""
    return shared_data.parent / "paper"


def paper_text(shared_data: Path) -> Path:
    """The VQTalker paper's text ($TALKBENCH_SHARED_DATA/../seeds)."""
    return shared_data.parent / "seeds" / "vqtalker-paper.txt"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    from talkbench.leaderboard.store import Store

    store = Store(tmp_path_factory.mktemp("paper") / "lb.duckdb")
    load_reported(store)
    return store


@pytest.mark.shared_data
def test_shipped_csvs_are_the_shared_published_numbers(shared_data):
    for t in TABLES:
        assert csv_text(t.csv) == (shared_paper(shared_data) / t.csv).read_text(encoding="utf-8"), t.csv


@pytest.mark.parametrize("paper,number", [("vqtalker", 1), ("vqtalker", 2), ("vqtalker", 3),
                                          ("vqtalker", 4), ("flowvqtalker", 1)])
def test_reported_table_reproduces_the_csv_cell_for_cell(loaded, paper, number):
    t = table(paper, number)
    rt = build_table(loaded, paper, number)
    rows = list(csv.DictReader(csv_text(t.csv).splitlines()))
    assert all(r.provenance == "reported" for r in rt.rows)
    if t.groups:  # long CSV, wide paper layout: (method) x (dataset, metric)
        keys = [(g[0], c.key) for g in t.groups for c in t.columns]
        expected = {}
        for r in rows:
            expected.setdefault(r["method"], {}).update({(r["dataset"], k): r[k] for _, k in keys})
        assert [r.label for r in rt.rows] == list(expected)
        for r in rt.rows:
            assert [c.text for c in r.cells] == [expected[r.label][k] for k in keys], r.label
    else:
        assert [r.label for r in rt.rows] == [r["method"] for r in rows]
        for got, want in zip(rt.rows, rows):
            assert [c.text for c in got.cells] == [want[c.key] for c in t.columns], got.label
    assert all(c.provenance == "reported" for r in rt.rows for c in r.cells)


def _paper_underlines(path: Path, number: int) -> set[tuple[str, int]]:
    """(row label, column index) of the cells the paper underlines in VQTalker Table N."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"Table {number}:")
    block = text[start:].split("\n\n", 3)
    lines = [ln for ln in "\n".join(block[1:3]).splitlines() if "\t" in ln]
    out = set()
    for ln in lines:
        cells = ln.split("\t")
        for j, cell in enumerate(cells[1:]):
            if "<u>" in cell:
                out.add((cells[0].split(" (")[0], j))
    return out


PAPER_NAMES = {"EDTalker": "EDTalk", "VQTalker": "VQTalker"}


@pytest.mark.shared_data
@pytest.mark.parametrize("number", [1, 2, 4])
def test_second_best_marks_match_the_papers_underlines(loaded, number, shared_data):
    rt = build_table(loaded, "vqtalker", number, measured=False)
    ours = set()
    for i, r in enumerate(rt.rows):
        for j, c in enumerate(r.cells):
            if c.mark == "second":
                ours.add((r.label, j, i))
    paper = {(PAPER_NAMES.get(lbl, lbl), j) for lbl, j in _paper_underlines(paper_text(shared_data), number)}
    assert {(lbl, j) for lbl, j, _ in ours} == paper


def test_latex_bold_and_underline_sit_on_the_right_cells(loaded):
    latex = table_latex(build_table(loaded, "vqtalker", 2))
    rows = {ln.split(" & ")[0]: ln.split(" & ")[1:] for ln in latex.splitlines() if ln.endswith(r"\\") and " & " in ln}
    vq, ed, echo = rows["VQTalker"], rows["EDTalk"], rows["EchoMimic"]
    # HDTF SSIM: VQTalker best, EDTalk second; MNTE SSIM (column 7): EDTalk best, VQTalker second
    assert vq[0].startswith(r"\textbf{0.835}") and ed[0].startswith(r"\underline{0.823}")
    assert ed[6].startswith(r"\textbf{0.745}") and vq[6].startswith(r"\underline{0.730}")
    # HDTF CSIM tie for second: both EDTalk and EchoMimic underlined
    assert ed[1].startswith(r"\underline{0.881}") and echo[1].startswith(r"\underline{0.881}")
    # lower is better: LMD and FID
    assert vq[2].startswith(r"\textbf{0.067}") and vq[4].startswith(r"\textbf{28.783}")
    assert r"\textsuperscript{r}" in vq[0]
    assert latex.count(r"\textbf{") == 12 + 1  # one best per metric column, plus the legend
    assert r"\multicolumn{6}{c}{HDTF (Indo-European)}" in latex
    assert latex.count(r"\begin{tabular}") == 1 and latex.count("{") == latex.count("}")


def test_latex_escapes_printed_symbols_and_flow_table_skips_gt(loaded):
    t4 = table_latex(build_table(loaded, "vqtalker", 4))
    assert r"\textbf{0.410}\textsuperscript{r}" in t4  # tie for best CPBD: both C-C and D-C bold
    assert t4.count(r"\textbf{0.410}") == 2 and t4.count(r"\underline{0.408}") == 3
    flow = build_table(loaded, "flowvqtalker", 1)
    gt = next(r for r in flow.rows if r.label == "GT")
    assert all(c.mark == "" for c in gt.cells)  # the reference is never ranked
    ssim_mead = [r.cells[0].mark for r in flow.rows]
    assert ssim_mead[[r.label for r in flow.rows].index("FlowVQTalker")] == "best"


def test_markdown_marks_every_cell_with_its_provenance(loaded):
    md = table_markdown(build_table(loaded, "vqtalker", 1))
    body = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| Method")]
    assert len(body) == 11
    for ln in body:
        cells = [c.strip() for c in ln.strip("|").split("|")][1:]
        assert all(c == "–" or c.endswith("<sup>r</sup>") for c in cells), ln
    assert "| AniTalker | 256<sup>r</sup> | 16<sup>r</sup> | **0.905**<sup>r</sup> |" in md
    assert re.search(r"\| VQTalker \| 512<sup>r</sup> \| 11<sup>r</sup> \| <u>0\.874</u><sup>r</sup>", md)


def test_render_paper_gives_tables_1_to_4(loaded):
    md = render_paper(loaded, "vqtalker", "md")
    assert [ln for ln in md.splitlines() if ln.startswith("### ")] == [
        f"### VQTalker Table {n}: {table('vqtalker', n).title}" for n in (1, 2, 3, 4)]
    assert render_paper(loaded, "flowvqtalker", "latex").count(r"\begin{table}") == 1


def test_measured_cells_come_only_from_runs_under_the_tables_protocol(tmp_path):
    from talkbench.leaderboard.store import ClipValue, Run, Store
    from talkbench.metrics.paper_protocols import expected_protocol, get_protocol

    store = Store(tmp_path / "lb.duckdb")
    load_reported(store)
    under = expected_protocol(get_protocol("vqtalker-t1"))
    other = {**under, "name": "talkbench-v1", "resolution": 512, "identity_backend": "dlib"}
    for method, protocol, values in (("mine", under, {"ssim": 0.99, "csim_arcface": 0.8, "csim_dlib": 0.97}),
                                     ("theirs", under, {"ssim": 0.9, "csim_arcface": 0.7}),
                                     ("mine", other, {"ssim": 0.995, "csim_dlib": 0.99})):
        store.add_run(Run(method=method, benchmark="hdtf-test", benchmark_version="1", task="reconstruction",
                          provenance="measured", protocol=protocol),
                      [ClipValue("c1", name, value) for name, value in values.items()])
    rendered = build_table(store, "vqtalker", 1)
    rows = {r.label: r for r in rendered.rows if r.provenance != "reported"}
    assert set(rows) == {"mine (vqtalker-t1-v1)", "theirs (vqtalker-t1-v1)",
                         "mine (talkbench-v1, not vqtalker-t1-v1: differs in name, resolution, identity_backend)"}
    ssim, csim = rendered.headers.index("SSIM") - 1, rendered.headers.index("CSIM") - 1  # cells exclude Method
    dlib = rendered.headers.index("CSIM (dlib)") - 1
    mine, theirs = rows["mine (vqtalker-t1-v1)"], rows["theirs (vqtalker-t1-v1)"]
    odd = next(r for label, r in rows.items() if "differs" in label)
    assert (mine.cells[csim].value, theirs.cells[csim].value) == (0.8, 0.7)  # ArcFace fills CSIM
    assert odd.cells[csim].value is None and odd.cells[dlib].value == 0.99  # dlib never does
    assert mine.cells[dlib].value == 0.97
    assert (mine.cells[ssim].mark, theirs.cells[ssim].mark) == ("best", "second")
    assert odd.cells[ssim].value == 0.995 and odd.cells[ssim].mark == ""  # better, but not under the protocol
    reported = {r.label: r.cells[ssim].mark for r in rendered.rows if r.provenance == "reported"}
    assert reported["AniTalker"] == "best" and reported["VQTalker"] == "second"  # the paper's marks stay
    text = table_markdown(rendered)
    assert "CSIM (dlib)" in text and "differs in name, resolution, identity_backend" in text


def test_runs_under_one_protocol_with_other_weight_files_get_rows_of_their_own(tmp_path):
    from talkbench.leaderboard.store import ClipValue, Run, Store
    from talkbench.metrics.paper_protocols import expected_protocol, get_protocol

    store = Store(tmp_path / "lb.duckdb")
    under = expected_protocol(get_protocol("vqtalker-t1"))
    other_file = {**under, "weights_sha256": {**under["weights_sha256"], "arcface-r100": "0" * 64}}
    for protocol, csim in ((under, 0.8), (other_file, 0.6)):
        store.add_run(Run(method="mine", benchmark="hdtf-test", benchmark_version="1", task="reconstruction",
                          provenance="measured", protocol=protocol), [ClipValue("c1", "csim_arcface", csim)])
    rendered = build_table(store, "vqtalker", 1)
    csim = rendered.headers.index("CSIM") - 1
    rows = {r.label: r.cells[csim].value for r in rendered.rows if r.provenance == "measured"}
    assert len(rows) == 2 and sorted(rows.values()) == [0.6, 0.8]  # never merged into one row
    assert all(re.fullmatch(r"mine \(vqtalker-t1-v1, protocol [0-9a-f]{8}\)", label) for label in rows)


def test_latex_escapes_the_not_equal_sign_of_a_differing_row():
    from talkbench.leaderboard.tables import latex_escape

    assert latex_escape("lmd v1≠v2") == r"lmd v1$\neq$v2"


def test_a_measured_acc_emo_cell_says_its_classifier_is_not_the_papers(tmp_path):
    from talkbench.leaderboard.store import ClipValue, Run, Store
    from talkbench.metrics.paper_protocols import expected_protocol, get_protocol

    store = Store(tmp_path / "lb.duckdb")
    under = expected_protocol(get_protocol("flowvqtalker-t1"), ("ssim", "emotion"))
    store.add_run(Run(method="mine", benchmark="mead-emotion", benchmark_version="1", task="speech-driven",
                      provenance="measured", protocol=under),
                  [ClipValue("c1", "ssim", 0.7), ClipValue("c1", "acc_emo", 1.0), ClipValue("c2", "acc_emo", 0.0)])
    rendered = build_table(store, "flowvqtalker", 1)
    row = next(r for r in rendered.rows if r.provenance == "measured")
    assert row.label == "mine (flowvqtalker-t1-v1)"  # a subset of the protocol's metrics is under it
    assert 50.0 in [c.value for c in row.cells]  # acc_emo 0.5 → Acc_emo 50 %
    assert "CSIM (dlib)" not in rendered.headers  # the table has no CSIM column
    assert any("not the paper's classifier" in n for n in rendered.notes)


def test_measured_ground_truth_is_shown_never_marked_and_a_methods_datasets_share_a_row(tmp_path):
    from talkbench.leaderboard.store import ClipValue, Run, Store
    from talkbench.metrics.paper_protocols import expected_protocol, get_protocol

    store = Store(tmp_path / "lb.duckdb")
    protocol = get_protocol("flowvqtalker-t1")
    mead, hdtf = expected_protocol(protocol, ("ssim", "emotion")), expected_protocol(protocol, ("ssim",))
    for method, benchmark, record, values in (("ground-truth", "mead-emotion", mead, {"ssim": 1.0, "acc_emo": 1.0}),
                                               ("mine", "mead-emotion", mead, {"ssim": 0.7, "acc_emo": 0.5}),
                                               ("mine", "hdtf-test", hdtf, {"ssim": 0.8}),
                                               ("theirs", "mead-emotion", mead, {"ssim": 0.6, "acc_emo": 0.25})):
        store.add_run(Run(method=method, benchmark=benchmark, benchmark_version="1", task="speech-driven",
                          provenance="measured", protocol=record), [ClipValue("c1", k, v) for k, v in values.items()])
    rendered = build_table(store, "flowvqtalker", 1)
    rows = {r.label: r for r in rendered.rows if r.provenance == "measured"}
    assert set(rows) == {"ground-truth (flowvqtalker-t1-v1)", "mine (flowvqtalker-t1-v1)", "theirs (flowvqtalker-t1-v1)"}
    mine = rows["mine (flowvqtalker-t1-v1)"]
    assert [c.value for c in mine.cells if c.value is not None] == [0.7, 50.0, 0.8]  # MEAD and HDTF, one row
    assert rows["ground-truth (flowvqtalker-t1-v1)"].cells[0].mark == "" and mine.cells[0].mark == "best"
