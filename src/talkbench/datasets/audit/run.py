"""The audit end to end: items from the source, their languages, the numbers, the typed
report and its files; and several audits side by side (``compare``)."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from talkbench import __version__, util
from talkbench.datasets import families as fam
from talkbench.datasets.audit.compute import (DEFAULT_BOOTSTRAP, DEFAULT_SEED, DEFAULT_THRESHOLD, INTERVAL,
                                              by_dataset_rows, compare_row, match_paper, squash, summarise)
from talkbench.datasets.audit.inputs import (MEDIA_SUFFIXES, is_catalog, items_from_catalog, items_from_clips,
                                             items_from_folder)
from talkbench.datasets.audit.lid import lid_model, resolve_languages
from talkbench.datasets.audit.model import (AuditError, AuditItem, AuditReport, AuditResult, CatalogBuild,
                                            CompareResult, Settings, Source)
from talkbench.datasets.audit.render import render_json, write_compare, write_reports
from talkbench.datasets.catalog import CATALOG_NAME
from talkbench.samples import DATASET as SAMPLE_DATASET
from talkbench.samples import load_sample_corpus

COMPARE_NOTE = ("Indo-European share of clips with detected speech; percentile bootstrap 95% intervals; "
                "paper = VQTalker Table 6 (or the paper's text) when the dataset is one it measured.")


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
    progress: util.ProgressCallback | None = None,
) -> AuditResult:
    """Audit a catalog, a folder of media, or given items; write the reports to ``out_dir``
    (nothing is written without it). ``cache=None`` disables the language-ID cache."""
    t0 = time.perf_counter()
    if not 0.0 <= threshold <= 1.0:
        raise AuditError(f"the low-confidence threshold (--min-confidence) must be within [0, 1], got {threshold}")
    if n_bootstrap < 1:
        raise AuditError(f"the number of bootstrap resamples must be positive, got {n_bootstrap}")
    build: CatalogBuild | None = None
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
    sources = resolve_languages(items, engine=engine, model=model, threads=threads, cache=cache, progress=progress)
    sources.origins = dict(sorted(Counter(it.origin or "none" for it in items).items()))
    numbers = summarise(items, threshold=threshold, seed=seed, n_bootstrap=n_bootstrap)
    model_info = lid_model(engine, model)
    report = AuditReport(
        title=f"Language-bias audit: {dataset}",
        dataset=dataset,
        source=Source(kind=kind, path=where, labels_from_folders=labels_from_folders,
                      **(build.to_json() if build else {})),
        settings=Settings(engine=engine, model=model, model_file=model_info["file"],
                          model_sha256=model_info["sha256"], threshold=threshold, seed=seed,
                          bootstrap_resamples=n_bootstrap, interval=INTERVAL, families_source=_families_source()),
        language_sources=sources,
        totals=numbers.totals, indo_european=numbers.indo_european, languages=numbers.languages,
        families=numbers.families, unknown_languages=numbers.unknown_languages, no_speech=numbers.no_speech,
        low_confidence=numbers.low_confidence, errors=numbers.errors, labels=numbers.labels,
        emotions=numbers.emotions, intensities=numbers.intensities,
        paper=match_paper(dataset),
        by_dataset=by_dataset_rows(items, threshold, seed, n_bootstrap, engine, model),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        talkbench_version=__version__,
    )
    result = AuditResult(report=report, items=items)
    if out_dir is not None:
        result.out_dir = Path(out_dir)
        result.files = write_reports(result, Path(out_dir), figures=figures)
    report.seconds = round(time.perf_counter() - t0, 3)
    if result.files.get("json"):
        Path(result.files["json"]).write_text(render_json(result))
    return result


def _families_source() -> str:
    line = next((x for x in fam.source().splitlines() if x.startswith("Source:")), "families.csv")
    return line.removeprefix("Source:").strip()


def audit_sample_corpus(out_dir: str | Path, engine: str = "faster-whisper", model: str = "base",
                        cache: str | Path | None = "default") -> Path:
    """Audit the embedded sample corpus (labels from samples.json) into ``out_dir``; returns
    the path of ``report.html`` (``report.md`` and the rest are beside it). For ``talkbench demo``."""
    res = audit(SAMPLE_DATASET, out_dir, items=items_from_clips(load_sample_corpus()), dataset=SAMPLE_DATASET,
                engine=engine, model=model, cache=cache)
    return res.html


# ---------------------------------------------------------------- compare (Table 6 layout)


def load_report(path: str | Path) -> AuditReport:
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
    if not isinstance(data, dict) or "indo_european" not in data or "totals" not in data:
        raise AuditError(f"{p}: JSON without the audit fields 'indo_european' and 'totals'; is it a talkbench audit report?")
    try:
        return AuditReport.from_json(data)
    except (TypeError, KeyError, AttributeError) as exc:
        raise AuditError(f"{p}: an audit report this talkbench cannot read ({exc}); audit the dataset again") from None


def _is_report(p: Path) -> bool:
    return (p.is_file() and p.suffix == ".json") or (p.is_dir() and (p / "report.json").is_file()
                                                      and not (p / CATALOG_NAME).is_file())


def compare(sources: Sequence[str | Path], out_dir: str | Path | None = None, **audit_kwargs) -> CompareResult:
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
            sub = Path(out_dir) / f"{i + 1:02d}-{squash(p.resolve().name) or 'dataset'}" if out_dir else None
            reports.append(audit(p, sub, **audit_kwargs).report)
    result = CompareResult(rows=[compare_row(r) for r in reports],
                           created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           talkbench_version=__version__, note=COMPARE_NOTE)
    if out_dir is not None:
        write_compare(result, Path(out_dir))
    return result
