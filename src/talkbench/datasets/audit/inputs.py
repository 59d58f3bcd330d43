"""What an audit counts: the accepted clips of a catalog (its language tags reused), every
audio/video file under a folder, or Clip records (the sample corpus)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from talkbench import media
from talkbench.datasets import families as fam
from talkbench.datasets.audit.model import AuditError, AuditItem, CatalogBuild
from talkbench.datasets.catalog import CATALOG_NAME, Catalog

MEDIA_SUFFIXES = media.AUDIO_SUFFIXES + media.VIDEO_SUFFIXES


def is_catalog(source: str | Path) -> bool:
    p = Path(source)
    return (p.is_file() and p.suffix == ".duckdb") or (p.is_dir() and (p / CATALOG_NAME).is_file())


def items_from_catalog(source: str | Path) -> tuple[list[AuditItem], CatalogBuild]:
    """The accepted clips of a catalog (its tags reused), and what the build excluded at the
    language stage (counted in the report, not audited)."""
    p = Path(source)
    root = p.parent if p.is_file() else p
    if p.is_file() and p.name != CATALOG_NAME:
        raise AuditError(f"{p}: a catalog must be named {CATALOG_NAME} (as 'talkbench data build' writes it)")
    with Catalog(root, read_only=True) as cat:
        rows = cat.records()
    items: list[AuditItem] = []
    excluded: dict[str, int] = {}
    tagged_by: dict[str, int] = {}
    for r in rows:
        if not r.accepted:
            if r.stage == "language" and r.reason:
                excluded[r.reason] = excluded.get(r.reason, 0) + 1
            continue
        duration = r.duration
        if duration is None and r.clip_end is not None and r.clip_start is not None:
            duration = float(r.clip_end) - float(r.clip_start)
        top3 = r.language_top3
        try:
            top3 = json.loads(top3) if isinstance(top3, str) else (top3 or [])
        except json.JSONDecodeError:
            top3 = []
        item = AuditItem(
            id=str(r.clip_id),
            path=str(root / r.path) if r.path else None,
            duration=float(duration) if duration is not None else None,
            label=r.expected_language or None,
            dataset=r.dataset,
            emotion=r.emotion,
            intensity=r.intensity,
        )
        if r.language:
            item.language = fam.normalise(r.language)
            item.probability = r.language_prob
            item.top3 = top3
            item.speech_seconds = r.speech_seconds
            item.origin = "catalog"
            by = f"{r.lid_engine or '?'} / {r.lid_model or '?'}"
            tagged_by[by] = tagged_by.get(by, 0) + 1
        items.append(item)
    return items, CatalogBuild(rejected_at_language_stage=excluded, catalog_rows=len(rows), tags_from=tagged_by)


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
