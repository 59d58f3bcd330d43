"""The report's formats, all from one typed report: Markdown and a self-contained HTML page
(the same titled blocks), the CSV tables, ``report.json``; and the comparison of several
audits in the layout of the paper's Table 6."""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path
from typing import Iterable, Sequence

from talkbench.datasets import families as fam
from talkbench.datasets.audit.figures import figure_families, figure_languages
from talkbench.datasets.audit.model import AuditReport, AuditResult, CompareResult, CompareRow
from talkbench.datasets.audit.text import (fmt_ci, fmt_hours, fmt_pct, fmt_points, fmt_top3, model_line)
from talkbench.util import markdown_table

LIST_LIMIT = 200  # rows of a listing (no speech, low confidence, misses) in the Markdown/HTML report

Block = tuple  # ("p", text) | ("table", header, rows) | ("img", relative path, alt)
Section = tuple[str, list[Block]]

COMPARE_TITLE = "Indo-European share (VQTalker Table 6 layout)"
COMPARE_HEAD = ["Dataset", "Indo-European (clips)", "95% CI", "Indo-European (hours)", "95% CI", "paper (Table 6)",
                "clips", "hours", "no speech", "low conf.", "language ID"]


# ---------------------------------------------------------------- the report as titled blocks


def _headline_rows(r: AuditReport) -> list[list[str]]:
    ie = r.indo_european
    conf = ie.confident_only
    rows = [["ours (Whisper " + r.settings.model + ")", fmt_pct(ie.clips), fmt_ci(ie.clips_ci95),
             fmt_pct(ie.hours), fmt_ci(ie.hours_ci95), str(ie.n)],
            [f"ours, confident clips only (p ≥ {r.settings.threshold:g})", fmt_pct(conf.clips), "",
             fmt_pct(conf.hours), "", str(conf.n)]]
    if r.labels:
        lab = r.labels.indo_european
        rows.append(["labels (same clips)", fmt_pct(lab.clips), "", fmt_pct(lab.hours), "", str(lab.n)])
    if r.paper:
        p = r.paper
        rows.append([f"paper: VQTalker {p.where} ({p.kind})", f"{p.indo_european_pct:g}%", "", "", "", ""])
    return rows


def sections(r: AuditReport) -> list[Section]:
    """The report as titled blocks, rendered to Markdown and HTML alike."""
    t, s = r.totals, r.settings
    src = r.source
    ls = r.language_sources
    out: list[Section] = []
    intro: list[Block] = [
        ("p", f"Source: {src.kind} `{src.path}` — {t.items} items, {t.clips} with detected speech "
              f"({fmt_hours(t.hours)} h), {t.no_speech} without speech, {t.errors} unreadable."),
        ("p", f"Language ID: {model_line(s)}; languages from the catalog {ls.catalog}, "
              f"from the cache {ls.cache}, newly identified {ls.lid} ({ls.lid_seconds:.1f} s). "
              f"Low confidence: top probability < {s.threshold:g}. Interval: {s.interval}, "
              f"{s.bootstrap_resamples} resamples, seed {s.seed}."),
        ("p", f"Families: {s.families_source}"),
    ]
    if src.tags_from:
        intro.append(("p", "The catalog's language tags came from " + ", ".join(
            f"{k} ({v} clips)" for k, v in src.tags_from.items()) + "."))
    if src.rejected_at_language_stage:
        ex = ", ".join(f"{k} {v}" for k, v in src.rejected_at_language_stage.items())
        intro.append(("p", f"Not audited: clips the build rejected at its language stage ({ex}); "
                           f"the audit covers the accepted clips."))
    out.append(("", intro))
    head = ["", "Indo-European by clips", "95% CI", "by hours", "95% CI", "clips"]
    blocks: list[Block] = [("table", head, _headline_rows(r))]
    if r.paper:
        diff = (r.indo_european.clips or 0) * 100 - r.paper.indo_european_pct
        blocks.append(("p", f"The paper reports {r.paper.indo_european_pct:g}% for {r.paper.dataset}; "
                            f"ours differs by {diff:+.2f} points (by clips)."))
    if r.by_dataset:
        blocks += [("p", "By dataset (VQTalker Table 6 layout):"), ("table", COMPARE_HEAD, compare_table(r.by_dataset))]
    out.append(("Indo-European share", blocks))
    lang_rows = [[x.code, x.name, x.family, x.branch, "yes" if x.indo_european else "",
                  str(x.clips), fmt_pct(x.share_clips), fmt_hours(x.hours), fmt_pct(x.share_hours),
                  str(x.low_confidence)] for x in r.languages]
    out.append(("Languages", [
        ("img", "figures/languages.png", "Language distribution (Indo-European marked)"),
        ("table", ["code", "language", "family", "branch", "Indo-European", "clips", "share", "hours", "share (h)",
                   "low conf."], lang_rows)]
        + ([("p", "Codes not in the families table (family 'unknown'): " + ", ".join(r.unknown_languages))]
           if r.unknown_languages else [])))
    fam_rows = [[x.family, "yes" if x.indo_european else "", str(x.languages), str(x.clips),
                 fmt_pct(x.share_clips), fmt_hours(x.hours), fmt_pct(x.share_hours)] for x in r.families]
    out.append(("Families", [("img", "figures/families.png", "Family shares by clips and hours"),
                             ("table", ["family", "Indo-European", "languages", "clips", "share", "hours",
                                        "share (h)"], fam_rows)]))
    if r.emotions or r.intensities:
        blocks = [("p", "Over the audited clips that carry the label, with or without speech.")]
        if r.emotions:
            blocks.append(_label_share_table("emotion", [(x.emotion, x) for x in r.emotions]))
        if r.intensities:
            blocks.append(_label_share_table("intensity", [(x.intensity, x) for x in r.intensities]))
        out.append(("Emotions and intensities", blocks))
    ns = r.no_speech
    q: list[Block] = [("p", f"No speech: {ns.count} of {t.items - t.errors} readable items "
                            f"({fmt_pct(ns.share)}); they are outside the shares above.")]
    if ns.clips:
        q += _listing(["no speech", "speech (s)"],
                      [[x.id, "–" if x.speech_seconds is None else f"{x.speech_seconds:.2f}"] for x in ns.clips])
    out.append(("No speech", q))
    out.append((f"Low confidence (p < {r.low_confidence.threshold:g})", _low_confidence_blocks(r)))
    lab = r.labels
    if lab:
        m = lab.misses
        blocks = [("p", f"{lab.labelled} items carry a known language. Language ID disagrees with "
                        f"{len(m)} of them ({fmt_pct(lab.miss_rate)}); of these, {lab.ie_gained_by_misses} move a clip "
                        f"into Indo-European and {lab.ie_lost_by_misses} move one out of it, which accounts for "
                        f"{fmt_points(lab.explained_difference_clips)} "
                        f"percentage points of the difference between our share and the labels' share (by clips, same clips).")]
        if m:
            blocks += _listing(["item", "label", "detected", "p", "top 3", "same family", "crosses IE"],
                               [[x.id, f"{x.label} ({x.label_name})",
                                 f"{x.detected} ({x.detected_name})" if x.detected else x.detected_name,
                                 "–" if x.probability is None else f"{x.probability:.3f}", fmt_top3(x.top3),
                                 "yes" if x.same_family else "", "yes" if x.crosses_indo_european else ""]
                                for x in m])
        if lab.unknown_labels:
            blocks.append(("p", "Labels that are not language codes the families table knows: "
                                + ", ".join(lab.unknown_labels) + " (every item carrying one counts as a miss)."))
        label_rows = [[c, fam.name_of(c), fam.family_of(c), str(v)] for c, v in lab.counts.items()]
        blocks.append(("table", ["label", "language", "family", "items"], label_rows))
        out.append(("Language-ID misses (known labels)", blocks))
    if r.errors:
        out.append(("Unreadable items", _listing(["item", "path", "problem"],
                                                 [[x.id, x.path or "", x.error] for x in r.errors])))
    return out


def _label_share_table(key: str, rows: list[tuple[object, object]]) -> Block:
    return ("table", [key, "clips", "share", "hours", "share (h)"],
            [[str(value), str(x.clips), fmt_pct(x.share_clips), fmt_hours(x.hours), fmt_pct(x.share_hours)]
             for value, x in rows])


def _low_confidence_blocks(r: AuditReport) -> list[Block]:
    lc, t = r.low_confidence, r.totals
    blocks: list[Block] = [("p", f"{lc.count} of {t.clips} clips ({fmt_pct(lc.share)}) have a top language "
                                 f"probability under {lc.threshold:g}, where Whisper's answer is often wrong "
                                 f"(docs/language-id.md). They stay in the shares above, and the share over confident "
                                 f"clips only is given beside them. Their share of each family:"),
                           ("table", ["family", "clips", "low confidence", "share of the family"],
                            [[f.family, str(f.clips), str(f.low_confidence), fmt_pct(f.share)]
                             for f in lc.by_family])]
    if lc.clips:
        blocks += _listing(["low confidence", "label", "language", "family", "p", "top 3"],
                           [[x.id, x.label or "", x.language, x.family,
                             "–" if x.probability is None else f"{x.probability:.3f}", fmt_top3(x.top3)]
                            for x in lc.clips])
    return blocks


def _listing(head: list[str], rows: list[list]) -> list[Block]:
    """A table of at most LIST_LIMIT rows, and a line saying where the rest are."""
    blocks: list[Block] = [("table", head, rows[:LIST_LIMIT])]
    if len(rows) > LIST_LIMIT:
        blocks.append(("p", f"… and {len(rows) - LIST_LIMIT} more: all are in `report.json` and `clips.csv`."))
    return blocks


# ---------------------------------------------------------------- Markdown and HTML


def markdown_page(title: str, secs: list[Section], footer: str | None = None) -> str:
    lines = [f"# {title}", ""]
    for heading, blocks in secs:
        if heading:
            lines += [f"## {heading}", ""]
        for b in blocks:
            if b[0] == "p":
                lines += [b[1], ""]
            elif b[0] == "img":
                lines += [f"![{b[2]}]({b[1]})", ""]
            elif b[0] == "table":
                lines += [markdown_table(b[1], b[2]), ""]
    if footer is not None:
        lines.append(footer)
    return "\n".join(lines) + "\n"


def render_markdown(r: AuditReport, secs: list[Section] | None = None) -> str:
    return markdown_page(r.title, secs or sections(r), f"_talkbench {r.talkbench_version}, {r.created}_")


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;
color:#1a202c;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #e2e8f0}
table{border-collapse:collapse;margin:.6rem 0;font-size:.88rem}th,td{border:1px solid #e2e8f0;padding:.25rem .55rem;
text-align:left}th{background:#f7fafc}tr.ie td:first-child{border-left:4px solid #2b6cb0}
img{max-width:100%;height:auto;border:1px solid #e2e8f0}code{background:#f7fafc;padding:0 .2rem}
footer{margin-top:2rem;color:#718096;font-size:.8rem}
"""


def _inline_md(text: str) -> str:
    """HTML-escape and turn `code` spans into <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def html_page(title: str, version: str, created: str, secs: list[Section],
              figures: dict[str, Path] | None = None) -> str:
    """A self-contained page: inline CSS, figures embedded as base64 PNG, no scripts."""
    figures = figures or {}
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, blocks in secs:
        if heading:
            body.append(f"<h2>{html.escape(heading)}</h2>")
        for b in blocks:
            if b[0] == "p":
                body.append(f"<p>{_inline_md(b[1])}</p>")
            elif b[0] == "img":
                fig = figures.get(b[1])
                if fig is not None and Path(fig).is_file():
                    data = base64.b64encode(Path(fig).read_bytes()).decode()
                    body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                                f"<figcaption>{html.escape(b[2])}</figcaption></figure>")
            elif b[0] == "table":
                ie_col = b[1].index("Indo-European") if "Indo-European" in b[1] else None
                rows = []
                for row in b[2]:
                    cls = ' class="ie"' if ie_col is not None and row[ie_col] == "yes" else ""
                    rows.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
                head = "".join(f"<th>{html.escape(h)}</th>" for h in b[1])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    body.append(f"<footer>talkbench {html.escape(version)}, {html.escape(created)}</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def render_html(r: AuditReport, figures: dict[str, Path] | None = None, secs: list[Section] | None = None) -> str:
    """The report as a self-contained page: inline CSS, figures embedded as base64 PNG, no scripts."""
    return html_page(r.title, r.talkbench_version, r.created, secs or sections(r), figures)


# ---------------------------------------------------------------- CSV and JSON


def write_csv(path: Path, head: list[str], rows: Iterable[Sequence]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        w.writerows(rows)
    return path


def render_json(result: AuditResult) -> str:
    """``report.json``: the report, every item (``clips_detail``) and the files written."""
    return json.dumps(result.to_json(), indent=2, default=str)


def write_reports(result: AuditResult, out_dir: Path, figures: bool = True) -> dict[str, str]:
    """report.md, report.html, report.json, clips.csv, language_shares.csv, family_shares.csv,
    low_confidence.csv and figures/*.png in ``out_dir``."""
    r = result.report
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    figs: dict[str, Path] = {}
    if figures and r.languages:
        figs["figures/languages.png"] = figure_languages(r, out_dir / "figures" / "languages.png")
        figs["figures/families.png"] = figure_families(r, out_dir / "figures" / "families.png")
        files["figure_languages"] = str(figs["figures/languages.png"])
        files["figure_families"] = str(figs["figures/families.png"])
    secs = sections(r)
    if not figs:
        secs = [(t, [b for b in blocks if b[0] != "img"]) for t, blocks in secs]
    (out_dir / "report.md").write_text(render_markdown(r, secs), encoding="utf-8")
    (out_dir / "report.html").write_text(render_html(r, figs, secs), encoding="utf-8")
    files["markdown"] = str(out_dir / "report.md")
    files["html"] = str(out_dir / "report.html")
    threshold = r.low_confidence.threshold
    write_csv(out_dir / "clips.csv",
              ["id", "path", "duration_s", "label", "language", "probability", "family", "indo_european",
               "no_speech", "low_confidence", "speech_seconds", "language_from", "error"],
              [[it.id, it.path, it.duration, it.label or "", it.language or "", it.probability,
                fam.family_of(it.language) if it.has_language else "", int(fam.is_indo_european(it.language))
                if it.has_language else "", int(not it.has_language and it.error is None),
                int(it.has_language and (it.probability or 0.0) < threshold),
                it.speech_seconds, it.origin, it.error or ""] for it in result.items])
    write_csv(out_dir / "language_shares.csv",
              ["code", "name", "family", "branch", "indo_european", "clips", "share_clips", "hours", "share_hours",
               "low_confidence"],
              [[x.code, x.name, x.family, x.branch, int(x.indo_european), x.clips,
                x.share_clips, x.hours, x.share_hours, x.low_confidence] for x in r.languages])
    write_csv(out_dir / "family_shares.csv",
              ["family", "indo_european", "languages", "clips", "share_clips", "hours", "share_hours",
               "low_confidence", "low_confidence_share"],
              [[x.family, int(x.indo_european), x.languages, x.clips, x.share_clips, x.hours,
                x.share_hours, x.low_confidence, x.low_confidence_share] for x in r.families])
    write_csv(out_dir / "low_confidence.csv",
              ["id", "path", "label", "language", "family", "probability", "top3", "threshold"],
              [[x.id, x.path, x.label or "", x.language, x.family, x.probability,
                json.dumps(x.top3), threshold] for x in r.low_confidence.clips])
    files["csv_clips"] = str(out_dir / "clips.csv")
    files["csv_languages"] = str(out_dir / "language_shares.csv")
    files["csv_families"] = str(out_dir / "family_shares.csv")
    files["csv_low_confidence"] = str(out_dir / "low_confidence.csv")
    files["json"] = str(out_dir / "report.json")
    (out_dir / "report.json").write_text(render_json(AuditResult(r, result.items, result.out_dir, files)))
    return files


# ---------------------------------------------------------------- compare (Table 6 layout)


def compare_table(rows: list[CompareRow]) -> list[list[str]]:
    return [[r.dataset, fmt_pct(r.indo_european_clips, 2), fmt_ci(r.clips_ci95), fmt_pct(r.indo_european_hours, 2),
             fmt_ci(r.hours_ci95), "–" if r.paper_pct is None else f"{r.paper_pct:g}%", str(r.clips),
             fmt_hours(r.hours), str(r.no_speech), str(r.low_confidence), f"{r.engine}/{r.model}"]
            for r in rows]


def write_compare(result: CompareResult, out: Path) -> dict[str, str]:
    """compare.md, compare.html, compare.csv and compare.json in ``out``; sets ``result.files``."""
    out.mkdir(parents=True, exist_ok=True)
    table = compare_table(result.rows)
    md = ["# " + COMPARE_TITLE, "", markdown_table(COMPARE_HEAD, table), "", result.note, ""]
    (out / "compare.md").write_text("\n".join(md), encoding="utf-8")
    secs: list[Section] = [("", [("table", COMPARE_HEAD, table), ("p", result.note)])]
    (out / "compare.html").write_text(html_page(COMPARE_TITLE, result.talkbench_version, result.created, secs),
                                      encoding="utf-8")
    rows = [row.to_json() for row in result.rows]
    write_csv(out / "compare.csv", list(rows[0].keys()), [[json.dumps(v) if isinstance(v, list) else v
                                                           for v in row.values()] for row in rows])
    result.files = {k: str(out / f"compare.{k}") for k in ("md", "html", "csv", "json")}
    (out / "compare.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
    return result.files
