"""The dataset catalog: ``DIR/catalog.duckdb``, one row per clip.

Only the coordinating process writes it (workers return rows), one transaction per row with
``INSERT OR REPLACE`` on the clip id, so re-runs never duplicate a clip and a kill -9 loses
at most the rows not yet committed (DuckDB replays its write-ahead log on the next open).
Clip files are renamed into place before their row is committed, so a committed 'accepted'
row always points at a complete file. Paths are relative to ``DIR``.

Records: ``CatalogRow`` is one row of the ``clips`` table (its fields are the columns, in
order, with their DuckDB types); ``BuildSummary`` is what a build returns and ``talkbench data
build/status --json`` print. Both have ``to_dict``/``to_json``/``from_dict``/``from_json``;
docs/datasets/build.md describes their JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import duckdb

from talkbench.clip import Clip
from talkbench.datasets import families
from talkbench.datasets.stages import REASONS, RETRIED, STAGES
from talkbench.errors import TalkbenchError

CATALOG_NAME = "catalog.duckdb"


class CatalogError(TalkbenchError):
    """A catalog that cannot be opened, or a record that does not fit it."""


def _column(sql: str) -> Any:
    return field(default=None, metadata={"sql": sql})


@dataclass
class CatalogRow:
    """One clip's row. JSON-valued columns (``meta``, ``manifest_crop``, ``crop_box``,
    ``language_top3``, ``tool_versions``, ``timings``) hold their JSON text, as stored."""

    clip_id: str = field(metadata={"sql": "VARCHAR PRIMARY KEY"})
    dataset: str | None = _column("VARCHAR")
    source: str | None = _column("VARCHAR")
    range_start: float | None = _column("DOUBLE")
    range_end: float | None = _column("DOUBLE")
    split: str | None = _column("VARCHAR")
    person: str | None = _column("VARCHAR")
    emotion: str | None = _column("VARCHAR")  # MEAD: angry, ..., surprised (None without emotion labels)
    intensity: int | None = _column("INTEGER")  # MEAD: the emotion's level, 1-3
    expected_language: str | None = _column("VARCHAR")
    manifest_crop: str | None = _column("VARCHAR")
    meta: str | None = _column("VARCHAR")
    status: str | None = _column("VARCHAR")  # accepted | rejected | failed
    stage: str | None = _column("VARCHAR")  # the stage it stopped at, or 'done'
    reason: str | None = _column("VARCHAR")
    error: str | None = _column("VARCHAR")
    raw_path: str | None = _column("VARCHAR")
    path: str | None = _column("VARCHAR")
    source_width: int | None = _column("INTEGER")
    source_height: int | None = _column("INTEGER")
    source_fps: float | None = _column("DOUBLE")
    clip_start: float | None = _column("DOUBLE")
    clip_end: float | None = _column("DOUBLE")
    duration: float | None = _column("DOUBLE")
    width: int | None = _column("INTEGER")
    height: int | None = _column("INTEGER")
    fps: float | None = _column("DOUBLE")
    frames: int | None = _column("INTEGER")
    face_px: float | None = _column("DOUBLE")
    crop_px: int | None = _column("INTEGER")
    crop_box: str | None = _column("VARCHAR")
    crop_method: str | None = _column("VARCHAR")
    face_frames: str | None = _column("VARCHAR")
    multi_face_frames: int | None = _column("INTEGER")
    min_face_px: int | None = _column("INTEGER")
    min_seconds: float | None = _column("DOUBLE")
    language: str | None = _column("VARCHAR")
    language_prob: float | None = _column("DOUBLE")
    language_top3: str | None = _column("VARCHAR")
    speech_seconds: float | None = _column("DOUBLE")
    lid_engine: str | None = _column("VARCHAR")
    lid_model: str | None = _column("VARCHAR")
    tool_versions: str | None = _column("VARCHAR")
    timings: str | None = _column("VARCHAR")
    started_at: str | None = _column("VARCHAR")
    finished_at: str | None = _column("VARCHAR")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CatalogRow:
        """A row from column -> value (a stage's result, a DuckDB row, ``to_dict``'s output);
        columns left out are None, a key that is no column is an error."""
        unknown = sorted(set(data) - set(COLUMNS))
        if unknown:
            raise CatalogError(f"catalog row {data.get('clip_id', '?')!r}: unknown column(s) {', '.join(unknown)}")
        if not data.get("clip_id"):
            raise CatalogError(f"catalog row {dict(data)!r}: no clip_id")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> CatalogRow:
        return cls.from_dict(json.loads(text))

    def to_dict(self) -> dict[str, Any]:
        """Column -> value, every column, in the table's order."""
        return {name: getattr(self, name) for name in COLUMNS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    @property
    def splits(self) -> set[str]:
        """The row's split and the further splits its manifest listed (``meta.splits``: MEAD's
        overlapping, versioned splits)."""
        names = {self.split} if self.split else set()
        try:
            names.update(json.loads(self.meta or "{}").get("splits", []))
        except (ValueError, AttributeError):
            pass
        return names

    def to_clip(self, root: str | Path) -> Clip:
        """This accepted row as a ``Clip`` of the catalog in ``root``: the clip file's absolute
        path; the manifest's language (the detected one when the manifest has none) and its
        family from the families table; provenance names the catalog."""
        catalog = Path(root) / CATALOG_NAME
        if not self.path:
            raise CatalogError(f"{catalog}: clip {self.clip_id} has no clip file (status {self.status}, "
                               f"reason {self.reason}); only accepted clips are clips")
        code = self.expected_language or self.language or ""
        known = families.lookup(code)
        return Clip(id=self.clip_id, dataset=self.dataset or "",
                    language=(known.iso639_1 or known.code) if known else code,
                    duration=float(self.duration or 0.0), video=(Path(root) / self.path).resolve(),
                    family=known.family if known else "", emotion=self.emotion,
                    provenance={"catalog": str(catalog)})


COLUMNS = {f.name: f.metadata["sql"] for f in fields(CatalogRow)}  # column -> DuckDB type, in table order
VOLATILE = ("timings", "started_at", "finished_at")  # differ between two identical runs
ADDED_LATER = ("emotion", "intensity")  # catalogs built before these columns get them on open


class Catalog:
    def __init__(self, root: str | Path, read_only: bool = False):
        self.root = Path(root)
        self.path = self.root / CATALOG_NAME
        if read_only:
            if not self.path.is_file():
                raise CatalogError(f"{self.path}: no catalog here; build one with 'talkbench data build'")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            raise CatalogError(f"{self.path}: cannot open the catalog ({exc}); is another build running?") from None
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

    def upsert(self, row: CatalogRow | Mapping[str, Any]) -> None:
        """Insert or replace one clip's row (a mapping is read with ``CatalogRow.from_dict``)."""
        if not isinstance(row, CatalogRow):
            row = CatalogRow.from_dict(row)
        values = list(row.to_dict().values())
        placeholders = ", ".join("?" for _ in COLUMNS)
        quoted = ", ".join(f'"{k}"' for k in COLUMNS)
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

    def records(self) -> list[CatalogRow]:
        """Every row, in clip-id order. Columns a later talkbench added are left out, so this
        one still reads that catalog (a write would refuse them)."""
        cur = self.con.execute("SELECT * FROM clips ORDER BY clip_id")
        names = [d[0] for d in cur.description]
        return [CatalogRow.from_dict({k: v for k, v in zip(names, r) if k in COLUMNS}) for r in cur.fetchall()]

    def rows(self, volatile: bool = True) -> list[dict]:
        """``records()`` as column -> value dicts; ``volatile=False`` leaves out the columns that
        differ between two identical runs (to compare catalogs)."""
        out = [r.to_dict() for r in self.records()]
        if not volatile:
            for r in out:
                for k in VOLATILE:
                    del r[k]
        return out

    def clips(self) -> list[Clip]:
        """The accepted clips as ``Clip`` records (absolute paths), in clip-id order."""
        return [r.to_clip(self.root) for r in self.records() if r.accepted]

    def summary(self) -> BuildSummary:
        return summarise(self.records())


# ---------------------------------------------------------------- the build summary


@dataclass
class StageCount:
    """Clips that reached ``stage``, went past it, and stopped in it rejected or failed."""

    stage: str
    entered: int
    passed: int
    rejected: int
    failed: int


@dataclass
class ReasonCount:
    count: int
    stage: str  # the stage the reason belongs to ('' for 'error', which any stage can give)
    meaning: str


@dataclass
class BuildSummary:
    """Counts per outcome, per stage and per reason, and the accepted clips per detected
    language; the optional fields are set by whoever makes the summary (a build: ``catalog``,
    ``skipped``, ``engine``, ``min_face_px``, and for MNTE ``mnte``; ``open_summary``: ``meta``
    and ``catalog``) and left out of the JSON when unset."""

    clips: int
    accepted: int
    rejected: int
    failed: int
    stages: list[StageCount]
    reasons: dict[str, ReasonCount]  # code -> count, most frequent first
    languages: dict[str, int]  # detected language -> accepted clips, sorted by code
    mnte: dict[str, dict] | None = None  # MNTE language -> {accepted: [ids], missing: n, rejected: {id: reason}}
    meta: dict | None = None  # the catalog's meta table: source, manifest, params
    catalog: str | None = None  # the catalog file
    skipped: int | None = None  # clips already final before this run
    engine: str | None = None
    min_face_px: int | None = None

    _OPTIONAL = ("mnte", "meta", "catalog", "skipped", "engine", "min_face_px")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "clips": self.clips, "accepted": self.accepted, "rejected": self.rejected, "failed": self.failed,
            "stages": [vars(s).copy() for s in self.stages],
            "reasons": {code: vars(r).copy() for code, r in self.reasons.items()},
            "languages": dict(self.languages),
        }
        out.update({k: getattr(self, k) for k in self._OPTIONAL if getattr(self, k) is not None})
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuildSummary:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CatalogError(f"build summary: unknown key(s) {', '.join(unknown)}")
        try:
            values = dict(data)
            values["stages"] = [StageCount(**s) for s in data["stages"]]
            values["reasons"] = {code: ReasonCount(**r) for code, r in data["reasons"].items()}
            return cls(**values)
        except (KeyError, TypeError) as exc:
            raise CatalogError(f"build summary: not a summary ({type(exc).__name__}: {exc})") from None

    @classmethod
    def from_json(cls, text: str) -> BuildSummary:
        return cls.from_dict(json.loads(text))


def summarise(rows: list[CatalogRow]) -> BuildSummary:
    """Counts per stage (entered / passed / rejected / failed) and per reason."""
    order = {s: i for i, s in enumerate(STAGES)}
    stages = []
    for i, name in enumerate(STAGES):
        entered = [r for r in rows if r.stage == "done" or order.get(r.stage, -1) >= i]
        stopped = [r for r in entered if r.stage == name]
        stages.append(StageCount(stage=name, entered=len(entered), passed=len(entered) - len(stopped),
                                 rejected=sum(r.status == "rejected" for r in stopped),
                                 failed=sum(r.status == "failed" for r in stopped)))
    reasons: dict[str, int] = {}
    for r in rows:
        if r.reason:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
    languages: dict[str, int] = {}
    for r in rows:
        if r.accepted and r.language:
            languages[r.language] = languages.get(r.language, 0) + 1
    return BuildSummary(
        clips=len(rows),
        accepted=sum(r.status == "accepted" for r in rows),
        rejected=sum(r.status == "rejected" for r in rows),
        failed=sum(r.status == "failed" for r in rows),
        stages=stages,
        reasons={k: ReasonCount(count=v, stage=REASONS.get(k, ("", ""))[0], meaning=REASONS.get(k, ("", ""))[1])
                 for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))},
        languages=dict(sorted(languages.items())),
    )


def open_summary(root: str | Path) -> BuildSummary:
    """The summary of an existing catalog (read-only)."""
    with Catalog(root, read_only=True) as cat:
        s = cat.summary()
        s.meta = cat.meta()
        s.catalog = str(cat.path)
        return s
