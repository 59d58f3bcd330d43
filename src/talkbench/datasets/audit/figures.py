"""The report's figures: languages in the paper's Figure 5 style, and family shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from talkbench.datasets.audit.model import AuditReport
from talkbench.datasets.audit.text import fmt_ci, fmt_hours, fmt_pct

TOP_LANGUAGES_IN_FIGURE = 25
IE_COLOUR = "#2b6cb0"
OTHER_COLOUR = "#dd6b20"


def _pyplot():
    # matplotlib is imported only when a figure is drawn: it is slow to import
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig, ax, path: Path) -> Path:
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def figure_languages(report: AuditReport, path: Path) -> Path:
    """The paper's Figure 5 style: share of clips per language, Indo-European bars marked."""
    from matplotlib.patches import Patch

    plt = _pyplot()

    rows = report.languages
    top = rows[:TOP_LANGUAGES_IN_FIGURE]
    rest = rows[TOP_LANGUAGES_IN_FIGURE:]
    labels = [f"{r.name} ({r.code})" for r in top]
    values = [100 * (r.share_clips or 0) for r in top]
    colours = [IE_COLOUR if r.indo_european else OTHER_COLOUR for r in top]
    hatches = ["" if r.indo_european else "//" for r in top]
    if rest:
        labels.append(f"{len(rest)} other languages")
        values.append(100 * sum(r.share_clips or 0 for r in rest))
        colours.append("#a0aec0")
        hatches.append("")
    fig, ax = plt.subplots(figsize=(8, 0.38 * max(len(labels), 3) + 1.6), dpi=110)
    y = np.arange(len(labels))[::-1]
    bars = ax.barh(y, values, color=colours, edgecolor="white")
    for b, h in zip(bars, hatches):
        b.set_hatch(h)
    for yi, v in zip(y, values):
        ax.text(v + max(values + [1]) * 0.01, yi, f"{v:.1f}%", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("share of clips with detected speech (%)")
    ax.set_xlim(0, max(values + [1]) * 1.15)
    ie = report.indo_european
    t = report.totals
    ax.set_title(f"Language distribution — {report.dataset}\n{t.clips} clips, {fmt_hours(t.hours)} h; "
                 f"Indo-European {fmt_pct(ie.clips)} of clips (95% CI {fmt_ci(ie.clips_ci95)})", fontsize=10)
    ax.legend(handles=[Patch(color=IE_COLOUR, label="Indo-European"),
                       Patch(facecolor=OTHER_COLOUR, hatch="//", edgecolor="white", label="other families")],
              loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)  # beside the bars, clear of them
    return _save(fig, ax, path)


def figure_families(report: AuditReport, path: Path) -> Path:
    """Family shares by clips and by hours, Indo-European marked."""
    plt = _pyplot()

    rows = report.families
    labels = [r.family for r in rows]
    clips = [100 * (r.share_clips or 0) for r in rows]
    hours = [100 * (r.share_hours or 0) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.5 * max(len(rows), 2) + 1.5), dpi=110)
    y = np.arange(len(rows))[::-1]
    h = 0.38
    for i, r in enumerate(rows):
        c = IE_COLOUR if r.indo_european else OTHER_COLOUR
        ax.barh(y[i] + h / 2, clips[i], h, color=c, label="clips" if i == 0 else None)
        ax.barh(y[i] - h / 2, hours[i], h, color=c, alpha=0.45, label="hours" if i == 0 else None)
        ax.text(clips[i] + 0.5, y[i] + h / 2, f"{clips[i]:.1f}%", va="center", fontsize=8)
        ax.text(hours[i] + 0.5, y[i] - h / 2, f"{hours[i]:.1f}% h", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_xlim(0, max(clips + hours + [1]) * 1.18)
    ax.set_xlabel("share (%): solid = clips, light = hours; blue = Indo-European")
    ax.set_title(f"Language families (Glottolog) — {report.dataset}", fontsize=10)
    return _save(fig, ax, path)
