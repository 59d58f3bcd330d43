"""Language-bias audit: how Indo-European is a face-video dataset?

The paper's measurement (VQTalker, Tables 5-6 and Figure 5), repeatable on any dataset:

1. **Items.** A source is a ``catalog.duckdb`` from ``talkbench data build`` (its accepted
   clips), any folder of audio/video files (searched recursively), or a list of ``Clip``
   records (the sample corpus). Known languages (a catalog's ``expected_language``, the parent
   folder's name with ``labels_from_folders``, a Clip's ``language``) are *labels*: they never
   replace language ID, they are compared with it.
2. **Language.** The catalog's language tags are reused; language ID
   (``talkbench.datasets.language``) runs only where a tag is missing, and its results are
   cached (SQLite, keyed by path, size, mtime, engine, model and the LID settings), so a second
   run does no language ID at all.
3. **Numbers.** Counts, hours and shares by language and by family (``families.csv``); the
   Indo-European share by clips and by hours with a seeded percentile bootstrap 95% interval
   (clips resampled with replacement, the same resamples for both); no-speech clips and
   clips whose top language probability is under ``threshold`` are counted and listed, never
   dropped (shares are over clips with a language; the share over confident clips only is
   given beside it); the paper's figure when the dataset is one it measured; with labels, the
   misses of language ID and the label-based Indo-European share; with a catalog's emotion
   labels (MEAD), clips and hours per emotion and per intensity.
4. **Reports.** ``report.md``, a self-contained ``report.html`` (figures embedded as base64
   PNG), ``report.json``, ``clips.csv``, ``language_shares.csv``, ``family_shares.csv``,
   ``low_confidence.csv`` (low-confidence clips are reported apart, with their share of each
   family, in every format; the report names the language-ID model and its sha256) and
   ``figures/languages.png`` (the paper's Figure 5 style, Indo-European bars marked) and
   ``figures/families.png``. ``compare`` puts several audits side by side in Table 6 layout.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import json
import os
import re
import sqlite3
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from talkbench import __version__
from talkbench.datasets import families as fam
from talkbench.errors import MediaError, TalkbenchError

AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".m4a", ".ogg", ".opus", ".aac", ".wma")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".flv", ".mpg", ".mpeg", ".ts")
MEDIA_SUFFIXES = AUDIO_SUFFIXES + VIDEO_SUFFIXES
CATALOG_NAME = "catalog.duckdb"

# Top language probability under which a clip is "low confidence": reported apart, with its
# share of each family. Measured with Whisper base on the shared speech (31 files and their 2 s
# and 4 s excerpts, both engines): under 0.7 fall 69 of the 71 wrong answers and 12% of the right
# ones; above it 99.3% are right (0.5 left 15 wrong answers above it). docs/language-id.md.
DEFAULT_THRESHOLD = 0.7
DEFAULT_SEED = 0
DEFAULT_BOOTSTRAP = 2000
TOP_LANGUAGES_IN_FIGURE = 25
LIST_LIMIT = 200  # rows of a listing (no speech, low confidence, misses) in the Markdown/HTML report

IE_COLOUR = "#2b6cb0"
OTHER_COLOUR = "#dd6b20"

Progress = Callable[[int, int, str], None]


class AuditError(TalkbenchError):
    pass


# ---------------------------------------------------------------- items


@dataclass
class AuditItem:
    """One clip or file of the audited dataset."""

    id: str
    path: str | None
    duration: float | None = None  # seconds
    label: str | None = None  # a known language (folder, manifest, samples.json), compared with LID
    dataset: str | None = None
    language: str | None = None
    probability: float | None = None
    top3: list = field(default_factory=list)
    speech_seconds: float | None = None
    no_speech: bool = False
    origin: str = ""  # catalog | cache | lid | error
    error: str | None = None
    emotion: str | None = None  # a catalog's emotion label (MEAD), reported as shares beside the languages
    intensity: int | None = None

    @property
    def has_language(self) -> bool:
        return bool(self.language) and not self.no_speech and self.error is None


def is_catalog(source: str | Path) -> bool:
    p = Path(source)
    return (p.is_file() and p.suffix == ".duckdb") or (p.is_dir() and (p / CATALOG_NAME).is_file())


def items_from_catalog(source: str | Path) -> tuple[list[AuditItem], dict]:
    """The accepted clips of a catalog (its tags reused), and what the build excluded at the
    language stage (counted in the report, not audited)."""
    from talkbench.datasets.catalog import Catalog

    p = Path(source)
    root = p.parent if p.is_file() else p
    if p.is_file() and p.name != CATALOG_NAME:
        raise AuditError(f"{p}: a catalog must be named {CATALOG_NAME} (as 'talkbench data build' writes it)")
    with Catalog(root, read_only=True) as cat:
        rows = cat.rows()
    items: list[AuditItem] = []
    excluded: dict[str, int] = {}
    tagged_by: dict[str, int] = {}
    for r in rows:
        if r.get("status") != "accepted":
            if r.get("stage") == "language" and r.get("reason"):
                excluded[r["reason"]] = excluded.get(r["reason"], 0) + 1
            continue
        duration = r.get("duration")
        if duration is None and r.get("clip_end") is not None and r.get("clip_start") is not None:
            duration = float(r["clip_end"]) - float(r["clip_start"])
        top3 = r.get("language_top3")
        try:
            top3 = json.loads(top3) if isinstance(top3, str) else (top3 or [])
        except json.JSONDecodeError:
            top3 = []
        item = AuditItem(
            id=str(r["clip_id"]),
            path=str(root / r["path"]) if r.get("path") else None,
            duration=float(duration) if duration is not None else None,
            label=r.get("expected_language") or None,
            dataset=r.get("dataset"),
            emotion=r.get("emotion"),
            intensity=r.get("intensity"),
        )
        if r.get("language"):
            item.language = fam.normalise(r["language"])
            item.probability = r.get("language_prob")
            item.top3 = top3
            item.speech_seconds = r.get("speech_seconds")
            item.origin = "catalog"
            by = f"{r.get('lid_engine') or '?'} / {r.get('lid_model') or '?'}"
            tagged_by[by] = tagged_by.get(by, 0) + 1
        items.append(item)
    return items, {"rejected_at_language_stage": excluded, "catalog_rows": len(rows), "tags_from": tagged_by}


def items_from_folder(source: str | Path, labels_from_folders: bool = False) -> list[AuditItem]:
    """Every audio/video file under ``source`` (recursive, sorted); with
    ``labels_from_folders`` the parent folder's name is the file's known language."""
    root = Path(source)
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in MEDIA_SUFFIXES
                   and not any(part.startswith(".") for part in f.relative_to(root).parts))
    if not files:
        raise AuditError(f"{root}: no audio or video files here (looked recursively for "
                         f"{', '.join(MEDIA_SUFFIXES)})")
    items = []
    for f in files:
        rel = f.relative_to(root)
        label = f.parent.name if labels_from_folders and f.parent != root else None
        items.append(AuditItem(id=str(rel.with_suffix("")), path=str(f), label=label, dataset=root.name))
    return items


def items_from_clips(clips: Iterable) -> list[AuditItem]:
    """Clip records (e.g. ``load_sample_corpus()``): their ``language`` is a label."""
    return [AuditItem(id=c.id, path=str(c.video), duration=c.duration, label=c.language or None, dataset=c.dataset)
            for c in clips]


# ---------------------------------------------------------------- cache


def default_cache_path() -> Path:
    env = os.environ.get("TALKBENCH_CACHE_DIR")
    if env:
        return Path(env) / "audit-lid.sqlite"
    import platformdirs

    return Path(platformdirs.user_cache_dir("talkbench")) / "audit-lid.sqlite"


def lid_settings(engine: str, model: str) -> str:
    """Everything a cached language-ID result depends on besides the file."""
    from talkbench.datasets import language as lid

    return json.dumps({"engine": engine, "model": model, "window": lid.WINDOW_SECONDS, "windows": lid.MAX_WINDOWS,
                       "min_speech": lid.MIN_SPEECH_SECONDS, "pad": lid.VAD_PAD_SECONDS}, sort_keys=True)


class LidCache:
    """Language-ID results and durations keyed by (path, size, mtime_ns, LID settings)."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.con = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.con = sqlite3.connect(str(self.path), timeout=30)
                self.con.execute("PRAGMA journal_mode=WAL")
                self.con.execute("CREATE TABLE IF NOT EXISTS lid (key TEXT PRIMARY KEY, value TEXT, created TEXT)")
                self.con.commit()
            except sqlite3.DatabaseError as exc:
                raise AuditError(f"{self.path}: cannot use this language-ID cache ({exc}); delete it or pass another "
                                 f"--cache") from None

    @staticmethod
    def key(path: str, settings: str) -> str | None:
        try:
            st = Path(path).stat()
        except OSError:
            return None
        raw = f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{settings}"
        return hashlib.sha256(raw.encode()).hexdigest()

    def get(self, key: str | None) -> dict | None:
        if self.con is None or key is None:
            return None
        row = self.con.execute("SELECT value FROM lid WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str | None, value: dict) -> None:
        if self.con is None or key is None:
            return
        self.con.execute("INSERT OR REPLACE INTO lid VALUES (?, ?, ?)",
                         (key, json.dumps(value), datetime.now(timezone.utc).isoformat()))
        self.con.commit()

    def close(self) -> None:
        if self.con is not None:
            self.con.close()


def resolve_languages(items: list[AuditItem], engine: str = "faster-whisper", model: str = "base", threads: int = 2,
                      cache: str | Path | None = "default", progress: Progress | None = None) -> dict:
    """Fill ``language`` (and duration) of items that lack it: cache first, then language ID.
    Returns counts: how many came from the catalog, the cache, a fresh LID run, or failed."""
    cache_path = default_cache_path() if cache == "default" else cache
    store = LidCache(cache_path)
    settings = lid_settings(engine, model)
    todo = [it for it in items if not it.language or it.duration is None]
    stats = {"catalog": sum(it.origin == "catalog" for it in items), "cache": 0, "lid": 0, "errors": 0,
             "lid_seconds": 0.0, "cache_path": str(cache_path) if cache_path else None}
    try:
        for i, it in enumerate(todo):
            if progress:
                progress(i, len(todo), it.id)
            if it.path is None:
                it.error, it.origin = "no file path", "error"
                stats["errors"] += 1
                continue
            key = LidCache.key(it.path, settings)
            hit = store.get(key)
            fresh = False
            if hit is None or (not it.language and not hit.get("lid")):
                try:
                    hit = _run_lid(it.path, engine, model, threads, need_lid=not it.language)
                except MediaError as exc:
                    it.error, it.origin = exc.problem, "error"
                    stats["errors"] += 1
                    continue
                fresh = True
                stats["lid_seconds"] += hit.get("seconds", 0.0)
                store.put(key, hit)
            if it.duration is None:
                it.duration = hit.get("duration")
            if not it.language:
                it.language = fam.normalise(hit["language"]) if hit["language"] else None
                it.probability = hit["probability"]
                it.top3 = hit["top3"]
                it.speech_seconds = hit["speech_seconds"]
                it.no_speech = bool(hit["no_speech"])
                it.origin = "lid" if fresh else "cache"
                stats[it.origin] += 1
            elif fresh:
                stats["probed"] = stats.get("probed", 0) + 1
        if progress:
            progress(len(todo), len(todo), "")
    finally:
        store.close()
    return stats


def _run_lid(path: str, engine: str, model: str, threads: int, need_lid: bool = True) -> dict:
    from talkbench import media

    info = media.probe(path)
    out = {"duration": float(info.duration), "lid": False}
    if not need_lid:
        return out
    if not info.has_audio:
        out.update(lid=True, language=None, probability=0.0, top3=[], speech_seconds=0.0, no_speech=True,
                   seconds=0.0, no_audio=True)
        return out
    from talkbench.datasets.language import detect_file

    try:
        res = detect_file(path, engine=engine, model=model, threads=threads)
    except ImportError as exc:
        raise AuditError(f"{path}: has no language tag and language ID is not installed ({exc}); "
                         f"pip install 'talkbench[lid,lid-model]'") from None
    out.update(lid=True, language=res.language, probability=float(res.probability),
               top3=[[k, float(p)] for k, p in res.top3], speech_seconds=float(res.speech_seconds),
               no_speech=bool(res.no_speech), seconds=float(res.seconds))
    return out


# ---------------------------------------------------------------- the paper's numbers


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def paper_shares() -> list[dict]:
    """VQTalker's published Indo-European shares (``paper_language_shares.csv``)."""
    text = resources.files(__package__).joinpath("paper_language_shares.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(line for line in text.splitlines() if line.strip() and not line.startswith("#")))
    for r in rows:
        r["indo_european_pct"] = float(r["indo_european_pct"])
        r["aliases"] = r["aliases"].split() if r.get("aliases") else []
    return rows


def match_paper(dataset: str | None) -> dict | None:
    """The paper's row for a dataset name (case/punctuation-insensitive, aliases too), or None."""
    if not dataset:
        return None
    key = _squash(dataset)
    for r in paper_shares():
        if key in {_squash(r["dataset"]), *(_squash(a) for a in r["aliases"])}:
            return r
    return None


# ---------------------------------------------------------------- numbers


def bootstrap_shares(ie: np.ndarray, hours: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED,
                     level: float = 0.95) -> dict:
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


def _ie_shares(items: list[AuditItem], code_of: Callable[[AuditItem], str | None]) -> dict:
    n = len(items)
    ie = [fam.is_indo_european(code_of(it)) for it in items]
    hours = [(it.duration or 0.0) / 3600 for it in items]
    return {"n": n, "clips": _share(sum(ie), n),
            "hours": _share(sum(h for h, x in zip(hours, ie) if x), sum(hours))}


def summarise(items: list[AuditItem], threshold: float = DEFAULT_THRESHOLD, seed: int = DEFAULT_SEED,
              n_bootstrap: int = DEFAULT_BOOTSTRAP) -> dict:
    """Every number of the report, from resolved items."""
    usable = [it for it in items if it.error is None]
    spoken = [it for it in usable if it.has_language]
    total_hours = sum((it.duration or 0.0) for it in spoken) / 3600
    n = len(spoken)

    languages: dict[str, dict] = {}
    for it in spoken:
        row = languages.setdefault(it.language, {"code": it.language, "name": fam.name_of(it.language),
                                                 "family": fam.family_of(it.language),
                                                 "branch": (fam.lookup(it.language).branch if fam.lookup(it.language) else ""),
                                                 "indo_european": fam.is_indo_european(it.language),
                                                 "clips": 0, "hours": 0.0, "low_confidence": 0})
        row["clips"] += 1
        row["hours"] += (it.duration or 0.0) / 3600
        row["low_confidence"] += int((it.probability or 0.0) < threshold)
    for row in languages.values():
        row["share_clips"] = _share(row["clips"], n)
        row["share_hours"] = _share(row["hours"], total_hours)
    lang_rows = sorted(languages.values(), key=lambda r: (-r["clips"], -r["hours"], r["code"]))

    families: dict[str, dict] = {}
    for row in lang_rows:
        f = families.setdefault(row["family"], {"family": row["family"], "indo_european": row["indo_european"],
                                                "languages": 0, "clips": 0, "hours": 0.0, "low_confidence": 0})
        f["languages"] += 1
        f["clips"] += row["clips"]
        f["hours"] += row["hours"]
        f["low_confidence"] += row["low_confidence"]
    for f in families.values():
        f["share_clips"] = _share(f["clips"], n)
        f["share_hours"] = _share(f["hours"], total_hours)
        f["low_confidence_share"] = _share(f["low_confidence"], f["clips"])  # of the family's own clips
    fam_rows = sorted(families.values(), key=lambda r: (-r["clips"], -r["hours"], r["family"]))

    ie = _ie_shares(spoken, lambda it: it.language)
    ci = bootstrap_shares([fam.is_indo_european(it.language) for it in spoken],
                          [(it.duration or 0.0) / 3600 for it in spoken], n_bootstrap, seed)
    confident = [it for it in spoken if (it.probability or 0.0) >= threshold]
    low = [it for it in spoken if (it.probability or 0.0) < threshold]
    no_speech = [it for it in usable if not it.has_language]

    out = {
        "totals": {
            "items": len(items), "clips": n, "hours": total_hours,
            "all_hours": sum((it.duration or 0.0) for it in usable) / 3600,
            "no_speech": len(no_speech), "errors": len(items) - len(usable),
            "low_confidence": len(low), "languages": len(lang_rows), "families": len(fam_rows),
            "missing_duration": sum(it.duration is None for it in usable),
        },
        "indo_european": {
            "clips": ie["clips"], "hours": ie["hours"], "clips_ci95": ci["clips"], "hours_ci95": ci["hours"],
            "confident_only": _ie_shares(confident, lambda it: it.language),
            "n": n,
        },
        "languages": lang_rows,
        "families": fam_rows,
        "unknown_languages": sorted({it.language for it in spoken if fam.lookup(it.language) is None}),
        "no_speech": {"count": len(no_speech), "share": _share(len(no_speech), len(usable)),
                      "clips": [{"id": it.id, "path": it.path, "speech_seconds": it.speech_seconds} for it in no_speech]},
        "low_confidence": {"threshold": threshold, "count": len(low), "share": _share(len(low), n),
                           "by_family": [{"family": f["family"], "clips": f["clips"], "low_confidence": f["low_confidence"],
                                          "share": f["low_confidence_share"]} for f in fam_rows],
                           "clips": [{"id": it.id, "path": it.path, "label": it.label, "language": it.language,
                                      "family": fam.family_of(it.language), "probability": it.probability,
                                      "top3": it.top3} for it in low]},
        "errors": [{"id": it.id, "path": it.path, "error": it.error} for it in items if it.error is not None],
    }
    out["labels"] = _label_stats(items, spoken)
    for key, name in (("emotion", "emotions"), ("intensity", "intensities")):
        if any(getattr(it, key) is not None for it in usable):  # only datasets labelled with them (MEAD)
            out[name] = shares_by(usable, key)
    return out


def shares_by(items: list[AuditItem], key: str) -> list[dict]:
    """Clips and hours per value of an item label (``emotion``, ``intensity``), with their
    shares among the items that carry one, whether they hold speech or not."""
    tagged = [it for it in items if getattr(it, key) is not None]
    total_hours = sum((it.duration or 0.0) for it in tagged) / 3600
    rows: dict = {}
    for it in tagged:
        row = rows.setdefault(getattr(it, key), {key: getattr(it, key), "clips": 0, "hours": 0.0})
        row["clips"] += 1
        row["hours"] += (it.duration or 0.0) / 3600
    for row in rows.values():
        row["share_clips"] = _share(row["clips"], len(tagged))
        row["share_hours"] = _share(row["hours"], total_hours)
    return [rows[k] for k in sorted(rows)]


def _label_stats(items: list[AuditItem], spoken: list[AuditItem]) -> dict | None:
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
        misses.append({
            "id": it.id, "path": it.path, "label": want, "label_name": fam.name_of(want),
            "detected": got, "detected_name": fam.name_of(got) if got else ("error" if it.error else "no speech"),
            "probability": it.probability, "top3": it.top3, "error": it.error,
            "label_family": fam.family_of(want), "detected_family": fam.family_of(got) if got else None,
            "same_family": bool(got) and fam.family_of(got) == fam.family_of(want),
            "crosses_indo_european": bool(got) and fam.is_indo_european(got) != fam.is_indo_european(want),
            "label_known": fam.lookup(want) is not None,
        })
    both = [it for it in spoken if it.label]
    by_labels = _ie_shares(both, lambda it: it.label)
    gained = sum(1 for m in misses if m["crosses_indo_european"] and fam.is_indo_european(m["detected"]))
    lost = sum(1 for m in misses if m["crosses_indo_european"] and not fam.is_indo_european(m["detected"]))
    return {
        "labelled": len(labelled),
        "counts": dict(sorted(counts.items())),
        "indo_european": by_labels,  # over clips with both a label and a detected language
        "indo_european_all_labelled": _ie_shares(labelled, lambda it: it.label),
        "misses": misses,
        "miss_rate": _share(len(misses), len(labelled)),
        "ie_gained_by_misses": gained,
        "ie_lost_by_misses": lost,
        # ours - labels, by clips, that the misses account for (exactly, over the same clips)
        "explained_difference_clips": _share(gained - lost, len(both)),
        "unknown_labels": sorted({c for c in counts if fam.lookup(c) is None}),
    }


# ---------------------------------------------------------------- the audit


@dataclass
class AuditResult:
    report: dict
    items: list[AuditItem]
    out_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def html(self) -> Path | None:
        return Path(self.files["html"]) if "html" in self.files else None


def audit(
    source: str | Path | Sequence | None = None,
    out_dir: str | Path | None = None,
    *,
    items: list[AuditItem] | None = None,
    dataset: str | None = None,
    engine: str = "faster-whisper",
    model: str = "base",
    threads: int = 2,
    labels_from_folders: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = DEFAULT_SEED,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    cache: str | Path | None = "default",
    figures: bool = True,
    progress: Progress | None = None,
) -> AuditResult:
    """Audit a catalog, a folder of media, or given items; write the reports to ``out_dir``
    (nothing is written without it). ``cache=None`` disables the language-ID cache."""
    t0 = time.perf_counter()
    if not 0.0 <= threshold <= 1.0:
        raise AuditError(f"the low-confidence threshold (--min-confidence) must be within [0, 1], got {threshold}")
    if n_bootstrap < 1:
        raise AuditError(f"the number of bootstrap resamples must be positive, got {n_bootstrap}")
    build: dict = {}
    if items is not None:
        kind, where = "items", str(source or "")
    elif source is None:
        raise AuditError("nothing to audit: give a catalog.duckdb, a folder of audio/video files, or items")
    else:
        p = Path(source)
        if not p.exists():
            raise AuditError(f"{p}: not found (give a catalog.duckdb or a folder of audio/video files)")
        if is_catalog(p):
            kind, where = "catalog", str((p if p.is_file() else p / CATALOG_NAME).resolve())
            items, build = items_from_catalog(p)
            if not items:
                raise AuditError(f"{where}: the catalog has no accepted clips to audit")
        elif p.is_dir():
            kind, where = "folder", str(p.resolve())
            items = items_from_folder(p, labels_from_folders)
        elif p.suffix.lower() in MEDIA_SUFFIXES:
            kind, where = "files", str(p.resolve())
            items = [AuditItem(id=p.stem, path=str(p), dataset=p.parent.name)]
        else:
            raise AuditError(f"{p}: neither a catalog.duckdb nor a folder nor an audio/video file")
    if dataset is None:
        names = {it.dataset for it in items if it.dataset}
        dataset = names.pop() if len(names) == 1 else (Path(where).parent.name if kind == "catalog" else
                                                     Path(where).name or "dataset")
    lid_stats = resolve_languages(items, engine=engine, model=model, threads=threads, cache=cache, progress=progress)
    numbers = summarise(items, threshold=threshold, seed=seed, n_bootstrap=n_bootstrap)
    paper = match_paper(dataset)
    by_dataset = []
    names = sorted({it.dataset or "" for it in items})
    if len(names) > 1:  # e.g. a catalog built from HDTF and VoxCeleb: one Table 6 row each
        for name in names:
            part = summarise([it for it in items if (it.dataset or "") == name], threshold, seed, n_bootstrap)
            by_dataset.append(compare_row({"dataset": name or "(none)", "paper": match_paper(name),
                                           "source": {"path": name}, "settings": {
                                               "threshold": threshold, "seed": seed, "engine": engine, "model": model},
                                           **part}))
    origins = dict(sorted(Counter(it.origin or "none" for it in items).items()))
    model_info = lid_model(engine, model)
    report = {
        "title": f"Language-bias audit: {dataset}",
        "dataset": dataset,
        "source": {"kind": kind, "path": where, "labels_from_folders": labels_from_folders, **build},
        "settings": {"engine": engine, "model": model, "model_file": model_info["file"],
                     "model_sha256": model_info["sha256"], "threshold": threshold, "seed": seed,
                     "bootstrap_resamples": n_bootstrap, "interval": "percentile bootstrap 95%, clips resampled",
                     "families_source": _families_source()},
        "language_sources": lid_stats | {"origins": origins},
        **numbers,
        "paper": paper,
        "by_dataset": by_dataset,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "talkbench_version": __version__,
    }
    result = AuditResult(report=report, items=items)
    if out_dir is not None:
        result.out_dir = Path(out_dir)
        result.files = write_reports(result, Path(out_dir), figures=figures)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    if result.files.get("json"):
        Path(result.files["json"]).write_text(json.dumps(_json_report(result), indent=2, default=str))
    return result


def lid_model(engine: str, model: str) -> dict:
    """The language-ID model as a report names it: engine, model, and its weights file with
    sha256 when that file is on this machine (None otherwise; nothing is downloaded)."""
    try:
        from talkbench.datasets.language import model_file

        path = model_file(model, engine)
    except ImportError:  # language ID not installed: a catalog's tags can still be audited
        path = None
    from talkbench.weights import file_sha256

    return {"engine": engine, "model": model, "file": str(path) if path else None,
            "sha256": file_sha256(path) if path else None}


def _families_source() -> str:
    line = next((x for x in fam.source().splitlines() if x.startswith("Source:")), "families.csv")
    return line.removeprefix("Source:").strip()


def _json_report(result: AuditResult) -> dict:
    return result.report | {"clips_detail": [asdict(it) for it in result.items], "files": result.files}


def audit_sample_corpus(out_dir: str | Path, engine: str = "faster-whisper", model: str = "base",
                        cache: str | Path | None = "default") -> Path:
    """Audit the embedded sample corpus (labels from samples.json) into ``out_dir``; returns
    the path of ``report.html`` (``report.md`` and the rest are beside it). For ``talkbench demo``."""
    from talkbench.samples import DATASET, load_sample_corpus

    res = audit(DATASET, out_dir, items=items_from_clips(load_sample_corpus()), dataset=DATASET,
                engine=engine, model=model, cache=cache)
    return res.html


# ---------------------------------------------------------------- figures


def fmt_pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def fmt_ci(lo_hi: Sequence | None) -> str:
    if not lo_hi or lo_hi[0] is None:
        return "–"
    return f"{100 * lo_hi[0]:.1f}–{100 * lo_hi[1]:.1f}%"


def _points(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.2f}"


def fmt_hours(h: float | None) -> str:
    return "–" if h is None else (f"{h:.2f}" if h >= 10 else f"{h:.3f}")


def _pyplot():
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


def figure_languages(report: dict, path: Path) -> Path:
    """The paper's Figure 5 style: share of clips per language, Indo-European bars marked."""
    from matplotlib.patches import Patch

    plt = _pyplot()

    rows = report["languages"]
    top = rows[:TOP_LANGUAGES_IN_FIGURE]
    rest = rows[TOP_LANGUAGES_IN_FIGURE:]
    labels = [f"{r['name']} ({r['code']})" for r in top]
    values = [100 * (r["share_clips"] or 0) for r in top]
    colours = [IE_COLOUR if r["indo_european"] else OTHER_COLOUR for r in top]
    hatches = ["" if r["indo_european"] else "//" for r in top]
    if rest:
        labels.append(f"{len(rest)} other languages")
        values.append(100 * sum(r["share_clips"] or 0 for r in rest))
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
    ie = report["indo_european"]
    t = report["totals"]
    ax.set_title(f"Language distribution — {report['dataset']}\n{t['clips']} clips, {fmt_hours(t['hours'])} h; "
                 f"Indo-European {fmt_pct(ie['clips'])} of clips (95% CI {fmt_ci(ie['clips_ci95'])})", fontsize=10)
    ax.legend(handles=[Patch(color=IE_COLOUR, label="Indo-European"),
                       Patch(facecolor=OTHER_COLOUR, hatch="//", edgecolor="white", label="other families")],
              loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)  # beside the bars, clear of them
    return _save(fig, ax, path)


def figure_families(report: dict, path: Path) -> Path:
    """Family shares by clips and by hours, Indo-European marked."""
    plt = _pyplot()

    rows = report["families"]
    labels = [r["family"] for r in rows]
    clips = [100 * (r["share_clips"] or 0) for r in rows]
    hours = [100 * (r["share_hours"] or 0) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.5 * max(len(rows), 2) + 1.5), dpi=110)
    y = np.arange(len(rows))[::-1]
    h = 0.38
    for i, r in enumerate(rows):
        c = IE_COLOUR if r["indo_european"] else OTHER_COLOUR
        ax.barh(y[i] + h / 2, clips[i], h, color=c, label="clips" if i == 0 else None)
        ax.barh(y[i] - h / 2, hours[i], h, color=c, alpha=0.45, label="hours" if i == 0 else None)
        ax.text(clips[i] + 0.5, y[i] + h / 2, f"{clips[i]:.1f}%", va="center", fontsize=8)
        ax.text(hours[i] + 0.5, y[i] - h / 2, f"{hours[i]:.1f}% h", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_xlim(0, max(clips + hours + [1]) * 1.18)
    ax.set_xlabel("share (%): solid = clips, light = hours; blue = Indo-European")
    ax.set_title(f"Language families (Glottolog) — {report['dataset']}", fontsize=10)
    return _save(fig, ax, path)


# ---------------------------------------------------------------- reports

Block = tuple  # ("p", text) | ("table", header, rows) | ("img", relative path, alt)


def _headline_rows(r: dict) -> list[list[str]]:
    ie = r["indo_european"]
    conf = ie["confident_only"]
    rows = [["ours (Whisper " + r["settings"]["model"] + ")", fmt_pct(ie["clips"]), fmt_ci(ie["clips_ci95"]),
             fmt_pct(ie["hours"]), fmt_ci(ie["hours_ci95"]), str(ie["n"])],
            [f"ours, confident clips only (p ≥ {r['settings']['threshold']:g})", fmt_pct(conf["clips"]), "",
             fmt_pct(conf["hours"]), "", str(conf["n"])]]
    if r.get("labels"):
        lab = r["labels"]["indo_european"]
        rows.append(["labels (same clips)", fmt_pct(lab["clips"]), "", fmt_pct(lab["hours"]), "", str(lab["n"])])
    if r.get("paper"):
        p = r["paper"]
        rows.append([f"paper: VQTalker {p['where']} ({p['kind']})", f"{p['indo_european_pct']:g}%", "", "", "", ""])
    return rows


def sections(r: dict) -> list[tuple[str, list[Block]]]:
    """The report as titled blocks, rendered to Markdown and HTML alike."""
    t, s = r["totals"], r["settings"]
    src = r["source"]
    ls = r["language_sources"]
    out: list[tuple[str, list[Block]]] = []
    intro = [
        ("p", f"Source: {src['kind']} `{src['path']}` — {t['items']} items, {t['clips']} with detected speech "
              f"({fmt_hours(t['hours'])} h), {t['no_speech']} without speech, {t['errors']} unreadable."),
        ("p", f"Language ID: {model_line(s)}; languages from the catalog {ls['catalog']}, "
              f"from the cache {ls['cache']}, newly identified {ls['lid']} ({ls['lid_seconds']:.1f} s). "
              f"Low confidence: top probability < {s['threshold']:g}. Interval: {s['interval']}, "
              f"{s['bootstrap_resamples']} resamples, seed {s['seed']}."),
        ("p", f"Families: {s['families_source']}"),
    ]
    if src.get("tags_from"):
        intro.append(("p", "The catalog's language tags came from " + ", ".join(
            f"{k} ({v} clips)" for k, v in src["tags_from"].items()) + "."))
    if src.get("rejected_at_language_stage"):
        ex = ", ".join(f"{k} {v}" for k, v in src["rejected_at_language_stage"].items())
        intro.append(("p", f"Not audited: clips the build rejected at its language stage ({ex}); "
                           f"the audit covers the accepted clips."))
    out.append(("", intro))
    head = ["", "Indo-European by clips", "95% CI", "by hours", "95% CI", "clips"]
    blocks: list[Block] = [("table", head, _headline_rows(r))]
    if r.get("paper"):
        diff = (r["indo_european"]["clips"] or 0) * 100 - r["paper"]["indo_european_pct"]
        blocks.append(("p", f"The paper reports {r['paper']['indo_european_pct']:g}% for {r['paper']['dataset']}; "
                            f"ours differs by {diff:+.2f} points (by clips)."))
    if r.get("by_dataset"):
        blocks += [("p", "By dataset (VQTalker Table 6 layout):"), ("table", COMPARE_HEAD, compare_table(r["by_dataset"]))]
    out.append(("Indo-European share", blocks))
    lang_rows = [[x["code"], x["name"], x["family"], x["branch"], "yes" if x["indo_european"] else "",
                  str(x["clips"]), fmt_pct(x["share_clips"]), fmt_hours(x["hours"]), fmt_pct(x["share_hours"]),
                  str(x["low_confidence"])] for x in r["languages"]]
    out.append(("Languages", [
        ("img", "figures/languages.png", "Language distribution (Indo-European marked)"),
        ("table", ["code", "language", "family", "branch", "Indo-European", "clips", "share", "hours", "share (h)",
                   "low conf."], lang_rows)]
        + ([("p", "Codes not in the families table (family 'unknown'): " + ", ".join(r["unknown_languages"]))]
           if r["unknown_languages"] else [])))
    fam_rows = [[x["family"], "yes" if x["indo_european"] else "", str(x["languages"]), str(x["clips"]),
                 fmt_pct(x["share_clips"]), fmt_hours(x["hours"]), fmt_pct(x["share_hours"])] for x in r["families"]]
    out.append(("Families", [("img", "figures/families.png", "Family shares by clips and hours"),
                             ("table", ["family", "Indo-European", "languages", "clips", "share", "hours",
                                        "share (h)"], fam_rows)]))
    labelled = [(key, name) for key, name in (("emotion", "emotions"), ("intensity", "intensities")) if r.get(name)]
    if labelled:
        blocks = [("p", "Over the audited clips that carry the label, with or without speech.")]
        for key, name in labelled:
            blocks.append(("table", [key, "clips", "share", "hours", "share (h)"],
                           [[str(x[key]), str(x["clips"]), fmt_pct(x["share_clips"]), fmt_hours(x["hours"]),
                             fmt_pct(x["share_hours"])] for x in r[name]]))
        out.append(("Emotions and intensities", blocks))
    ns = r["no_speech"]
    q: list[Block] = [("p", f"No speech: {ns['count']} of {t['items'] - t['errors']} readable items "
                            f"({fmt_pct(ns['share'])}); they are outside the shares above.")]
    if ns["clips"]:
        q += _listing(["no speech", "speech (s)"],
                      [[x["id"], "–" if x["speech_seconds"] is None else f"{x['speech_seconds']:.2f}"] for x in ns["clips"]])
    out.append(("No speech", q))
    out.append((f"Low confidence (p < {r['low_confidence']['threshold']:g})", _low_confidence_blocks(r)))
    lab = r.get("labels")
    if lab:
        m = lab["misses"]
        blocks = [("p", f"{lab['labelled']} items carry a known language. Language ID disagrees with "
                        f"{len(m)} of them ({fmt_pct(lab['miss_rate'])}); of these, {lab['ie_gained_by_misses']} move a clip "
                        f"into Indo-European and {lab['ie_lost_by_misses']} move one out of it, which accounts for "
                        f"{_points(lab['explained_difference_clips'])} "
                        f"percentage points of the difference between our share and the labels' share (by clips, same clips).")]
        if m:
            blocks += _listing(["item", "label", "detected", "p", "top 3", "same family", "crosses IE"],
                               [[x["id"], f"{x['label']} ({x['label_name']})",
                                 f"{x['detected']} ({x['detected_name']})" if x["detected"] else x["detected_name"],
                                 "–" if x["probability"] is None else f"{x['probability']:.3f}", _top3(x["top3"]),
                                 "yes" if x["same_family"] else "", "yes" if x["crosses_indo_european"] else ""]
                                for x in m])
        if lab["unknown_labels"]:
            blocks.append(("p", "Labels that are not language codes the families table knows: "
                                + ", ".join(lab["unknown_labels"]) + " (every item carrying one counts as a miss)."))
        label_rows = [[c, fam.name_of(c), fam.family_of(c), str(v)] for c, v in lab["counts"].items()]
        blocks.append(("table", ["label", "language", "family", "items"], label_rows))
        out.append(("Language-ID misses (known labels)", blocks))
    if r["errors"]:
        out.append(("Unreadable items", _listing(["item", "path", "problem"],
                                                 [[x["id"], x["path"] or "", x["error"]] for x in r["errors"]])))
    return out


def model_line(settings: dict) -> str:
    """'engine / model' and the weights file's sha256 when it was found."""
    line = f"{settings['engine']} / {settings['model']}"
    if settings.get("model_sha256"):
        return line + f" (`{Path(settings['model_file']).name}` sha256 {settings['model_sha256']})"
    return line + " (weights file not found on this machine: no sha256)"


def low_confidence_by_family(r: dict) -> str:
    """'Turkic 1 of 1 (100.0%), Indo-European 1 of 12 (8.3%)': the families with low-confidence clips."""
    rows = [f for f in r["low_confidence"]["by_family"] if f["low_confidence"]]
    return ", ".join(f"{f['family']} {f['low_confidence']} of {f['clips']} ({fmt_pct(f['share'])})" for f in rows)


def _low_confidence_blocks(r: dict) -> list[Block]:
    lc, t = r["low_confidence"], r["totals"]
    blocks: list[Block] = [("p", f"{lc['count']} of {t['clips']} clips ({fmt_pct(lc['share'])}) have a top language "
                                 f"probability under {lc['threshold']:g}, where Whisper's answer is often wrong "
                                 f"(docs/language-id.md). They stay in the shares above, and the share over confident "
                                 f"clips only is given beside them. Their share of each family:"),
                           ("table", ["family", "clips", "low confidence", "share of the family"],
                            [[f["family"], str(f["clips"]), str(f["low_confidence"]), fmt_pct(f["share"])]
                             for f in lc["by_family"]])]
    if lc["clips"]:
        blocks += _listing(["low confidence", "label", "language", "family", "p", "top 3"],
                           [[x["id"], x.get("label") or "", x["language"], x.get("family", ""),
                             "–" if x["probability"] is None else f"{x['probability']:.3f}", _top3(x["top3"])]
                            for x in lc["clips"]])
    return blocks


def _listing(head: list[str], rows: list[list]) -> list[Block]:
    """A table of at most LIST_LIMIT rows, and a line saying where the rest are."""
    blocks: list[Block] = [("table", head, rows[:LIST_LIMIT])]
    if len(rows) > LIST_LIMIT:
        blocks.append(("p", f"… and {len(rows) - LIST_LIMIT} more: all are in `report.json` and `clips.csv`."))
    return blocks


def _top3(top3) -> str:
    return ", ".join(f"{k} {float(p):.2f}" for k, p in (top3 or []))


def render_markdown(r: dict, secs: list[tuple[str, list[Block]]] | None = None) -> str:
    lines = [f"# {r['title']}", ""]
    for title, blocks in secs or sections(r):
        if title:
            lines += [f"## {title}", ""]
        for b in blocks:
            if b[0] == "p":
                lines += [b[1], ""]
            elif b[0] == "img":
                lines += [f"![{b[2]}]({b[1]})", ""]
            elif b[0] == "table":
                lines += [_md_table(b[1], b[2]), ""]
    lines.append(f"_talkbench {r['talkbench_version']}, {r['created']}_")
    return "\n".join(lines) + "\n"


def _md_cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _md_table(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


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


def render_html(r: dict, figures: dict[str, Path] | None = None,
                secs: list[tuple[str, list[Block]]] | None = None) -> str:
    """A self-contained page: inline CSS, figures embedded as base64 PNG, no scripts."""
    figures = figures or {}
    body = [f"<h1>{html.escape(r['title'])}</h1>"]
    for title, blocks in secs or sections(r):
        if title:
            body.append(f"<h2>{html.escape(title)}</h2>")
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
    body.append(f"<footer>talkbench {html.escape(r['talkbench_version'])}, {html.escape(r['created'])}</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{html.escape(r['title'])}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _write_csv(path: Path, head: list[str], rows: Iterable[Sequence]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        w.writerows(rows)
    return path


def write_reports(result: AuditResult, out_dir: Path, figures: bool = True) -> dict[str, str]:
    """report.md, report.html, report.json, clips.csv, language_shares.csv, family_shares.csv,
    low_confidence.csv and figures/*.png in ``out_dir``."""
    r = result.report
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    figs: dict[str, Path] = {}
    if figures and r["languages"]:
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
    _write_csv(out_dir / "clips.csv",
               ["id", "path", "duration_s", "label", "language", "probability", "family", "indo_european",
                "no_speech", "low_confidence", "speech_seconds", "language_from", "error"],
               [[it.id, it.path, it.duration, it.label or "", it.language or "", it.probability,
                 fam.family_of(it.language) if it.has_language else "", int(fam.is_indo_european(it.language))
                 if it.has_language else "", int(not it.has_language and it.error is None),
                 int(it.has_language and (it.probability or 0.0) < r["low_confidence"]["threshold"]),
                 it.speech_seconds, it.origin, it.error or ""] for it in result.items])
    _write_csv(out_dir / "language_shares.csv",
               ["code", "name", "family", "branch", "indo_european", "clips", "share_clips", "hours", "share_hours",
                "low_confidence"],
               [[x["code"], x["name"], x["family"], x["branch"], int(x["indo_european"]), x["clips"],
                 x["share_clips"], x["hours"], x["share_hours"], x["low_confidence"]] for x in r["languages"]])
    _write_csv(out_dir / "family_shares.csv",
               ["family", "indo_european", "languages", "clips", "share_clips", "hours", "share_hours",
                "low_confidence", "low_confidence_share"],
               [[x["family"], int(x["indo_european"]), x["languages"], x["clips"], x["share_clips"], x["hours"],
                 x["share_hours"], x["low_confidence"], x["low_confidence_share"]] for x in r["families"]])
    _write_csv(out_dir / "low_confidence.csv",
               ["id", "path", "label", "language", "family", "probability", "top3", "threshold"],
               [[x["id"], x["path"], x["label"] or "", x["language"], x["family"], x["probability"],
                 json.dumps(x["top3"]), r["low_confidence"]["threshold"]] for x in r["low_confidence"]["clips"]])
    files["csv_clips"] = str(out_dir / "clips.csv")
    files["csv_languages"] = str(out_dir / "language_shares.csv")
    files["csv_families"] = str(out_dir / "family_shares.csv")
    files["csv_low_confidence"] = str(out_dir / "low_confidence.csv")
    files["json"] = str(out_dir / "report.json")
    (out_dir / "report.json").write_text(json.dumps(_json_report(result) | {"files": files}, indent=2, default=str))
    return files


# ---------------------------------------------------------------- compare (Table 6 layout)


def load_report(path: str | Path) -> dict:
    """A report.json written by ``audit`` (the file or the folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuditError(f"{p}: no audit report here") from None
    except json.JSONDecodeError as exc:
        raise AuditError(f"{p}: not a JSON audit report ({exc})") from None
    if "indo_european" not in data or "totals" not in data:
        raise AuditError(f"{p}: JSON without the audit fields 'indo_european' and 'totals'; is it a talkbench audit report?")
    return data


def _is_report(p: Path) -> bool:
    return (p.is_file() and p.suffix == ".json") or (p.is_dir() and (p / "report.json").is_file()
                                                      and not (p / CATALOG_NAME).is_file())


COMPARE_HEAD = ["Dataset", "Indo-European (clips)", "95% CI", "Indo-European (hours)", "95% CI", "paper (Table 6)",
                "clips", "hours", "no speech", "low conf.", "language ID"]


def compare_row(r: dict) -> dict:
    ie, t = r["indo_european"], r["totals"]
    return {
        "dataset": r["dataset"], "indo_european_clips": ie["clips"], "clips_ci95": ie["clips_ci95"],
        "indo_european_hours": ie["hours"], "hours_ci95": ie["hours_ci95"],
        "paper_pct": r["paper"]["indo_european_pct"] if r.get("paper") else None,
        "paper_kind": r["paper"]["kind"] if r.get("paper") else None,
        "clips": t["clips"], "hours": t["hours"], "no_speech": t["no_speech"], "low_confidence": t["low_confidence"],
        "threshold": r["settings"]["threshold"], "engine": r["settings"]["engine"], "model": r["settings"]["model"],
        "seed": r["settings"]["seed"], "source": r["source"]["path"],
    }


def compare(sources: Sequence[str | Path], out_dir: str | Path | None = None, **audit_kwargs) -> dict:
    """Several datasets side by side in the layout of the paper's Table 6. Each source is an
    audit report (report.json or its folder) or something to audit (catalog or folder; its
    reports then go to ``out_dir/<name>/``)."""
    if len(sources) < 1:
        raise AuditError("--compare needs at least one source (two or more to compare)")
    reports = []
    for i, s in enumerate(sources):
        p = Path(s)
        if not p.exists():
            raise AuditError(f"{p}: not found (give audit reports, catalogs or folders of audio/video files)")
        if _is_report(p):
            reports.append(load_report(p))
        else:
            sub = Path(out_dir) / f"{i + 1:02d}-{_squash(p.resolve().name) or 'dataset'}" if out_dir else None
            reports.append(audit(p, sub, **audit_kwargs).report)
    rows = [compare_row(r) for r in reports]
    result = {"rows": rows, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "talkbench_version": __version__,
              "note": "Indo-European share of clips with detected speech; percentile bootstrap 95% intervals; "
                      "paper = VQTalker Table 6 (or the paper's text) when the dataset is one it measured."}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        table = compare_table(rows)
        md = ["# Indo-European share (VQTalker Table 6 layout)", "", _md_table(COMPARE_HEAD, table), "",
              result["note"], ""]
        (out / "compare.md").write_text("\n".join(md), encoding="utf-8")
        page = {"title": "Indo-European share (VQTalker Table 6 layout)", "talkbench_version": __version__,
                "created": result["created"]}
        secs = [("", [("table", COMPARE_HEAD, table), ("p", result["note"])])]
        (out / "compare.html").write_text(render_html(page, {}, secs), encoding="utf-8")
        _write_csv(out / "compare.csv", list(rows[0].keys()), [[json.dumps(v) if isinstance(v, list) else v
                                                                for v in r.values()] for r in rows])
        result["files"] = {k: str(out / f"compare.{k}") for k in ("md", "html", "csv", "json")}
        (out / "compare.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def compare_table(rows: list[dict]) -> list[list[str]]:
    return [[r["dataset"], fmt_pct(r["indo_european_clips"], 2), fmt_ci(r["clips_ci95"]), fmt_pct(r["indo_european_hours"], 2),
             fmt_ci(r["hours_ci95"]), "–" if r["paper_pct"] is None else f"{r['paper_pct']:g}%", str(r["clips"]),
             fmt_hours(r["hours"]), str(r["no_speech"]), str(r["low_confidence"]), f"{r['engine']}/{r['model']}"]
            for r in rows]
