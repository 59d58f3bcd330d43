"""The language-ID cache of the audit: SQLite, one row per file and setting, keyed by the
file's path, size and mtime and every LID setting, so a second run does no language ID at all
and a changed file or setting is identified again."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from talkbench import util
from talkbench.datasets import language as lid
from talkbench.datasets.audit.model import AuditError

CACHE_FILE = "audit-lid.sqlite"


def default_cache_path() -> Path:
    """``$TALKBENCH_CACHE_DIR/audit-lid.sqlite``, else the same file in the user cache dir."""
    return util.cache_root() / CACHE_FILE


def lid_settings(engine: str, model: str) -> str:
    """Everything a cached language-ID result depends on besides the file."""
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
