"""Manifest parsers. Each source turns its official manifest (or, for MEAD, the download's
folder layout) into ``ClipSpec`` records: one per clip to build, with where to get the video,
which time range, and the manifest's face crop when it has one. ``select`` picks a
deterministic subset (``--limit``, ``--split``, ``--languages``).

The one list of sources is ``REGISTRY`` below, filled from the modules' ``SOURCE`` records.
The records they share live in ``sources.spec``; no source module imports this package."""

from __future__ import annotations

from pathlib import Path

from talkbench.datasets.sources import files, hdtf, mead, mnte, vfhq, voxceleb
from talkbench.datasets.sources.files import load_files
from talkbench.datasets.sources.spec import BuildRuleError, ClipSpec, ManifestError, Source, read_lines, select
from talkbench.errors import TalkbenchError
from talkbench.util import Registry

__all__ = ["REGISTRY", "SOURCES", "BuildRuleError", "ClipSpec", "ManifestError", "Source", "check_build_options",
           "get_source", "load_files", "load_source", "read_lines", "select"]

MODULES = (hdtf, voxceleb, vfhq, mnte, mead, files)  # the one list of sources, in the order the CLI lists them
REGISTRY: Registry[Source] = Registry("source", error=TalkbenchError)
for _module in MODULES:
    REGISTRY.register(_module.SOURCE.name, _module.SOURCE)
SOURCES = tuple(module.SOURCE.name for module in MODULES)

def get_source(name: str) -> Source:
    """The source called ``name`` (any case); an unknown name is a ``TalkbenchError`` listing them."""
    return REGISTRY.get(name.lower())


def load_source(source: str, manifest: str | Path | list, **kwargs) -> list[ClipSpec]:
    """Specs for a source by name: ``hdtf`` (a folder of the official txt files), ``voxceleb``
    (vox-metadata.csv or a folder of per-segment txt files), ``vfhq`` (a folder of meta files),
    ``mnte`` (our CSV/YAML manifest), ``mead`` (the root folder of a MEAD download, per-identity
    folders), ``files`` (local video files or a folder of them)."""
    return get_source(source).load(manifest, **kwargs)


def check_build_options(source: str, min_seconds: float | None = None, min_face_px: int | None = None,
                        check_language: bool | None = None) -> None:
    """Refuse build options below the source's own rules (``BuildRuleError``): MNTE's clips are
    at least 3 s long with a face of at least 512 px, in the language Whisper hears, whatever
    the command line asks."""
    get_source(source).check_build_options(min_seconds=min_seconds, min_face_px=min_face_px,
                                           check_language=check_language)
