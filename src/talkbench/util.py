"""What every layer repeats, written once: cache roots and their environment variables, atomic
writes, sha256 of files, per-clip array files, Markdown tables, a registry that rejects
duplicates, and the progress-callback type. A foundation module: it imports nothing from
talkbench.

Environment variables (also in the README):

========================== =====================================================================
``TALKBENCH_CACHE_DIR``     root of the computed caches (default: the user cache dir, ``talkbench``)
``TALKBENCH_WEIGHTS_DIR``   model weights (default: ``<user cache dir>/talkbench/weights``)
``TALKBENCH_WHISPER_DIR``   Whisper model files (default: ``<user cache dir>/talkbench/whisper``)
``TALKBENCH_LEADERBOARD``   the leaderboard store (default: ``<user data dir>/talkbench/leaderboard.duckdb``)
``TALKBENCH_SHARED_DATA``   the shared real-media folder the tests and the sample corpus read
========================== =====================================================================
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Generic, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import platformdirs

CACHE_ENV = "TALKBENCH_CACHE_DIR"
WEIGHTS_ENV = "TALKBENCH_WEIGHTS_DIR"
WHISPER_ENV = "TALKBENCH_WHISPER_DIR"
LEADERBOARD_ENV = "TALKBENCH_LEADERBOARD"
SHARED_DATA_ENV = "TALKBENCH_SHARED_DATA"

# (done, total, label): total is None when unknown; label names the item the count is at
ProgressCallback = Callable[[int, "int | None", str], None]

T = TypeVar("T")


# ---------------------------------------------------------------- cache roots


def cache_root() -> Path:
    """``$TALKBENCH_CACHE_DIR``, else the user cache dir's ``talkbench`` folder."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path(platformdirs.user_cache_dir("talkbench"))


def cache_dir(kind: str) -> Path:
    """``<cache root>/<kind>``: a cache computed from inputs, safe to delete."""
    return cache_root() / kind


def model_dir(kind: str, env: str) -> Path:
    """``$env``, else ``<user cache dir>/talkbench/<kind>``: installed model files (weights,
    Whisper). They stay put when ``$TALKBENCH_CACHE_DIR`` moves the computed caches, so a
    fresh cache root (a test session's) never loses or re-installs them."""
    override = os.environ.get(env)
    return Path(override) if override else Path(platformdirs.user_cache_dir("talkbench")) / kind


def data_root() -> Path:
    """The user data dir's ``talkbench`` folder (what must outlive a cache clean-up)."""
    return Path(platformdirs.user_data_dir("talkbench"))


def shared_data() -> Path | None:
    """``$TALKBENCH_SHARED_DATA`` as a path, or None when unset."""
    value = os.environ.get(SHARED_DATA_ENV)
    return Path(value) if value else None


# ---------------------------------------------------------------- hashing


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- atomic writes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``target`` to write to; on success it replaces ``target`` in one
    step (readers see the old file or the new one, never part of one), on failure it is removed.
    ``suffix`` keeps an extension writers dispatch on (``.mp4``, ``.npz``)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; the file gets the usual mode
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(target: str | Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


# ---------------------------------------------------------------- per-clip array files


def save_arrays(target: str | Path, arrays: Mapping[str, np.ndarray], compressed: bool = False) -> None:
    """Write ``arrays`` as one ``.npz`` file, atomically."""
    save = np.savez_compressed if compressed else np.savez
    with atomic_path(target, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            save(fh, **arrays)


def load_arrays(path: str | Path) -> dict[str, np.ndarray] | None:
    """The arrays of an ``.npz`` file (never unpickling), or None when it is missing or unreadable
    (a reader then recomputes and rewrites it)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


# ---------------------------------------------------------------- tables


def markdown_table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table; ``|`` inside a cell is escaped."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- registry


class Registry(Generic[T]):
    """Name → item, where a name always means one item: registering a name twice is an error.
    ``kind`` names what is registered in the messages (``"metric"``, ``"face backend"``);
    ``error`` is the exception raised for a duplicate or an unknown name."""

    def __init__(self, kind: str, error: type[Exception] = ValueError) -> None:
        self.kind = kind
        self.error = error
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise self.error(f"{self.kind} {name!r} is already registered; pick another name")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "none"
            raise self.error(f"unknown {self.kind} {name!r}; registered: {known}")
        return self._items[name]

    def unregister(self, name: str) -> None:
        """Take ``name`` out again (a plugin's or a test's item); an unknown name is an error."""
        self.get(name)
        del self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())
