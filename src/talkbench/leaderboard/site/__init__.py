"""The static leaderboard site: plain HTML files with inline CSS, inline JavaScript and inline
SVG charts, so it works offline from ``file://`` with no CDN and nothing fetched.

- ``index.html``: every board (sortable: click a column header), a per-language chart of
  each measured board's main metric, links to the method pages and to how to submit.
- ``methods/<slug>.html`` (``names.name_slug``): a method's metadata, its runs with the full protocol record, and
  per-clip values.
- ``submit.html``: how to submit.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from talkbench import __version__
from talkbench.leaderboard.directions import higher_is_better
from talkbench.leaderboard.names import name_slug
from talkbench.leaderboard.ranking import Board, label, leaderboard
from talkbench.leaderboard.store import Store
from talkbench.leaderboard.tables import SIDE_LABEL, board_cell, breakdown_matrix, breakdown_title, unmeasured_text
from talkbench.util import atomic_write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#1b1f24;background:#fff}
h1{margin-bottom:.2rem} .sub{color:#57606a;margin-top:0}
table{border-collapse:collapse;margin:1rem 0;font-size:.86rem}
th,td{border-bottom:1px solid #d0d7de;padding:.3rem .5rem;text-align:right;white-space:nowrap}
th{background:#f6f8fa;cursor:pointer;user-select:none;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"} th[aria-sort=descending]::after{content:" \\25BC"}
td.l,th.l{text-align:left} .best{font-weight:700} .second{text-decoration:underline}
.ci{color:#57606a;font-size:.78rem;font-weight:400}
.note{color:#9a6700} .prov-reported{color:#57606a} .scroll{overflow-x:auto}
nav a{margin-right:1rem} code,pre{background:#f6f8fa;padding:.1rem .3rem;border-radius:4px}
pre{padding:.8rem;overflow-x:auto} .chart text{font-size:11px;fill:#1b1f24}
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('thead th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('thead th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute('data-v'), y = b.cells[col].getAttribute('data-v');
        var nx = parseFloat(x), ny = parseFloat(y), r;
        if (x === '' && y === '') r = 0; else if (x === '') return 1; else if (y === '') return -1;
        else if (!isNaN(nx) && !isNaN(ny)) r = nx - ny; else r = x.localeCompare(y);
        return asc ? r : -r;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _page(title: str, body: str, root: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{CSS}</style></head>
<body>
<nav><a href="{root}index.html">Leaderboard</a><a href="{root}submit.html">How to submit</a></nav>
{body}
<p class="sub">talkbench {_e(__version__)} · static site, works offline</p>
<script>{SORT_JS}</script>
</body></html>
"""


def _board_table(board: Board, index: int) -> str:
    cols = board.columns()
    col_marks = [board.column_marks(c) for c in cols]
    head = ['<th class="l">#</th>', '<th class="l">Method</th>', '<th class="l">Provenance</th>']
    for side, metric in cols:
        arrow = "" if side == "gap" else (" ↑" if higher_is_better(metric) else " ↓")
        head.append(f"<th>{_e(label(metric))} {_e(SIDE_LABEL[side])}{arrow}</th>")
    rows = []
    for i, (rank, r) in enumerate(zip(board.ranks(), board.rows)):
        link = f'<a href="methods/{name_slug(r.method)}.html">{_e(r.method)}</a>'
        cells = [f'<td class="l" data-v="{"" if rank.position is None else rank.position}">{_e(rank)}</td>',
                 f'<td class="l" data-v="{_e(r.method)}">{link}</td>',
                 f'<td class="l prov-{r.provenance}" data-v="{r.provenance}">{r.provenance}</td>']
        for j, c in enumerate(cols):
            v = board.cell(r, c)
            shown = board_cell(board, i, c, col_marks[j][i])
            interval = f' <span class="ci">{_e(shown.interval)}</span>' if shown.interval else ""
            cells.append(f'<td class="{shown.mark}" data-v="{"" if v is None else repr(float(v))}">'
                         f'{_e(shown.text)}{interval}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = f'<p class="note">{_e(board.note)}</p>' if board.note else ""
    if board.unmeasured:
        note += f'<p class="note">not measured: {_e(unmeasured_text(board))}</p>'
    breakdowns = "".join(_breakdown_table(b) for b in board.breakdowns)
    return (f'<h2 id="board-{index}">{_e(board.title)}</h2>'
            f'<p class="sub">protocol <code>{board.protocol_sha256[:12]}</code> · benchmarks: '
            f'{_e(", ".join(board.benchmarks))} · task: {_e(board.task)} · {_e(board.legend())}</p>{note}'
            f'<div class="scroll"><table class="sortable" id="table-{index}"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{breakdowns}')


def _breakdown_table(breakdown) -> str:
    headers, rows = breakdown_matrix(breakdown)
    head = "".join(f'<th class="l">{_e(h)}</th>' if i == 0 else f"<th>{_e(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="l">{_e(c)}</td>' if i == 0 else f"<td>{_e(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)  # fmt: skip
    return (f'<h3>{_e(breakdown_title(breakdown))} <span class="sub">(mean, clips)</span></h3>'
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')


PALETTE = ("#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#57606a")


def language_chart(store: Store, board: Board, metric: str | None = None) -> str:
    """Inline SVG: the board's main metric per language, one bar per method."""
    ids = [rid for r in board.rows for rid in r.run_ids]
    rows = store.language_means(ids)
    if not rows:
        return ""
    metric = metric or ("ssim" if any(r["metric"] == "ssim" for r in rows) else rows[0]["metric"])
    rows = [r for r in rows if r["metric"] == metric and r["value"] is not None]
    languages = sorted({r["language"] for r in rows if r["language"]})
    methods = [r.method for r in board.rows]
    method_of = {rid: r.method for r in board.rows for rid in r.run_ids}
    values = {(method_of[r["run_id"]], r["language"]): r["value"] for r in rows}
    if not values:
        return ""
    top = max(values.values()) or 1.0
    bar, gap, height, left = 10, 14, 160, 40
    width = max(left + len(languages) * (len(methods) * bar + gap) + 10, left + len(methods) * 120 + 10)
    parts = [f'<svg class="chart" role="img" aria-label="{_e(label(metric))} per language" '
             f'width="{width}" height="{height + 60}" viewBox="0 0 {width} {height + 60}">']
    parts.append(f'<text x="0" y="12">{_e(label(metric))}</text>')
    for li, lang in enumerate(languages):
        x0 = left + li * (len(methods) * bar + gap)
        for mi, m in enumerate(methods):
            v = values.get((m, lang))
            if v is None:
                continue
            h = max(1.0, height * max(v, 0) / top)
            parts.append(f'<rect x="{x0 + mi * bar}" y="{20 + height - h:.1f}" width="{bar - 1}" height="{h:.1f}" '
                         f'fill="{PALETTE[mi % len(PALETTE)]}"><title>{_e(m)} · {_e(lang)}: {v:.3f}</title></rect>')
        parts.append(f'<text x="{x0}" y="{height + 36}">{_e(lang)}</text>')
    for mi, m in enumerate(methods):
        parts.append(f'<rect x="{left + mi * 120}" y="{height + 44}" width="10" height="10" fill="{PALETTE[mi % len(PALETTE)]}"/>'
                     f'<text x="{left + mi * 120 + 14}" y="{height + 53}">{_e(m)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _method_page(store: Store, name: str, info: dict, runs: list[dict]) -> str:
    meta_rows = "".join(f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>'
                        for k, v in info.items() if v not in (None, "", []))
    body = [f"<h1>{_e(name)}</h1>", f"<table>{meta_rows}</table>"]
    for r in runs:
        body.append(f"<h2>Run <code>{_e(r['run_id'])}</code></h2>")
        body.append(f"<p>{_e(r['provenance'])} · {_e(r['benchmark'])}@{_e(r['benchmark_version'])} · "
                    f"{_e(r['task'])} · {_e(r['created_at'])} · talkbench {_e(r['talkbench_version'])}</p>")
        if r["source_paper"]:
            body.append(f"<p>Source: {_e(r['source_paper'])} Table {_e(r['source_table'])}</p>")
        body.append(f"<h3>Protocol record <code>{_e(r['protocol_hash'][:12])}</code></h3>")
        body.append(f"<pre>{_e(json.dumps(r['protocol'], indent=2, sort_keys=True, default=str))}</pre>")
        if r["provenance"] == "measured":
            values = store.clip_values(r["run_id"])
            metrics = sorted({v["metric"] for v in values})
            clips = sorted({v["clip_id"] for v in values})
            got = {(v["clip_id"], v["metric"]): v for v in values}
            head = "".join(f"<th>{_e(m)}</th>" for m in metrics)
            rows = []
            for c in clips:
                lang = next((got[(c, m)]["language"] for m in metrics if (c, m) in got), "")
                cells = ""
                for m in metrics:
                    v = got.get((c, m), {}).get("value")
                    cells += f'<td data-v="{"" if v is None else v}">{"–" if v is None else format(v, ".4f")}</td>'
                rows.append(f'<tr><td class="l" data-v="{_e(c)}">{_e(c)}</td><td class="l" data-v="{_e(lang)}">{_e(lang)}</td>{cells}</tr>')
            body.append('<h3>Per-clip values</h3><div class="scroll"><table class="sortable"><thead><tr>'
                        f'<th class="l">clip</th><th class="l">language</th>{head}</tr></thead>'
                        f'<tbody>{"".join(rows)}</tbody></table></div>')
    return _page(f"{name} · talkbench", "\n".join(body), root="../")


SUBMIT_BODY = """<h1>How to submit</h1>
<p>A submission is a folder or a zip archive:</p>
<pre>my-method/
  submission.yaml
  videos/
    &lt;clip_id&gt;.mp4    one per clip of the benchmark</pre>
<p><code>submission.yaml</code> (plain YAML, checked against a schema):</p>
<pre>method: MyTalker
authors: [A. Author, B. Author]
paper: https://arxiv.org/abs/...
code: https://github.com/...
licence: CC-BY-4.0
resolution: 512
contact: author@example.org
task: speech-driven        # or reconstruction</pre>
<p>Every video: H.264 MP4, square, at least 256×256, at the benchmark's fps (25), with the
reference clip's frame count (±2 frames), at most 64 MB. Speech-driven: the inputs are the first
frame of the reference (the portrait) and the clip's audio. Reconstruction: the first frame and
the reference as the driving video.</p>
<p>Run <code>talkbench submit my-method --benchmark sample</code> (or <code>mnte</code>,
<code>hdtf-test</code> with <code>--data DIR</code> from <code>talkbench data build</code>).
The validator lists every problem at once, by clip (missing, extra or duplicate clips,
undecodable files, wrong fps, frame count, resolution, oversized files, symlinks, paths outside
the archive); nothing is stored unless everything passes. Then the videos are scored by the
metrics engine under one protocol, and the run is stored with its protocol record.</p>
<p>Then <code>talkbench leaderboard --format html --out site/</code> rebuilds this site.</p>
"""


def build_site(store: Store, out_dir: str | Path, benchmark: str | None = None) -> Path:
    """Write the site into ``out_dir``; returns the path of ``index.html``."""
    out = Path(out_dir)
    (out / "methods").mkdir(parents=True, exist_ok=True)
    boards = leaderboard(store, benchmark)
    parts = ["<h1>talkbench leaderboard</h1>",
             '<p class="sub">Multilingual talking-head generation. IE = Indo-European clips, non-IE = the '
             "others; gap% = how much worse a method gets outside Indo-European languages (positive = "
             "worse). Bold = best, underlined = second. Every measured value carries its bootstrap 95% "
             "interval over clips [low, high]; methods ranked next to each other whose intervals overlap "
             "share a rank (1=), and a gap marked ≈ is not significant (its interval contains 0). "
             "Runs under different protocols are never ranked together. Click a column header to sort.</p>"]
    if not boards:
        parts.append("<p>No runs yet.</p>")
    for i, b in enumerate(boards):
        parts.append(_board_table(b, i))
        if b.provenance == "measured":
            chart = language_chart(store, b)
            if chart:
                parts.append(f"<h3>Per language</h3>{chart}")
    atomic_write_text(out / "index.html", _page("talkbench leaderboard", "\n".join(parts)))
    atomic_write_text(out / "submit.html", _page("How to submit · talkbench", SUBMIT_BODY))
    infos = store.methods()
    runs = store.runs()
    shown = {r.method for b in boards for r in b.rows}
    for name in sorted(shown):
        mine = [r for r in runs if r["method"] == name]
        atomic_write_text(out / "methods" / f"{name_slug(name)}.html",
                          _method_page(store, name, infos.get(name, {"name": name}), mine))
    return out / "index.html"
