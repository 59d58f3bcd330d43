"""Languages for items without a tag: the language-ID cache first (``lid_cache``), then
Whisper language ID (``talkbench.datasets.language``)."""

from __future__ import annotations

from pathlib import Path

from talkbench import media, util
from talkbench.datasets import families as fam
from talkbench.datasets import language as lid
from talkbench.datasets.audit.lid_cache import LidCache, default_cache_path, lid_settings
from talkbench.datasets.audit.model import AuditError, AuditItem, LanguageSources
from talkbench.errors import MediaError
from talkbench.weights import file_sha256


def resolve_languages(items: list[AuditItem], engine: str = "faster-whisper", model: str = "base", threads: int = 2,
                      cache: str | Path | None = "default",
                      progress: util.ProgressCallback | None = None) -> LanguageSources:
    """Fill ``language`` (and duration) of items that lack it: cache first, then language ID.
    Returns how many came from the catalog, the cache, a fresh LID run, or failed."""
    cache_path = default_cache_path() if cache == "default" else cache
    store = LidCache(cache_path)
    settings = lid_settings(engine, model)
    todo = [it for it in items if not it.language or it.duration is None]
    stats = LanguageSources(catalog=sum(it.origin == "catalog" for it in items),
                            cache_path=str(cache_path) if cache_path else None)
    try:
        for i, it in enumerate(todo):
            if progress:
                progress(i, len(todo), it.id)
            if it.path is None:
                it.error, it.origin = "no file path", "error"
                stats.errors += 1
                continue
            key = LidCache.key(it.path, settings)
            hit = store.get(key)
            fresh = False
            if hit is None or (not it.language and not hit.get("lid")):
                try:
                    hit = run_lid(it.path, engine, model, threads, need_lid=not it.language)
                except MediaError as exc:
                    it.error, it.origin = exc.problem, "error"
                    stats.errors += 1
                    continue
                fresh = True
                stats.lid_seconds += hit.get("seconds", 0.0)
                store.put(key, hit)
            if it.duration is None:
                it.duration = hit.get("duration")
            if not it.language:
                it.language = fam.normalise(hit["language"]) if hit["language"] else None
                it.probability = hit["probability"]
                it.top3 = hit["top3"]
                it.speech_seconds = hit["speech_seconds"]
                it.no_speech = bool(hit["no_speech"])
                if fresh:
                    it.origin = "lid"
                    stats.lid += 1
                else:
                    it.origin = "cache"
                    stats.cache += 1
            elif fresh:
                stats.probed = (stats.probed or 0) + 1
        if progress:
            progress(len(todo), len(todo), "")
    finally:
        store.close()
    return stats


def run_lid(path: str, engine: str, model: str, threads: int, need_lid: bool = True) -> dict:
    """The duration of a file and, with ``need_lid``, its language: the value the cache stores."""
    info = media.probe(path)
    out = {"duration": float(info.duration), "lid": False}
    if not need_lid:
        return out
    if not info.has_audio:
        out.update(lid=True, language=None, probability=0.0, top3=[], speech_seconds=0.0, no_speech=True,
                   seconds=0.0, no_audio=True)
        return out
    try:
        res = lid.detect_file(path, engine=engine, model=model, threads=threads)
    except ImportError as exc:
        raise AuditError(f"{path}: has no language tag and language ID is not installed ({exc}); "
                         f"pip install 'talkbench[lid,lid-model]'") from None
    out.update(lid=True, language=res.language, probability=float(res.probability),
               top3=[[k, float(p)] for k, p in res.top3], speech_seconds=float(res.speech_seconds),
               no_speech=bool(res.no_speech), seconds=float(res.seconds))
    return out


def lid_model(engine: str, model: str) -> dict:
    """The language-ID model as a report names it: engine, model, and its weights file with
    sha256 when that file is on this machine (None otherwise; nothing is downloaded)."""
    try:
        path = lid.model_file(model, engine)
    except ImportError:  # language ID not installed: a catalog's tags can still be audited
        path = None
    return {"engine": engine, "model": model, "file": str(path) if path else None,
            "sha256": file_sha256(path) if path else None}
