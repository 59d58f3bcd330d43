"""The dataset catalog: ``DIR/catalog.duckdb``, one row per clip.

Only the coordinating process writes it (workers return rows), one transaction per row with
``INSERT OR REPLACE`` on the clip id, so re-runs never duplicate a clip and a kill -9 loses
at most the rows not yet committed (DuckDB replays its write-ahead log on the next open).
Clip files are renamed into place before their row is committed, so a committed 'accepted'
row always points at a complete file. Paths are relative to ``DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path

from talkbench.datasets.stages import REASONS, RETRIED, STAGES
from talkbench.errors import TalkbenchError

CATALOG_NAME = "catalog.duckdb"

COLUMNS = {
    "clip_id": "VARCHAR PRIMARY KEY",
    "dataset": "VARCHAR",
    "source": "VARCHAR",
    "range_start": "DOUBLE",
    "range_end": "DOUBLE",
    "split": "VARCHAR",
    "person": "VARCHAR",
    "emotion": "VARCHAR",  # MEAD: angry, ..., surprised (None for datasets without emotion labels)
    "intensity": "INTEGER",  # MEAD: the emotion's level, 1-3
    "expected_language": "VARCHAR",
    "manifest_crop": "VARCHAR",
    "meta": "VARCHAR",
    "status": "VARCHAR",  # accepted | rejected | failed
    "stage": "VARCHAR",  # the stage it stopped at, or 'done'
    "reason": "VARCHAR",
    "error": "VARCHAR",
    "raw_path": "VARCHAR",
    "path": "VARCHAR",
    "source_width": "INTEGER",
    "source_height": "INTEGER",
    "source_fps": "DOUBLE",
    "clip_start": "DOUBLE",
    "clip_end": "DOUBLE",
    "duration": "DOUBLE",
    "width": "INTEGER",
    "height": "INTEGER",
    "fps": "DOUBLE",
    "frames": "INTEGER",
    "face_px": "DOUBLE",
    "crop_px": "INTEGER",
    "crop_box": "VARCHAR",
    "crop_method": "VARCHAR",
    "face_frames": "VARCHAR",
    "multi_face_frames": "INTEGER",
    "min_face_px": "INTEGER",
    "min_seconds": "DOUBLE",
    "language": "VARCHAR",
    "language_prob": "DOUBLE",
    "language_top3": "VARCHAR",
    "speech_seconds": "DOUBLE",
    "lid_engine": "VARCHAR",
    "lid_model": "VARCHAR",
    "tool_versions": "VARCHAR",
    "timings": "VARCHAR",
    "started_at": "VARCHAR",
    "finished_at": "VARCHAR",
}
VOLATILE = ("timings", "started_at", "finished_at")  # differ between two identical runs
ADDED_LATER = ("emotion", "intensity")  # catalogs built before these columns get them on open


class Catalog:
    def __init__(self, root: str | Path, read_only: bool = False):
        self.root = Path(root)
        self.path = self.root / CATALOG_NAME
        import duckdb

        if read_only:
            if not self.path.is_file():
                raise TalkbenchError(f"{self.path}: no catalog here; build one with 'talkbench data build'")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            raise TalkbenchError(f"{self.path}: cannot open the catalog ({exc}); is another build running?") from None
        if not read_only:
            cols = ", ".join(f'"{k}" {v}' for k, v in COLUMNS.items())
            self.con.execute(f"CREATE TABLE IF NOT EXISTS clips ({cols})")
            for name in ADDED_LATER:
                self.con.execute(f'ALTER TABLE clips ADD COLUMN IF NOT EXISTS "{name}" {COLUMNS[name]}')
            self.con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")

    def close(self) -> None:
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_meta(self, key: str, value) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, json.dumps(value, sort_keys=True)])

    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self.con.execute("SELECT key, value FROM meta").fetchall()}

    def upsert(self, row: dict) -> None:
        names = list(COLUMNS)
        values = [row.get(k) for k in names]
        placeholders = ", ".join("?" for _ in names)
        quoted = ", ".join(f'"{k}"' for k in names)
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute(f"INSERT OR REPLACE INTO clips ({quoted}) VALUES ({placeholders})", values)
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def finished_ids(self) -> set[str]:
        """Clips with a final outcome (accepted or rejected); 'failed' ones are retried, and so
        are rows of a retried reason that older versions stored as 'rejected' (source_missing)."""
        retried = sorted(RETRIED)
        rows = self.con.execute(
            "SELECT clip_id FROM clips WHERE status IN ('accepted', 'rejected') "
            f"AND coalesce(reason, '') NOT IN ({', '.join('?' for _ in retried)})", retried).fetchall()
        return {r[0] for r in rows}

    def rows(self, volatile: bool = True) -> list[dict]:
        cur = self.con.execute("SELECT * FROM clips ORDER BY clip_id")
        names = [d[0] for d in cur.description]
        out = [dict(zip(names, r)) for r in cur.fetchall()]
        if not volatile:
            for r in out:
                for k in VOLATILE:
                    r.pop(k, None)
        return out

    def summary(self) -> dict:
        return summarise(self.rows())


def summarise(rows: list[dict]) -> dict:
    """Counts per stage (entered / passed / rejected / failed) and per reason."""
    order = {s: i for i, s in enumerate(STAGES)}
    stages = []
    for i, name in enumerate(STAGES):
        entered = [r for r in rows if r["stage"] == "done" or order.get(r["stage"], -1) >= i]
        stopped = [r for r in entered if r["stage"] == name]
        stages.append(
            {
                "stage": name,
                "entered": len(entered),
                "passed": len(entered) - len(stopped),
                "rejected": sum(r["status"] == "rejected" for r in stopped),
                "failed": sum(r["status"] == "failed" for r in stopped),
            }
        )
    reasons: dict[str, int] = {}
    for r in rows:
        if r["reason"]:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    languages: dict[str, int] = {}
    for r in rows:
        if r["status"] == "accepted" and r.get("language"):
            languages[r["language"]] = languages.get(r["language"], 0) + 1
    return {
        "clips": len(rows),
        "accepted": sum(r["status"] == "accepted" for r in rows),
        "rejected": sum(r["status"] == "rejected" for r in rows),
        "failed": sum(r["status"] == "failed" for r in rows),
        "stages": stages,
        "reasons": {k: {"count": v, "stage": REASONS.get(k, ("", ""))[0], "meaning": REASONS.get(k, ("", ""))[1]}
                    for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))},
        "languages": dict(sorted(languages.items())),
    }


def open_summary(root: str | Path) -> dict:
    """The summary of an existing catalog (read-only)."""
    with Catalog(root, read_only=True) as cat:
        s = cat.summary()
        s["meta"] = cat.meta()
        s["catalog"] = str(cat.path)
        return s
