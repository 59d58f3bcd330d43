"""How the audit's numbers are written, in every report format and on the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from talkbench.datasets.audit.model import AuditReport, Settings


def fmt_pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def fmt_ci(lo_hi: Sequence | None) -> str:
    if not lo_hi or lo_hi[0] is None:
        return "–"
    return f"{100 * lo_hi[0]:.1f}–{100 * lo_hi[1]:.1f}%"


def fmt_points(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.2f}"


def fmt_hours(h: float | None) -> str:
    return "–" if h is None else (f"{h:.2f}" if h >= 10 else f"{h:.3f}")


def fmt_top3(top3) -> str:
    return ", ".join(f"{k} {float(p):.2f}" for k, p in (top3 or []))


def model_line(settings: Settings) -> str:
    """'engine / model' and the weights file's sha256 when it was found."""
    line = f"{settings.engine} / {settings.model}"
    if settings.model_sha256:
        return line + f" (`{Path(settings.model_file).name}` sha256 {settings.model_sha256})"
    return line + " (weights file not found on this machine: no sha256)"


def low_confidence_by_family(r: AuditReport) -> str:
    """'Turkic 1 of 1 (100.0%), Indo-European 1 of 12 (8.3%)': the families with low-confidence clips."""
    rows = [f for f in r.low_confidence.by_family if f.low_confidence]
    return ", ".join(f"{f.family} {f.low_confidence} of {f.clips} ({fmt_pct(f.share)})" for f in rows)
