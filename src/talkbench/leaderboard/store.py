"""The leaderboard store: one DuckDB file holding benchmarks, clips, methods, runs and every
per-clip, per-metric value with the protocol it was measured under.

- **Versioned schema.** ``schema/NNN_name.sql`` are migrations, applied in order, each in one
  transaction with its row in ``schema_migrations``. A file written by a newer talkbench (a
  version this code does not know) is refused rather than guessed at.
- **Provenance.** Every run is ``reported`` (a paper's number: paper, table, printed text) or
  ``measured`` (talkbench computed it; per-clip values plus the protocol record and its hash).
- **No half runs.** A run and all its values are inserted in one transaction after the
  evaluation has finished; an exception or a kill before ``COMMIT`` leaves nothing (DuckDB
  replays only committed transactions from its write-ahead log). The views only show
  ``status = 'complete'`` runs.
- **Concurrency.** DuckDB allows one read-write process per file, so every connection is made
  under an exclusive ``flock`` on ``<file>.lock`` and held only for the few milliseconds of a
  read or a write; a process that finds the lock taken waits and retries (``timeout`` s).
  Evaluations, the slow part, run outside the lock, so two ``talkbench submit`` at once both
  land.
- **Method names are held.** ``method_names`` maps each name's key (``names.name_key``) to
  its owner under a primary key; a method is claimed in the same transaction as its runs, so
  two writers of one name (however spelled) cannot both land. talkbench's own names
  (``names.reserved_names``) and methods stored before the table existed are claimed when the
  store is opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator

import duckdb

from talkbench import __version__
from talkbench.baselines.method import MethodInfo
from talkbench.errors import TalkbenchError
from talkbench.leaderboard.benchmarks import BenchmarkSpec, parse_spec
from talkbench.leaderboard.names import SYSTEM_OWNERS, UNKEYED, NameTakenError, name_key, refusal, reserved_names
from talkbench.util import LEADERBOARD_ENV, data_root

try:  # POSIX advisory locks; elsewhere we rely on DuckDB's own lock plus retries
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

DEFAULT_TIMEOUT = 120.0  # seconds a writer waits for the lock before giving up
PROVENANCES = ("reported", "measured")
_MIGRATION = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
NAMES_VERSION = 4  # the migration that adds method_names


class StoreError(TalkbenchError):
    """A store that cannot be opened, migrated or written."""


def protocol_hash(protocol: dict) -> str:
    """sha256 of the protocol record's canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(protocol, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every shipped migration, in order."""
    root = resources.files("talkbench.leaderboard") / "schema"
    found = []
    for entry in root.iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreError(f"schema migrations are not numbered 001..{len(found):03d}: {versions}")
    return found


SCHEMA_VERSION = len(migrations())


@dataclass
class Run:
    """One row of ``runs``: who, on what, under which protocol, from where."""

    method: str
    benchmark: str
    benchmark_version: str
    task: str
    provenance: str
    protocol: dict
    attributes: dict = field(default_factory=dict)
    source_paper: str | None = None
    source_table: str | None = None
    row_label: str | None = None
    row_order: int | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    talkbench_version: str = __version__
    # The protocol's own hash when it defines one (talkbench.protocol.Protocol.sha256 leaves
    # descriptive fields out); otherwise the hash of the whole record.
    protocol_sha256: str | None = None

    def __post_init__(self):
        if self.provenance not in PROVENANCES:
            raise StoreError(f"run provenance must be one of {PROVENANCES}, got {self.provenance!r}")

    @property
    def protocol_hash(self) -> str:
        return self.protocol_sha256 or protocol_hash(self.protocol)


@dataclass(frozen=True)
class ClipValue:
    clip_id: str
    metric: str
    value: float | None


@dataclass(frozen=True)
class AggregateValue:
    scope: str  # 'all', 'language:xx', 'group:indo_european', ...
    metric: str
    value: float | None
    text: str | None = None
    ci: tuple[float, float] | None = None  # bootstrap 95% interval over clips


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value


class Store:
    """The leaderboard database at ``path`` (created and migrated on first use)."""

    def __init__(self, path: str | Path, timeout: float = DEFAULT_TIMEOUT):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.timeout = timeout
        self.migrate()

    # -- connections -------------------------------------------------------------------
    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A DuckDB connection held under the store's lock; closed (and unlocked) on exit."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.timeout
        delay = 0.02
        with open(self.lock_path, "a+") as lock:
            while fcntl is not None:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreError(
                            f"{self.path}: still locked by another talkbench process after "
                            f"{self.timeout:.0f} s; try again when it has finished"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 1.5, 0.5)
            try:
                while True:
                    try:
                        con = duckdb.connect(str(self.path))
                        break
                    except duckdb.IOException as exc:  # a process that does not use our lock
                        if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                            raise StoreError(f"{self.path}: cannot open the leaderboard store ({exc})") from None
                        time.sleep(delay)
                        delay = min(delay * 1.5, 0.5)
                    except duckdb.Error as exc:
                        raise StoreError(f"{self.path}: not a readable DuckDB leaderboard store ({exc})") from None
                try:
                    yield con
                finally:
                    con.close()
            finally:
                if fcntl is not None:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A connection inside BEGIN … COMMIT; any exception rolls everything back."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def query(self, sql: str, params: list | None = None) -> list[dict]:
        with self.connect() as con:
            cur = con.execute(sql, params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    # -- schema ------------------------------------------------------------------------
    def schema_version(self) -> int:
        with self.connect() as con:
            return self._version(con)

    @staticmethod
    def _version(con) -> int:
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
        )
        row = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def migrate(self, target: int | None = None) -> int:
        """Apply the migrations this file lacks (up to ``target``); returns the new version."""
        known = migrations()
        target = len(known) if target is None else target
        with self.connect() as con:
            current = self._version(con)
            if current > len(known):
                raise StoreError(
                    f"{self.path}: schema version {current} was written by a newer talkbench "
                    f"(this one knows up to {len(known)}); upgrade talkbench to read it"
                )
            for version, name, sql in known:
                if current < version <= target:
                    con.execute("BEGIN TRANSACTION")
                    try:
                        con.execute(sql)
                        con.execute(
                            "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                            [version, name, datetime.now(timezone.utc)],
                        )
                        con.execute("COMMIT")
                    except Exception as exc:
                        con.execute("ROLLBACK")
                        raise StoreError(f"{self.path}: migration {version:03d}_{name} failed ({exc})") from exc
            current = self._version(con)
            if current >= NAMES_VERSION:
                self._claim_unclaimed(con)
            return current

    @staticmethod
    def _claim_unclaimed(con) -> None:
        """Claim talkbench's reserved names, then every stored method without a claim (oldest
        run first: the first submitter keeps a name two old submissions spelled alike)."""
        held = {r[0] for r in con.execute("SELECT name_key FROM method_names").fetchall()}
        stored = con.execute(
            "SELECT m.name, m.kind FROM methods m LEFT JOIN "
            "(SELECT method, min(created_at) AS first FROM runs GROUP BY method) r ON r.method = m.name "
            "ORDER BY r.first NULLS LAST, m.name"
        ).fetchall()
        wanted = [*reserved_names(), *((name, kind if kind in SYSTEM_OWNERS else UNKEYED) for name, kind in stored)]
        now = datetime.now(timezone.utc)
        rows = []
        for name, owner in wanted:
            key = name_key(name)
            if key and key not in held:
                held.add(key)
                rows.append([key, name, owner, now])
        if rows:
            con.execute("BEGIN TRANSACTION")
            try:
                con.executemany("INSERT INTO method_names VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)
            except Exception:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- writes ------------------------------------------------------------------------
    def upsert_benchmark(self, spec) -> None:
        """Record a benchmark spec and its clips. A (name, version) already stored with a
        different clip list is refused: a changed list must be a new version."""
        digest = spec.clip_list_sha256
        with self.transaction() as con:
            row = con.execute(
                "SELECT clip_list_sha256 FROM benchmarks WHERE name = ? AND version = ?",
                [spec.name, spec.version],
            ).fetchone()
            if row and row[0] != digest:
                raise StoreError(
                    f"{self.path}: benchmark {spec.name} v{spec.version} is stored with another clip "
                    f"list ({row[0][:12]}… vs {digest[:12]}…); a changed clip list needs a new version"
                )
            if row:
                return
            con.execute(
                "INSERT INTO benchmarks VALUES (?, ?, ?, ?, ?, ?)",
                [spec.name, spec.version, spec.description, digest, spec.superseded_by,
                 spec.model_dump_json()],
            )
            for clip in spec.clips:
                con.execute(
                    "INSERT INTO clips VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [spec.name, spec.version, clip.id, clip.language, clip.family,
                     clip.duration, clip.frames, clip.reference_sha256],
                )

    def name_holder(self, name: str) -> tuple[str, str] | None:
        """(name as first claimed, owner) of the claim on ``name``'s key, or None."""
        rows = self.query("SELECT name, owner FROM method_names WHERE name_key = ?", [name_key(name)])
        return (rows[0]["name"], rows[0]["owner"]) if rows else None

    def _claim(self, con, name: str, owner: str) -> None:
        """Claim ``name`` for ``owner`` inside the caller's transaction, or raise
        ``NameTakenError``. The primary key on ``name_key`` is the authority: a claim that
        slipped past the read is refused by the insert, and the transaction rolls back."""
        key = name_key(name)
        if not key:
            raise StoreError(f"{self.path}: method name {name!r} has no letters or digits")
        row = con.execute("SELECT name, owner FROM method_names WHERE name_key = ?", [key]).fetchone()
        if row is not None:
            reason = refusal(name, row[0], row[1], owner)
            if reason:
                raise NameTakenError(str(self.path), reason)
            return
        try:
            con.execute("INSERT INTO method_names VALUES (?, ?, ?, ?)", [key, name, owner, datetime.now(timezone.utc)])
        except duckdb.ConstraintException:
            raise NameTakenError(str(self.path), f"method name {name!r} was claimed by another writer "
                                                 "at the same moment") from None

    def _check_unclaimed_run(self, con, method: str, owner: str | None) -> None:
        """A run stored without its method's description may not go under a submitted
        method's name unless it comes with that submitter's key."""
        row = con.execute("SELECT name, owner FROM method_names WHERE name_key = ?", [name_key(method)]).fetchone()
        if row is not None and row[1] not in SYSTEM_OWNERS and row[1] != owner:
            raise NameTakenError(str(self.path), f"method name {method!r} is held by a submitted method ({row[0]!r}); "
                                                 "a run under it needs that submitter's key")

    def _upsert_method(self, con, info: MethodInfo, owner: str | None = None) -> None:
        if info.kind == "submission" and owner is None:
            raise StoreError(f"{self.path}: submitted method {info.name!r} needs its submitter's key to be stored")
        self._claim(con, info.name, owner if info.kind == "submission" else info.kind)
        data = info.model_dump(mode="json")
        con.execute("DELETE FROM methods WHERE name = ?", [info.name])
        con.execute(
            "INSERT INTO methods VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [info.name, info.kind, info.paper, info.year, json.dumps(data.get("links") or []),
             info.resolution, info.bitrate_kbps, json.dumps(data, sort_keys=True)],
        )

    def add_run(
        self,
        run: Run,
        clip_values: Iterable[ClipValue] = (),
        aggregates: Iterable[AggregateValue] = (),
        replace: bool = False,
        method=None,
        owner: str | None = None,
    ) -> str:
        """Store a run with all its values in one transaction; returns the run id. Nothing
        is visible until everything is written, and nothing at all if anything fails.
        ``method`` (a ``MethodInfo``) is claimed and upserted in the same transaction."""
        self.add_runs([(run, clip_values, aggregates)], replace=replace, methods=[method] if method else (), owner=owner)
        return run.run_id

    def add_runs(self, items, replace: bool = False, methods=(), owner: str | None = None) -> list[str]:
        """Several (run, clip values, aggregates) in one transaction: all land or none.
        ``methods`` are claimed first, each for its kind (builtin, external, reported) or, for a
        submission, for ``owner`` (``SubmitterKey.owner``); a name another owner holds raises
        ``NameTakenError`` and nothing is stored."""
        ids = []
        with self.transaction() as con:
            for info in methods:
                self._upsert_method(con, info, owner)
            claimed = {info.name for info in methods}
            for run, clip_values, aggregates in items:
                if run.method not in claimed:
                    self._check_unclaimed_run(con, run.method, owner)
                self._insert_run(con, run, clip_values, aggregates, replace)
                ids.append(run.run_id)
        return ids

    def add_missing_runs(self, items: Iterable[tuple[Run, Iterable[AggregateValue], MethodInfo]]) -> int:
        """(run, aggregates, its method) for each run to have, in one transaction: a run whose id
        is stored already is skipped, a method not stored yet is claimed and stored with its
        first run. Two processes adding the same runs at once add each exactly once; returns
        how many runs this call added."""
        added = 0
        with self.transaction() as con:
            have = {r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()}
            known = {r[0] for r in con.execute("SELECT name FROM methods").fetchall()}
            for run, aggregates, info in items:
                if run.run_id in have:
                    continue
                if run.method not in known:
                    self._upsert_method(con, info)
                    known.add(run.method)
                self._insert_run(con, run, (), aggregates, replace=False)
                have.add(run.run_id)
                added += 1
        return added

    def _insert_run(self, con, run: Run, clip_values, aggregates, replace: bool) -> None:
        if con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run.run_id]).fetchone():
            if not replace:
                raise StoreError(f"{self.path}: run {run.run_id} is already stored")
            for table in ("clip_results", "aggregates", "runs"):
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run.run_id])
        con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'complete')",
            [run.run_id, run.method, run.benchmark, run.benchmark_version, run.task,
             run.provenance, run.source_paper, run.source_table, run.row_label, run.row_order,
             json.dumps(run.attributes, sort_keys=True, default=str),
             json.dumps(run.protocol, sort_keys=True, default=str), run.protocol_hash,
             run.talkbench_version, run.created_at],
        )
        # Values are consumed here, inside the transaction: a generator that fails half-way
        # (an evaluation interrupted) rolls the run back with everything else.
        for v in clip_values:
            con.execute("INSERT INTO clip_results VALUES (?, ?, ?, ?)",
                        [run.run_id, v.clip_id, v.metric, _finite(v.value)])
        rows = [(run.run_id, a.scope, a.metric, _finite(a.value), a.text,
                 _finite(a.ci[0]) if a.ci else None, _finite(a.ci[1]) if a.ci else None) for a in aggregates]
        if rows:
            con.executemany("INSERT INTO aggregates (run_id, scope, metric, value, text, ci_low, ci_high) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    # -- reads -------------------------------------------------------------------------
    def runs(self, provenance: str | None = None, benchmark: str | None = None,
             source_paper: str | None = None, source_table: str | None = None) -> list[dict]:
        where, params = ["1 = 1"], []
        for col, value in (("provenance", provenance), ("benchmark", benchmark),
                           ("source_paper", source_paper), ("source_table", source_table)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        rows = self.query(
            f"SELECT * FROM complete_runs WHERE {' AND '.join(where)} "
            "ORDER BY source_paper, source_table, row_order, created_at, method",
            params,
        )
        for r in rows:
            r["attributes"] = json.loads(r["attributes"])
            r["protocol"] = json.loads(r.pop("protocol_json"))
        return rows

    def aggregates(self, run_ids: list[str] | None = None) -> dict[str, dict[tuple[str, str], dict]]:
        """run id → {(scope, metric): {'value', 'text', 'ci'}}; ``ci`` is (low, high) or None."""
        sql = "SELECT a.* FROM aggregates a JOIN complete_runs r USING (run_id)"
        params: list = []
        if run_ids is not None:
            if not run_ids:
                return {}
            sql += f" WHERE a.run_id IN ({', '.join('?' for _ in run_ids)})"
            params = list(run_ids)
        out: dict[str, dict] = {}
        for r in self.query(sql, params):
            ci = (r["ci_low"], r["ci_high"]) if r["ci_low"] is not None else None
            out.setdefault(r["run_id"], {})[(r["scope"], r["metric"])] = {"value": r["value"], "text": r["text"], "ci": ci}
        return out

    def clip_values(self, run_id: str) -> list[dict]:
        return self.query(
            "SELECT clip_id, language, family, language_group, metric, value FROM clip_values "
            "WHERE run_id = ? ORDER BY clip_id, metric",
            [run_id],
        )

    def group_means(self, run_ids: list[str]) -> dict[str, dict[tuple[str, str], float]]:
        """run id → {(language group | 'all', metric): mean of per-clip values}."""
        if not run_ids:
            return {}
        rows = self.query(
            f"SELECT run_id, language_group, metric, value FROM group_means "
            f"WHERE run_id IN ({', '.join('?' for _ in run_ids)})",
            list(run_ids),
        )
        out: dict[str, dict] = {}
        for r in rows:
            out.setdefault(r["run_id"], {})[(r["language_group"], r["metric"])] = r["value"]
        return out

    def language_means(self, run_ids: list[str]) -> list[dict]:
        if not run_ids:
            return []
        return self.query(
            f"SELECT run_id, method, language, metric, value, clips FROM language_means "
            f"WHERE run_id IN ({', '.join('?' for _ in run_ids)}) ORDER BY language, metric",
            list(run_ids),
        )

    def methods(self) -> dict[str, dict]:
        return {r["name"]: json.loads(r["info_json"]) for r in self.query("SELECT * FROM methods")}

    def benchmark_spec(self, name: str, version: str) -> BenchmarkSpec | None:
        """The stored spec of (name, version), or None when none is stored."""
        rows = self.query("SELECT spec_json FROM benchmarks WHERE name = ? AND version = ?", [name, version])
        return parse_spec(rows[0]["spec_json"], f"{self.path}: benchmark {name} v{version}") if rows else None

    def benchmarks(self) -> list[dict]:
        return self.query("SELECT name, version, description, clip_list_sha256, superseded_by FROM benchmarks")

    def counts(self) -> dict[str, int]:
        with self.connect() as con:
            return {
                t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("benchmarks", "clips", "methods", "runs", "clip_results", "aggregates")
            }


def default_store_path() -> Path:
    """``$TALKBENCH_LEADERBOARD`` or ``<user data dir>/talkbench/leaderboard.duckdb``."""
    env = os.environ.get(LEADERBOARD_ENV)
    return Path(env) if env else data_root() / "leaderboard.duckdb"
