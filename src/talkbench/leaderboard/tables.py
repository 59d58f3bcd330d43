"""Rendering: the papers' tables in their own layout, and leaderboard boards, as Markdown,
LaTeX (best **bold**, second underlined, ties sharing a mark, as in the papers), CSV and rich.

Every cell of a paper table carries its provenance: ``reported`` (the published number, as
printed) or ``measured`` (talkbench computed it, on the table's benchmark and task). Markdown
marks them with a superscript r / m, LaTeX with ``\\textsuperscript{r}`` / ``{m}``.

Leaderboard boards show each measured value with its bootstrap interval, ``0.812 [0.790,
0.830]`` (CSV and JSON: ``ci_low`` / ``ci_high``), tied ranks as ``1=`` and a gap that is not
significant as ``≈+1.2``; every board ends with a legend saying so.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from rich.markup import escape
from rich.table import Table

from talkbench.leaderboard.breakdown import Breakdown
from talkbench.leaderboard.directions import column_direction
from talkbench.leaderboard.names import REFERENCE_METHODS
from talkbench.leaderboard.paper import PaperTable, table, tables_of
from talkbench.leaderboard.ranking import IE, NON_IE, Board, Interval, label, marks
from talkbench.leaderboard.store import Store
from talkbench.metrics.paper_protocols import protocol_differences, protocol_for_table
from talkbench.util import markdown_table

PROVENANCE_MARK = {"reported": "r", "measured": "m"}
DLIB_CSIM = "csim_dlib"  # a column of its own in measured rows, never under a paper's CSIM header


@dataclass
class Cell:
    text: str
    value: float | None
    provenance: str  # reported | measured | '' (a label)
    mark: str = ""  # best | second | ''


@dataclass
class TableRow:
    label: str
    provenance: str
    cells: list[Cell]
    reference: bool = False  # the ground truth: shown, never ranked


@dataclass
class RenderedTable:
    spec: PaperTable
    header_groups: list[tuple[str, int]]  # (group header, span) over the value columns; [] if none
    headers: list[str]  # first column + value columns
    rows: list[TableRow]
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.spec.paper} Table {self.spec.number}: {self.spec.title}"


def _fmt(v: float) -> str:
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"


def _columns(t: PaperTable) -> list[tuple[str | None, str]]:
    """(group dataset or None, column key) per value column, in the paper's order."""
    if t.groups:
        return [(g[0], c.key) for g in t.groups for c in t.columns]
    return [(None, c.key) for c in t.columns]


def build_table(store: Store, paper: str, number: str | int, measured: bool = True) -> RenderedTable:
    """A paper table from the store: its reported rows as printed, then measured rows for the
    same benchmark(s) and task (when any), every cell marked with its provenance."""
    t = table(paper, number)
    runs = store.runs(provenance="reported", source_paper=t.paper, source_table=t.number)
    aggs = store.aggregates([r["run_id"] for r in runs])
    cols = _columns(t)
    # rows keyed by (label, order) so Table 3/4's repeated labels stay separate rows
    ordered: dict[tuple, dict] = {}
    for r in runs:
        dataset = r["attributes"].get(t.dataset_column) if t.dataset_column else None
        key = (r["row_label"],) if t.groups else (r["row_label"], r["row_order"])
        entry = ordered.setdefault(key, {"label": r["row_label"], "cells": {}})
        for (_, metric), cell in aggs.get(r["run_id"], {}).items():
            entry["cells"][(dataset, metric)] = Cell(cell["text"] or "", cell["value"], "reported")
    rows = [
        TableRow(e["label"], "reported", [e["cells"].get(c, Cell("", None, "reported")) for c in cols])
        for e in ordered.values()
    ]
    notes = [t.note] if t.note else []
    if measured:
        rows += _measured_rows(store, t, cols, notes)  # may add columns (CSIM (dlib))
        for row in rows:
            row.cells += [Cell("", None, "") for _ in cols[len(row.cells):]]
    _mark(t, cols, rows)
    headers = ["Method"] + [_header(t, k) for _, k in cols]
    groups = [(g[1], len(t.columns)) for g in t.groups] if t.groups else []
    if t.groups and len(cols) > len(t.groups) * len(t.columns):
        groups += [(g[1], 1) for g in t.groups]
    return RenderedTable(t, groups, headers, rows, notes)


def _header(t: PaperTable, key: str) -> str:
    if key == DLIB_CSIM:
        return "CSIM (dlib)"
    return next(c.header for c in t.columns if c.key == key)


def _measured_rows(store: Store, t: PaperTable, cols, notes: list[str]) -> list[TableRow]:
    """One row per method and protocol. Under the table's paper protocol
    (``talkbench.metrics.paper_protocols``) a row's cells mean the paper's columns; a run under
    any other protocol keeps its row, labelled with the protocol fields that differ, and never
    ranks against the others. dlib CSIM never fills a CSIM column: it gets its own."""
    bench_of = {g[0]: g[2] for g in t.groups} if t.groups else {None: t.benchmark}
    runs = [r for r in store.runs(provenance="measured")
            if r["task"] == t.task and r["benchmark"] in bench_of.values()]
    if not runs:
        return []
    named = protocol_for_table(t.key)
    ids = [r["run_id"] for r in runs]
    means, aggs = store.group_means(ids), store.aggregates(ids)
    labelled = []
    for r in sorted(runs, key=lambda r: r["created_at"]):
        differs = protocol_differences(r["protocol"], named) if named else []
        name = r["protocol"].get("name", "?")
        if named is None:
            label = f"{r['method']} (talkbench, protocol {r['protocol_hash'][:8]})"
        elif differs:
            label = f"{r['method']} ({name}, not {named.name}: differs in {', '.join(differs)})"
        else:
            label = f"{r['method']} ({named.name})"
        labelled.append((label, differs, r))
    # Runs of one dataset group that share a label but not a protocol hash (other weight files,
    # another seed) never merge into one row: each gets its hash in the label. Runs on different
    # groups (MEAD, HDTF) fill different columns and share the row whatever their hashes.
    dataset_of = {r["run_id"]: next(d for d, b in bench_of.items() if b == r["benchmark"]) for r in runs}
    hashes: dict[tuple[str, str], set[str]] = {}
    for label, _, r in labelled:
        hashes.setdefault((label, dataset_of[r["run_id"]]), set()).add(r["protocol_hash"])
    split = {label for (label, _), found in hashes.items() if len(found) > 1}
    by_label: dict[str, dict] = {}
    for label, differs, r in labelled:
        if label in split:
            label = f"{label[:-1]}, protocol {r['protocol_hash'][:8]})"
        dataset = dataset_of[r["run_id"]]
        entry = by_label.setdefault(label, {"cells": {}, "under": named is not None and not differs,
                                            "reference": r["method"] in REFERENCE_METHODS})

        def value_of(value_name: str) -> float | None:
            value = means.get(r["run_id"], {}).get(("all", value_name))
            if value is None:
                cell = aggs.get(r["run_id"], {}).get(("all", value_name))
                value = cell["value"] if cell else None
            return value

        for key in (c.key for c in t.columns):
            column = named.columns.get(key) if named else None
            value = value_of(column.value) if column else (value_of(key) if named is None else None)
            if value is not None and column is not None:
                value *= column.scale
            if value is None and key == "bitrate_kbps":
                value = r["attributes"].get("mean_measured_kbps")
            if value is None and key == "resolution":
                value = r["protocol"].get("resolution")
            if value is not None:
                text = str(int(value)) if key == "resolution" else _fmt(float(value))
                entry["cells"][(dataset, key)] = Cell(text, float(value), "measured")
        dlib = value_of("csim_dlib") if any(c.key == "csim" for c in t.columns) else None
        if dlib is not None:
            entry["cells"][(dataset, DLIB_CSIM)] = Cell(_fmt(dlib), dlib, "measured")
    notes.append("measured rows: talkbench runs on " + ", ".join(sorted(set(bench_of.values()))) + f" ({t.task})" +
                 (f"; cells fill the paper's columns only under protocol {named.name} (docs/paper-protocols.md), "
                  "other rows name the protocol fields that differ and are not ranked" if named else ""))
    filled = {k[1] for e in by_label.values() for k in e["cells"]}
    if named:
        notes += [column.note for key, column in named.columns.items() if column.note and key in filled]
    if DLIB_CSIM in filled:
        cols.extend((d, DLIB_CSIM) for d in bench_of)
        notes.append("CSIM (dlib): talkbench's offline identity similarity (dlib ResNet), on its own scale "
                     "(0.94–0.996 on real outputs); never the papers' ArcFace CSIM")
    return [TableRow(label, "measured" if e["under"] else "measured-other",
                     [e["cells"].get(c, Cell("", None, "measured")) for c in cols], e["reference"])
            for label, e in by_label.items()]


def _mark(t: PaperTable, cols, rows: list[TableRow]) -> None:
    """Best and second best, among the reported rows as in the paper, and separately among the
    measured rows: a paper's numbers and ours come from different protocols and never rank
    against each other."""
    metric = {c.key: c for c in t.metrics}
    for provenance in ("reported", "measured"):
        skip = [r.label in t.reference_rows or r.reference or r.provenance != provenance for r in rows]
        for j, (_, key) in enumerate(cols):
            if key not in metric:
                continue
            got = marks([r.cells[j].value for r in rows], column_direction(t, metric[key]), skip)
            for r, m, skipped in zip(rows, got, skip):
                if not skipped:
                    r.cells[j].mark = m


# -- paper tables: text formats ------------------------------------------------------------

def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def table_markdown(rt: RenderedTable) -> str:
    lines = [f"### {rt.title}", ""]
    headers = list(rt.headers)
    if rt.header_groups:
        expanded = [g for g, span in rt.header_groups for _ in range(span)]
        headers = [headers[0]] + [f"{g}: {h}" for g, h in zip(expanded, headers[1:])]
    lines.append(markdown_table(headers, [[r.label] + [_cell(c, "md") for c in r.cells] for r in rt.rows]))
    lines += ["", "<sup>r</sup> reported (as published) · <sup>m</sup> measured by talkbench · "
              "**bold** best, <u>underlined</u> second"] + [f"{n}" for n in rt.notes]
    return "\n".join(lines) + "\n"


LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                 "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                 "≈": r"$\approx$", "<": r"$<$", ">": r"$>$", "✓": r"\checkmark{}", "↑": r"$\uparrow$",
                 "↓": r"$\downarrow$", "·": r"$\cdot$", "–": "--", "−": "$-$",
                 "≠": r"$\neq$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


# Markdown cells are escaped once, by util.markdown_table, after the marks (which hold no "|").
STYLES = {
    "md": {"empty": "–", "escape": str, "best": "**{}**", "second": "<u>{}</u>", "sup": "{}<sup>{}</sup>"},
    "latex": {"empty": "-", "escape": latex_escape, "best": r"\textbf{{{}}}", "second": r"\underline{{{}}}",
              "sup": r"{}\textsuperscript{{{}}}"},
}


def styled(text: str, mark: str, style: str) -> str:
    """``text`` escaped for ``style`` (md | latex), bold when best, underlined when second."""
    st = STYLES[style]
    text = st["escape"](text)
    return st[mark].format(text) if mark else text


def _cell(c: Cell, style: str) -> str:
    if not c.text:
        return STYLES[style]["empty"]
    text = styled(c.text, c.mark, style)
    return STYLES[style]["sup"].format(text, PROVENANCE_MARK[c.provenance]) if c.provenance else text


def table_latex(rt: RenderedTable) -> str:
    n = len(rt.headers)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(rt.title)}}}",
             rf"\begin{{tabular}}{{l{'c' * (n - 1)}}}", r"\toprule"]
    if rt.header_groups:
        groups = " & ".join(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(g)}}}" for g, span in rt.header_groups)
        lines.append(f" & {groups} \\\\")
    lines.append(" & ".join(latex_escape(h) for h in rt.headers) + r" \\")
    lines.append(r"\midrule")
    for r in rt.rows:
        lines.append(" & ".join([latex_escape(r.label)] + [_cell(c, "latex") for c in r.cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\\[2pt]{\footnotesize \textsuperscript{r} reported, \textsuperscript{m} measured by talkbench; "
              r"\textbf{bold} best, \underline{underlined} second.}",
              r"\end{table}"]
    return "\n".join(lines) + "\n"


def paper_tables(store: Store, paper: str, numbers: list[str] | None = None) -> list[RenderedTable]:
    wanted = numbers or (["1", "2", "3", "4"] if paper.lower() == "vqtalker" else ["1"])
    return [build_table(store, paper, t.number) for t in tables_of(paper) if t.number in wanted]


def render_paper(store: Store, paper: str, fmt: str = "md") -> str:
    render = {"md": table_markdown, "latex": table_latex}[fmt]
    return "\n".join(render(rt) for rt in paper_tables(store, paper))


# -- leaderboard boards ---------------------------------------------------------------------

SIDE_LABEL = {IE: "IE", NON_IE: "non-IE", "gap": "gap%"}


NOT_SIGNIFICANT = "≈"  # before a gap whose interval contains 0


def _board_header(board: Board) -> list[str]:
    return ["#", "Method", "Prov."] + [f"{label(m)} {SIDE_LABEL[s]}" for s, m in board.columns()]


def board_text(v: float | None, side: str) -> str:
    if v is None:
        return "–"
    return f"{v + 0.0:+.1f}".replace("-0.0", "+0.0") if side == "gap" else _fmt(v)


def interval_text(interval: Interval | None, side: str) -> str:
    """``[low, high]`` in the cell's own format; '' without an interval."""
    if interval is None:
        return ""
    return f"[{board_text(interval[0], side)}, {board_text(interval[1], side)}]"


@dataclass
class BoardCell:
    text: str  # the value as shown: "0.812", "+12.5", "≈+1.2" (a gap that is not significant), "–"
    mark: str = ""  # best | second | ''
    interval: str = ""  # "[0.790, 0.830]"; '' when the cell has none


def board_cell(board: Board, row_index: int, column: tuple[str, str], mark: str = "") -> BoardCell:
    row, (side, metric) = board.rows[row_index], column
    text = board_text(board.cell(row, column), side)
    if side == "gap" and row.gap_significant(metric) is False and row.gap(metric) is not None:
        text = NOT_SIGNIFICANT + text
    return BoardCell(text, mark, interval_text(board.cell_interval(row, column), side))


def _board_matrix(board: Board) -> list[list[BoardCell]]:
    """Per row: rank, method, provenance, then one cell per column."""
    cols = board.columns()
    col_marks = [board.column_marks(c) for c in cols]
    matrix = []
    for i, (rank, r) in enumerate(zip(board.ranks(), board.rows)):
        matrix.append([BoardCell(str(rank)), BoardCell(r.method), BoardCell(r.provenance)]
                      + [board_cell(board, i, c, col_marks[j][i]) for j, c in enumerate(cols)])
    return matrix


def unmeasured_text(board: Board) -> str:
    return "; ".join(f"{metric} ({why})" for metric, why in board.unmeasured.items())


def breakdown_title(b: Breakdown) -> str:
    return f"{label(b.metric)} per {b.label}"


def breakdown_matrix(b: Breakdown) -> tuple[list[str], list[list[str]]]:
    """Headers and text rows of a breakdown: method, then the mean per label value with its
    clip count ("0.600 (5)"), '–' where the method has no clip of that value."""
    headers = ["Method"] + b.groups
    rows = [[r.method] + [f"{_fmt(r.values[g])} ({r.clips[g]})" if g in r.values else "–" for g in b.groups]
            for r in b.rows]  # fmt: skip
    return headers, rows


def _md_board_cell(cell: BoardCell) -> str:
    text = styled(cell.text, cell.mark, "md")
    return f"{text} {cell.interval}" if cell.interval else text


def _latex_board_cell(cell: BoardCell) -> str:
    text = styled(cell.text, cell.mark, "latex")
    return rf"{text} {{\scriptsize {latex_escape(cell.interval)}}}" if cell.interval else text


def boards_markdown(boards: list[Board]) -> str:
    out = []
    for b in boards:
        out += [f"### {b.title}", "", f"protocol `{b.protocol_sha256[:12]}` · benchmarks: {', '.join(b.benchmarks)}"]
        if b.note:
            out.append(f"*{b.note}*")
        out += ["", markdown_table(_board_header(b), [[_md_board_cell(c) for c in row] for row in _board_matrix(b)])]
        out += ["", "IE = Indo-European clips, non-IE = the others; gap% = how much worse outside "
                "Indo-European (positive = worse); **bold** best, <u>underlined</u> second; "
                f"{_md_escape(b.legend())}.", ""]
        out += [f"Not measured: {_md_escape(unmeasured_text(b))}", ""] if b.unmeasured else []
        for breakdown in b.breakdowns:
            headers, rows = breakdown_matrix(breakdown)
            out += [f"#### {breakdown_title(breakdown)} (mean, clips)", "", markdown_table(headers, rows), ""]
    return "\n".join(out) + "\n"


def boards_latex(boards: list[Board]) -> str:
    out = []
    for b in boards:
        header = _board_header(b)
        out += [r"\begin{table}[t]", r"\centering",
                rf"\caption{{{latex_escape(b.title)} (protocol {b.protocol_sha256[:12]})}}",
                rf"\begin{{tabular}}{{rll{'c' * (len(header) - 3)}}}", r"\toprule",
                " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
        for row in _board_matrix(b):
            out.append(" & ".join(_latex_board_cell(c) for c in row) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}",
                rf"\\[2pt]{{\footnotesize {latex_escape(b.legend())}.}}"]
        if b.unmeasured:
            out.append(rf"\\{{\footnotesize Not measured: {latex_escape(unmeasured_text(b))}.}}")
        for breakdown in b.breakdowns:
            headers, rows = breakdown_matrix(breakdown)
            out += [r"\par\medskip", rf"{latex_escape(breakdown_title(breakdown))} (mean, clips)\\",
                    rf"\begin{{tabular}}{{l{'c' * (len(headers) - 1)}}}", r"\toprule",
                    " & ".join(map(latex_escape, headers)) + r" \\", r"\midrule"]
            out += [" & ".join(map(latex_escape, row)) + r" \\" for row in rows] + [r"\bottomrule", r"\end{tabular}"]
        out += [r"\end{table}", ""]
    return "\n".join(out)


def boards_csv(boards: list[Board]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["board", "protocol_sha256", "rank", "method", "provenance", "side", "metric", "value", "mark",
                "ci_low", "ci_high", "tied", "significant"])

    def number(v: float | None) -> str:
        return "" if v is None else repr(float(v))

    def flag(v: bool | None) -> str:
        return "" if v is None else str(v).lower()

    for b in boards:
        cols = b.columns()
        col_marks = [b.column_marks(c) for c in cols]
        for i, (rank, r) in enumerate(zip(b.ranks(), b.rows)):
            for j, (side, metric) in enumerate(cols):
                interval = b.cell_interval(r, (side, metric)) or (None, None)
                significant = r.gap_significant(metric) if side == "gap" else None
                w.writerow([b.key, b.protocol_sha256, "" if rank.position is None else rank.position, r.method,
                            r.provenance, side, metric, number(b.cell(r, (side, metric))), col_marks[j][i],
                            number(interval[0]), number(interval[1]), flag(rank.tied), flag(significant)])
        for breakdown in b.breakdowns:  # side "emotion=angry": the mean over that label's clips
            for r in breakdown.rows:
                for group, value in r.values.items():
                    w.writerow([b.key, b.protocol_sha256, "", r.method, "measured", f"{breakdown.label}={group}",
                                breakdown.metric, number(value), "", "", "", "", ""])
    return buf.getvalue()


SIDE_TITLE = {IE: "Indo-European clips", NON_IE: "non-Indo-European clips",
              "gap": "cross-lingual gap, % worse outside Indo-European"}


def boards_rich(boards: list[Board], unmeasured: bool = True):
    """rich Tables for a terminal: per board one table per side (IE, non-IE, gap), so a board
    with every metric still fits 80 columns; bold best, underlined second, as in the papers.
    A cell's interval goes on a second line, dimmed, to keep the columns narrow. ``unmeasured``
    False leaves out why metrics were not measured (a caller that says it its own way)."""
    def shown(cell: BoardCell) -> str:
        text = escape(cell.text)
        if cell.mark == "best":
            text = f"[bold]{text}[/]"
        elif cell.mark == "second":
            text = f"[underline]{text}[/]"
        return f"{text}\n[dim]{escape(cell.interval)}[/]" if cell.interval else text

    tables = []
    for b in boards:
        matrix = _board_matrix(b)
        cols = b.columns()
        sides = list(dict.fromkeys(side for side, _ in cols))
        if not sides:  # nothing measured: the methods, and why
            t = Table("Method", title=b.title, title_justify="left", caption_justify="left",
                      caption=escape(f"not measured: {unmeasured_text(b)}" if b.unmeasured else "no metric measured"))
            for row in matrix:
                t.add_row(escape(row[1].text))
            tables.append(t)
        for side in sides:
            picked = [j for j, (s, _) in enumerate(cols) if s == side]
            caption = escape(f"protocol {b.protocol_sha256[:12]}" + (f" · {b.note}" if b.note else "")
                             + (f"\n{b.legend()}" if side == sides[-1] else "")  # once per board
                             + (f"\nnot measured: {unmeasured_text(b)}"
                                if unmeasured and b.unmeasured and side == sides[-1] else ""))
            t = Table(title=f"{b.title} — {SIDE_TITLE[side]}", title_justify="left", caption=caption,
                      caption_justify="left")
            t.add_column("#", justify="right")
            t.add_column("Method")
            for j in picked:
                t.add_column(label(cols[j][1]), justify="right")
            for row in matrix:
                t.add_row(row[0].text, escape(row[1].text), *[shown(row[3 + j]) for j in picked])
            tables.append(t)
        for breakdown in b.breakdowns:
            headers, rows = breakdown_matrix(breakdown)
            t = Table(*headers, title=f"{b.title} — {breakdown_title(breakdown)} (mean, clips)", title_justify="left")
            for row in rows:
                t.add_row(*map(escape, row))
            tables.append(t)
    return tables
