"""The audit's numbers from resolved items: counts, hours and shares by language and family,
the Indo-European share with a seeded percentile bootstrap 95% interval, no-speech and
low-confidence clips, the misses of language ID against known labels, emotion/intensity
shares, and the paper's published figure for a dataset it measured."""

from __future__ import annotations

import csv
import re
from importlib import resources
from typing import Callable, Sequence

import numpy as np

from talkbench.datasets import families as fam
from talkbench.datasets.audit.model import (AuditItem, AuditReport, CompareRow, EmotionShare, FamilyLowConfidence,
                                            FamilyRow, IndoEuropean, IntensityShare, ItemError, LabelMiss, LabelStats,
                                            LanguageRow, LowConfidence, LowConfidenceClip, NoSpeech, NoSpeechClip,
                                            PaperRow, Shares, Summary, Totals)

# Top language probability under which a clip is "low confidence": reported apart, with its
# share of each family. Measured with Whisper base on the shared speech (31 files and their 2 s
# and 4 s excerpts, both engines): under 0.7 fall 69 of the 71 wrong answers and 12% of the right
# ones; above it 99.3% are right (0.5 left 15 wrong answers above it). docs/language-id.md.
DEFAULT_THRESHOLD = 0.7
DEFAULT_SEED = 0
DEFAULT_BOOTSTRAP = 2000
INTERVAL = "percentile bootstrap 95%, clips resampled"


# ---------------------------------------------------------------- the paper's numbers


def squash(name: str) -> str:
    """A name reduced to lower-case letters and digits (for matching and folder names)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def paper_shares() -> list[PaperRow]:
    """VQTalker's published Indo-European shares (``paper_language_shares.csv``)."""
    text = resources.files("talkbench.datasets").joinpath("paper_language_shares.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return [PaperRow(dataset=r["dataset"], indo_european_pct=float(r["indo_european_pct"]), kind=r["kind"],
                     where=r["where"], aliases=r["aliases"].split() if r.get("aliases") else []) for r in rows]


def match_paper(dataset: str | None) -> PaperRow | None:
    """The paper's row for a dataset name (case/punctuation-insensitive, aliases too), or None."""
    if not dataset:
        return None
    key = squash(dataset)
    for r in paper_shares():
        if key in {squash(r.dataset), *(squash(a) for a in r.aliases)}:
            return r
    return None


# ---------------------------------------------------------------- numbers


def bootstrap_shares(ie: np.ndarray, hours: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED,
                     level: float = 0.95) -> dict[str, list[float | None]]:
    """Percentile bootstrap of the Indo-European share by clips and by hours. Clips are
    resampled with replacement; both shares come from the same resamples."""
    ie = np.asarray(ie, dtype=bool)
    hours = np.asarray(hours, dtype=np.float64)
    n = len(ie)
    if n == 0:
        return {"clips": [None, None], "hours": [None, None]}
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, 4_000_000 // n))
    by_clips, by_hours = [], []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        by_clips.append(ie[idx].mean(axis=1))
        h = hours[idx]
        total = h.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            by_hours.append(np.where(total > 0, (h * ie[idx]).sum(axis=1) / total, np.nan))
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    clips_ci = np.percentile(np.concatenate(by_clips), q)
    hb = np.concatenate(by_hours)
    hours_ci = np.nanpercentile(hb, q) if np.isfinite(hb).any() else [np.nan, np.nan]
    return {"clips": [float(clips_ci[0]), float(clips_ci[1])],
            "hours": [None if np.isnan(v) else float(v) for v in hours_ci]}


def _share(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _ie_shares(items: list[AuditItem], code_of: Callable[[AuditItem], str | None]) -> Shares:
    n = len(items)
    ie = [fam.is_indo_european(code_of(it)) for it in items]
    hours = [(it.duration or 0.0) / 3600 for it in items]
    return Shares(n=n, clips=_share(sum(ie), n), hours=_share(sum(h for h, x in zip(hours, ie) if x), sum(hours)))


def summarise(items: list[AuditItem], threshold: float = DEFAULT_THRESHOLD, seed: int = DEFAULT_SEED,
              n_bootstrap: int = DEFAULT_BOOTSTRAP) -> Summary:
    """Every number of the report, from resolved items."""
    usable = [it for it in items if it.error is None]
    spoken = [it for it in usable if it.has_language]
    total_hours = sum((it.duration or 0.0) for it in spoken) / 3600
    n = len(spoken)

    languages: dict[str, LanguageRow] = {}
    for it in spoken:
        info = fam.lookup(it.language)
        row = languages.setdefault(it.language, LanguageRow(
            code=it.language, name=fam.name_of(it.language), family=fam.family_of(it.language),
            branch=info.branch if info else "", indo_european=fam.is_indo_european(it.language),
            clips=0, hours=0.0, low_confidence=0))
        row.clips += 1
        row.hours += (it.duration or 0.0) / 3600
        row.low_confidence += int((it.probability or 0.0) < threshold)
    for row in languages.values():
        row.share_clips = _share(row.clips, n)
        row.share_hours = _share(row.hours, total_hours)
    lang_rows = sorted(languages.values(), key=lambda r: (-r.clips, -r.hours, r.code))

    families: dict[str, FamilyRow] = {}
    for row in lang_rows:
        f = families.setdefault(row.family, FamilyRow(family=row.family, indo_european=row.indo_european,
                                                      languages=0, clips=0, hours=0.0, low_confidence=0))
        f.languages += 1
        f.clips += row.clips
        f.hours += row.hours
        f.low_confidence += row.low_confidence
    for f in families.values():
        f.share_clips = _share(f.clips, n)
        f.share_hours = _share(f.hours, total_hours)
        f.low_confidence_share = _share(f.low_confidence, f.clips)
    fam_rows = sorted(families.values(), key=lambda r: (-r.clips, -r.hours, r.family))

    ie = _ie_shares(spoken, lambda it: it.language)
    ci = bootstrap_shares([fam.is_indo_european(it.language) for it in spoken],
                          [(it.duration or 0.0) / 3600 for it in spoken], n_bootstrap, seed)
    confident = [it for it in spoken if (it.probability or 0.0) >= threshold]
    low = [it for it in spoken if (it.probability or 0.0) < threshold]
    no_speech = [it for it in usable if not it.has_language]

    return Summary(
        totals=Totals(items=len(items), clips=n, hours=total_hours,
                      all_hours=sum((it.duration or 0.0) for it in usable) / 3600,
                      no_speech=len(no_speech), errors=len(items) - len(usable), low_confidence=len(low),
                      languages=len(lang_rows), families=len(fam_rows),
                      missing_duration=sum(it.duration is None for it in usable)),
        indo_european=IndoEuropean(clips=ie.clips, hours=ie.hours, clips_ci95=ci["clips"], hours_ci95=ci["hours"],
                                   confident_only=_ie_shares(confident, lambda it: it.language), n=n),
        languages=lang_rows,
        families=fam_rows,
        unknown_languages=sorted({it.language for it in spoken if fam.lookup(it.language) is None}),
        no_speech=NoSpeech(count=len(no_speech), share=_share(len(no_speech), len(usable)),
                           clips=[NoSpeechClip(id=it.id, path=it.path, speech_seconds=it.speech_seconds)
                                  for it in no_speech]),
        low_confidence=LowConfidence(
            threshold=threshold, count=len(low), share=_share(len(low), n),
            by_family=[FamilyLowConfidence(family=f.family, clips=f.clips, low_confidence=f.low_confidence,
                                           share=f.low_confidence_share) for f in fam_rows],
            clips=[LowConfidenceClip(id=it.id, path=it.path, label=it.label, language=it.language,
                                     family=fam.family_of(it.language), probability=it.probability, top3=it.top3)
                   for it in low]),
        errors=[ItemError(id=it.id, path=it.path, error=it.error) for it in items if it.error is not None],
        labels=label_stats(items, spoken),
        # only datasets labelled with them (MEAD)
        emotions=emotion_shares(usable) if any(it.emotion is not None for it in usable) else None,
        intensities=intensity_shares(usable) if any(it.intensity is not None for it in usable) else None,
    )


def _tally(items: list[AuditItem], key: str, make: Callable[[object], EmotionShare | IntensityShare]) -> list:
    tagged = [it for it in items if getattr(it, key) is not None]
    total_hours = sum((it.duration or 0.0) for it in tagged) / 3600
    rows: dict = {}
    for it in tagged:
        row = rows.setdefault(getattr(it, key), make(getattr(it, key)))
        row.clips += 1
        row.hours += (it.duration or 0.0) / 3600
    for row in rows.values():
        row.share_clips = _share(row.clips, len(tagged))
        row.share_hours = _share(row.hours, total_hours)
    return [rows[k] for k in sorted(rows)]


def emotion_shares(items: list[AuditItem]) -> list[EmotionShare]:
    """Clips and hours per emotion label, with their shares among the items that carry one,
    whether they hold speech or not."""
    return _tally(items, "emotion", lambda v: EmotionShare(emotion=v))


def intensity_shares(items: list[AuditItem]) -> list[IntensityShare]:
    """Clips and hours per emotion intensity, as ``emotion_shares``."""
    return _tally(items, "intensity", lambda v: IntensityShare(intensity=v))


def label_stats(items: list[AuditItem], spoken: list[AuditItem]) -> LabelStats | None:
    """Language ID against the known labels: its misses and what they do to the share."""
    labelled = [it for it in items if it.label]
    if not labelled:
        return None
    counts: dict[str, int] = {}
    for it in labelled:
        code = fam.normalise(it.label)
        counts[code] = counts.get(code, 0) + 1
    misses = []
    for it in labelled:
        want = fam.normalise(it.label)
        if it.has_language and it.language == want:
            continue
        got = it.language if it.has_language else None
        misses.append(LabelMiss(
            id=it.id, path=it.path, label=want, label_name=fam.name_of(want),
            detected=got, detected_name=fam.name_of(got) if got else ("error" if it.error else "no speech"),
            probability=it.probability, top3=it.top3, error=it.error,
            label_family=fam.family_of(want), detected_family=fam.family_of(got) if got else None,
            same_family=bool(got) and fam.family_of(got) == fam.family_of(want),
            crosses_indo_european=bool(got) and fam.is_indo_european(got) != fam.is_indo_european(want),
            label_known=fam.lookup(want) is not None,
        ))
    both = [it for it in spoken if it.label]
    gained = sum(1 for m in misses if m.crosses_indo_european and fam.is_indo_european(m.detected))
    lost = sum(1 for m in misses if m.crosses_indo_european and not fam.is_indo_european(m.detected))
    return LabelStats(
        labelled=len(labelled),
        counts=dict(sorted(counts.items())),
        indo_european=_ie_shares(both, lambda it: it.label),
        indo_european_all_labelled=_ie_shares(labelled, lambda it: it.label),
        misses=misses,
        miss_rate=_share(len(misses), len(labelled)),
        ie_gained_by_misses=gained,
        ie_lost_by_misses=lost,
        # exact: ours and the labels' share are over the same clips
        explained_difference_clips=_share(gained - lost, len(both)),
        unknown_labels=sorted({c for c in counts if fam.lookup(c) is None}),
    )


# ---------------------------------------------------------------- Table 6 rows


def table6_row(dataset: str, numbers: Summary | AuditReport, paper: PaperRow | None, source: str,
               threshold: float, engine: str, model: str, seed: int) -> CompareRow:
    ie, t = numbers.indo_european, numbers.totals
    return CompareRow(
        dataset=dataset, indo_european_clips=ie.clips, clips_ci95=ie.clips_ci95,
        indo_european_hours=ie.hours, hours_ci95=ie.hours_ci95,
        paper_pct=paper.indo_european_pct if paper else None, paper_kind=paper.kind if paper else None,
        clips=t.clips, hours=t.hours, no_speech=t.no_speech, low_confidence=t.low_confidence,
        threshold=threshold, engine=engine, model=model, seed=seed, source=source,
    )


def compare_row(r: AuditReport) -> CompareRow:
    """A report's row in the layout of the paper's Table 6."""
    s = r.settings
    return table6_row(r.dataset, r, r.paper, r.source.path, s.threshold, s.engine, s.model, s.seed)


def by_dataset_rows(items: Sequence[AuditItem], threshold: float, seed: int, n_bootstrap: int, engine: str,
                    model: str) -> list[CompareRow]:
    """One Table 6 row per dataset when the items come from several (e.g. a catalog built from
    HDTF and VoxCeleb); none for one dataset."""
    names = sorted({it.dataset or "" for it in items})
    if len(names) <= 1:
        return []
    return [table6_row(name or "(none)", summarise([it for it in items if (it.dataset or "") == name], threshold,
                                                   seed, n_bootstrap),
                       match_paper(name), name, threshold, engine, model, seed) for name in names]
