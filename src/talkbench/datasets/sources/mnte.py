"""MNTE: the paper's multilingual test corpus. It is not public, so talkbench defines the
manifest and enforces the paper's rules when building it.

Manifest: CSV (header below) or YAML (a list of mappings, or ``{clips: [...]}``) with
``clip_id, language, source, start, end, note``: ``language`` ISO 639-1, ``source`` a URL or
a local path (relative to the manifest), ``start``/``end`` seconds or ``mm:ss`` (empty: whole
file), ``note`` free text for provenance and licence.

Rules (paper): languages Arabic, Swahili, Mandarin, Korean, Japanese, Turkish; 5 clips each;
each at least 3 s; Whisper confirms the language; face at least 512 px. The pipeline applies
the per-clip rules (``language_mismatch``, ``too_short``, ``face_too_small``), and refuses a
build whose ``min_seconds`` / ``min_face_px`` are below ``MIN_SECONDS`` / ``MIN_FACE_PX``
(``BuildRuleError``: the catalog would otherwise hold clips the paper's MNTE excludes);
``mnte_report`` checks the per-language quota on a built catalog and lists what is missing.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import yaml

from talkbench.datasets.sources.spec import ClipSpec, ManifestError, Source

if TYPE_CHECKING:  # the catalog imports the stages, which import the sources
    from talkbench.datasets.catalog import CatalogRow

MNTE_LANGUAGES = ("ar", "sw", "zh", "ko", "ja", "tr")
CLIPS_PER_LANGUAGE = 5
MIN_SECONDS = 3.0
MIN_FACE_PX = 512
COLUMNS = ("clip_id", "language", "source", "start", "end", "note")


def _time(value, path: Path, n: int) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    try:
        if ":" in text:
            mm, ss = text.rsplit(":", 1)
            return int(mm) * 60 + float(ss)
        return float(text)
    except ValueError:
        raise ManifestError(path, f"bad time {text!r} (seconds or mm:ss)", n) from None


def _records(path: Path) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise ManifestError(path, "file not found")
    if path.suffix.lower() in (".yaml", ".yml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        if isinstance(data, dict):
            data = data.get("clips")
        if not isinstance(data, list):
            raise ManifestError(path, "YAML must be a list of clips or {clips: [...]}")
        return [(i + 1, dict(r)) for i, r in enumerate(data)]
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS[:3] if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(path, f"missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}", 1)
        return [(n, r) for n, r in enumerate(reader, 2) if any((v or "").strip() for v in r.values())]


def load_mnte(path: Path, languages: tuple[str, ...] | None = MNTE_LANGUAGES) -> list[ClipSpec]:
    path = Path(path)
    specs, seen = [], set()
    for n, r in _records(path):
        cid, lang, src = (str(r.get(k) or "").strip() for k in ("clip_id", "language", "source"))
        if not cid or not lang or not src:
            raise ManifestError(path, "clip_id, language and source are required", n)
        if len(lang) != 2 or not lang.isalpha():
            raise ManifestError(path, f"language {lang!r} is not an ISO 639-1 code", n)
        if languages and lang not in languages:
            raise ManifestError(path, f"language {lang!r} is not an MNTE language ({', '.join(languages)})", n)
        if cid in seen:
            raise ManifestError(path, f"duplicate clip_id {cid!r}", n)
        seen.add(cid)
        if "://" not in src:  # a missing local file is the clip's source_missing, retried on re-run
            src = str((path.parent / src).resolve())
        start, end = _time(r.get("start"), path, n), _time(r.get("end"), path, n)
        specs.append(
            ClipSpec(
                clip_id=cid,
                dataset="mnte",
                source=src,
                start=start or 0.0,
                end=end,
                language=lang,
                meta={"note": str(r.get("note") or "")},
            )
        )
    return specs


def mnte_report(rows: Sequence[CatalogRow], per_language: int = CLIPS_PER_LANGUAGE) -> dict:
    """From catalog rows: accepted clips per MNTE language, how many are missing, and every
    rejected candidate with its reason, so a curator knows what to fill."""
    report = {}
    for lang in MNTE_LANGUAGES:
        mine = [r for r in rows if r.expected_language == lang]
        ok = [r.clip_id for r in mine if r.accepted]
        report[lang] = {
            "accepted": ok,
            "missing": max(0, per_language - len(ok)),
            "rejected": {r.clip_id: r.reason for r in mine if not r.accepted},
        }
    return report


SOURCE = Source("mnte", load_mnte, min_seconds=MIN_SECONDS, min_face_px=MIN_FACE_PX, confirms_language=True,
                rule=f"the paper's MNTE: clips of at least {MIN_SECONDS:g} s with a face of at least {MIN_FACE_PX} px, "
                     "in the language Whisper hears")
