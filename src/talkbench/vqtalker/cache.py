"""The VQTalker cache: where its per-clip files (speech features, controls, stage-1 targets,
eye/mouth regions of sources that are not built datasets) live, and the key that names a clip's
folder there. Every module that caches per clip goes through these, so a clip has one folder.

``default_cache_dir()`` is ``$TALKBENCH_CACHE_DIR/vqtalker``, else the user cache dir's
``talkbench/vqtalker`` (``talkbench.util.cache_dir``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from talkbench import util

KIND = "vqtalker"


def default_cache_dir() -> Path:
    return util.cache_dir(KIND)


def clip_key(path: str | Path) -> str:
    """A clip file's cache key: its resolved path, size and modification time (a rewritten
    file gets a new key, so nothing computed from the old one is read back)."""
    st = Path(path).stat()
    return hashlib.sha1(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def clip_cache_dir(path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The folder of one clip's cached files: ``<cache_dir or default_cache_dir()>/<clip_key>``."""
    return (Path(cache_dir) if cache_dir else default_cache_dir()) / clip_key(path)
