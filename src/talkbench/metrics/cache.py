"""The persistent analysis cache: face tracks, identity embeddings, feature rows and finished
clip results, on disk, shared by every process, run and method on this machine.

An entry is one ``.npz`` file named by the sha256 of its key, a JSON object that holds
everything the content depends on: the input's content sha256 (never its path), the model
files' sha256 and the protocol fields used. The key is stored inside the entry and compared on
read, so a file can only ever be returned for exactly the key it was made for.

Writers write a temporary file in the entry's folder and ``os.replace`` it into place
(``talkbench.util.atomic_path``), which is atomic: two processes writing one entry both write
the same content and the last rename wins; a reader sees a whole entry or none; a killed
writer leaves only a ``*.tmp`` file, which readers never look at and ``clear`` removes. An
entry that cannot be read is a miss.

Root: ``<cache root>/analysis`` (``talkbench.util.cache_dir``: ``$TALKBENCH_CACHE_DIR``, else
the user cache folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkbench import util, weights

KINDS = ("faces", "identity", "features", "clips")
_KEY = "__key__"


def cache_root() -> Path:
    return util.cache_dir("analysis")


def content_sha256(source: str | Path | np.ndarray) -> str:
    """sha256 of a file's bytes (hashed once per path, size and mtime), or of an array's
    shape, dtype and bytes."""
    if isinstance(source, np.ndarray):
        digest = hashlib.sha256(f"{source.shape}{source.dtype.str}".encode())
        digest.update(np.ascontiguousarray(source).data)
        return digest.hexdigest()
    return weights.file_sha256(Path(source))


def key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


def entry_path(kind: str, key: dict) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; one of {', '.join(KINDS)}")
    name = hashlib.sha256(key_text(key).encode()).hexdigest()
    return cache_root() / kind / name[:2] / f"{name}.npz"


def load(kind: str, key: dict) -> dict[str, np.ndarray] | None:
    """The arrays stored under ``key``, or None (missing, unreadable, or another key)."""
    # None also for an entry damaged on disk (not by us: writes are atomic); it is recomputed and replaced
    arrays = util.load_arrays(entry_path(kind, key))
    if arrays is None or _KEY not in arrays or str(arrays.pop(_KEY)) != key_text(key):
        return None
    return arrays


def store(kind: str, key: dict, arrays: dict[str, np.ndarray]) -> None:
    with util.atomic_path(entry_path(kind, key), suffix=".tmp") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{_KEY: np.array(key_text(key))}, **arrays)
            fh.flush()
            os.fsync(fh.fileno())


def load_json(kind: str, key: dict) -> tuple[dict, dict[str, np.ndarray]] | None:
    """An entry holding a JSON record (under ``record``) and arrays."""
    arrays = load(kind, key)
    if arrays is None or "record" not in arrays:
        return None
    return json.loads(str(arrays.pop("record"))), arrays


def store_json(kind: str, key: dict, record: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
    store(kind, key, {"record": np.array(json.dumps(record)), **(arrays or {})})


@dataclass(frozen=True)
class KindInfo:
    kind: str
    entries: int
    bytes: int
    partial: int  # temporary files of writers that were killed


def info() -> list[KindInfo]:
    rows = []
    for kind in KINDS:
        folder = cache_root() / kind
        entries = list(folder.glob("*/*.npz")) if folder.is_dir() else []
        partial = list(folder.glob("*/*.tmp")) if folder.is_dir() else []
        size = sum(_size(p) for p in entries + partial)
        rows.append(KindInfo(kind, len(entries), size, len(partial)))
    return rows


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # removed by a concurrent clear
        return 0


def clear(kinds: tuple[str, ...] = KINDS) -> int:
    """Remove the given kinds' entries; returns the bytes freed."""
    freed = 0
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown cache kind {kind!r}; one of {', '.join(KINDS)}")
        folder = cache_root() / kind
        if folder.is_dir():
            freed += sum(_size(p) for p in folder.glob("*/*"))
            shutil.rmtree(folder, ignore_errors=True)
    return freed
