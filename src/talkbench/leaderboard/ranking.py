"""Rankings: the multilingual leaderboard built from the store.

A **board** holds runs that may be compared: same task, same protocol hash and the same
reference files. Runs measured under different protocols are never ranked together; each
board names the protocol fields in which it differs from the others. Published numbers
(``reported``) form their own board per paper table.

Columns: each metric on the Indo-European clips and on the non-Indo-European clips, and the
cross-lingual gap per metric, the headline: ``gap%`` is how much worse the method gets outside
Indo-European languages, in percent of its Indo-European value (positive = worse, whatever the
metric's direction). A benchmark whose clips span both groups (``sample``) gives both sides by
itself; ``hdtf-test`` (Indo-European) and ``mnte`` pair up into one board.

Every measured cell carries a bootstrap 95% interval over clips, seeded by the run's protocol
(``seed``, ``bootstrap_replicates``, ``bootstrap_level``): an interval the engine stored with
the value (FID/FVD) is shown as is; a mean is resampled from the run's stored per-clip values,
taken in clip-id order. The gap gets the interval of mean(IE) − mean(non-IE), each group
resampled on its own; a gap whose interval contains 0 is not significant. Methods whose
intervals overlap share a rank (``tied``). Published numbers carry no interval.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from talkbench.leaderboard.benchmarks import split_version
from talkbench.leaderboard.breakdown import Breakdown, label_breakdowns
from talkbench.leaderboard.directions import higher_is_better
from talkbench.leaderboard.names import REFERENCE_METHODS
from talkbench.leaderboard.paper import table
from talkbench.leaderboard.store import Store
from talkbench.metrics import bootstrap
from talkbench.metrics.settings import BOOTSTRAP_REPLICATES
from talkbench.protocol import NOT_HASHED

IE, NON_IE = "indo_european", "non_indo_european"
PAIRED = {"hdtf-test": IE, "mnte": NON_IE}  # benchmarks that are one side of a pair
PAIR = "hdtf-test+mnte"
METRIC_ORDER = ("ssim", "lpips", "csim", "csim_arcface", "csim_insightface", "csim_dlib", "lmd", "m_lmd", "f_lmd",
                "lse_c", "lse_d", "cpbd", "msi", "fid", "fvd", "acc_emo", "bitrate_kbps")
# dlib's CSIM is on its own scale (0.94–0.996 on real outputs): never labelled as the papers' CSIM
LABELS = {"csim_dlib": "CSIM (dlib)", "csim_arcface": "CSIM (ArcFace)", "csim_insightface": "CSIM (insightface)",
          "bitrate_kbps": "kbps", "m_lmd": "M-LMD", "f_lmd": "F-LMD", "lse_c": "LSE-C", "lse_d": "LSE-D",
          "acc_emo": "Acc_emo"}
# variants kept in the store and on method pages but not given board columns of their own
HIDDEN = ("m_lmd", "f_lmd", "fid_samples", "fvd_samples")
# Boards rank by their benchmark's main score (mead-emotion: acc_emo), else SSIM, on
# non-Indo-European clips (IE when a row has none).
RANK_BY = "ssim"

Interval = tuple[float, float]


def label(metric: str) -> str:
    return LABELS.get(metric, metric.upper() if len(metric) <= 5 else metric)


def gap_percent(ie: float | None, non_ie: float | None, metric: str) -> float | None:
    """How much worse outside Indo-European, in % of the Indo-European value (positive = worse)."""
    if ie is None or non_ie is None or ie == 0:
        return None
    worse = (ie - non_ie) if higher_is_better(metric) else (non_ie - ie)
    return 100.0 * worse / abs(ie)


def marks(values: list[float | None], higher: bool, skip: list[bool] | None = None) -> list[str]:
    """'best' / 'second' / '' per value, by distinct value (ties share a mark), as the papers do."""
    skip = skip or [False] * len(values)
    distinct = sorted({v for v, s in zip(values, skip) if v is not None and not s}, reverse=higher)
    best = distinct[0] if distinct else None
    second = distinct[1] if len(distinct) > 1 else None
    out = []
    for v, s in zip(values, skip):
        if s or v is None:
            out.append("")
        elif v == best:
            out.append("best")
        elif v == second:
            out.append("second")
        else:
            out.append("")
    return out


@dataclass(frozen=True)
class Estimate:
    """A value and its bootstrap interval (None: a single clip, bootstrap off, a paper's number)."""

    value: float
    interval: Interval | None = None


def tied(a: Estimate, b: Estimate) -> bool:
    """The tie rule: two methods share a rank when their 95% bootstrap intervals over clips
    overlap (touching counts). Without an interval on both, only an equal value ties: nothing
    then says how far apart the two could be, so the ranking stays the values' order."""
    if a.interval is None or b.interval is None:
        return a.value == b.value
    (a_low, a_high), (b_low, b_high) = a.interval, b.interval
    return a_low <= b_high and b_low <= a_high


def tie_rule(level: float = bootstrap.LEVEL) -> str:
    """The legend's sentence for ``tied`` and for the gap's significance."""
    return (f"[low, high] {level:.0%} bootstrap interval over clips · 1= a tie: the {level:.0%} "
            f"bootstrap intervals over clips of methods ranked next to each other overlap · "
            f"≈ gap not significant: the interval of the IE − non-IE difference contains 0")


@dataclass(frozen=True)
class Resampling:
    """How a run's intervals are drawn: its protocol's seed, replicate count and level."""

    seed: int = 0
    replicates: int = BOOTSTRAP_REPLICATES
    level: float = bootstrap.LEVEL

    @classmethod
    def of(cls, protocol: dict) -> Resampling:
        """Runs stored before intervals existed lack the fields: the engine's defaults then."""
        replicates = protocol.get("bootstrap_replicates")
        level = protocol.get("bootstrap_level")
        return cls(seed=int(protocol.get("seed") or 0),
                   replicates=BOOTSTRAP_REPLICATES if replicates is None else int(replicates),
                   level=bootstrap.LEVEL if level is None else float(level))

    def mean(self, values: np.ndarray | None) -> Interval | None:
        if values is None:
            return None
        return bootstrap.mean_interval(values, self.replicates, self.seed, self.level)

    def difference(self, a: np.ndarray | None, b: np.ndarray | None) -> Interval | None:
        if a is None or b is None:
            return None
        return bootstrap.difference_interval(a, b, self.replicates, self.seed, self.level)


@dataclass(frozen=True)
class Rank:
    """A row's place on its board; ``position`` None for the reference and for a row without
    the value the board is ranked by."""

    position: int | None
    tied: bool = False

    def __str__(self) -> str:
        if self.position is None:
            return "–"
        return f"{self.position}=" if self.tied else str(self.position)


@dataclass
class Row:
    method: str
    provenance: str
    run_ids: list[str]
    values: dict[tuple[str, str], float]  # (IE | NON_IE, metric) -> value
    kind: str = ""
    attributes: dict = field(default_factory=dict)
    intervals: dict[tuple[str, str], Interval] = field(default_factory=dict)  # same keys as values
    gap_differences: dict[str, Interval] = field(default_factory=dict)  # metric -> mean(IE) − mean(non-IE)

    def value(self, side: str, metric: str) -> float | None:
        return self.values.get((side, metric))

    def interval(self, side: str, metric: str) -> Interval | None:
        return self.intervals.get((side, metric))

    def gap(self, metric: str) -> float | None:
        return gap_percent(self.value(IE, metric), self.value(NON_IE, metric), metric)

    def gap_interval(self, metric: str) -> Interval | None:
        """The difference's interval in the gap's own units: % of the Indo-European value,
        positive = worse (the Indo-European value taken as fixed)."""
        difference, ie = self.gap_differences.get(metric), self.value(IE, metric)
        if difference is None or not ie:
            return None
        low, high = difference if higher_is_better(metric) else (-difference[1], -difference[0])
        return 100.0 * low / abs(ie), 100.0 * high / abs(ie)

    def gap_significant(self, metric: str) -> bool | None:
        """False when the gap's interval contains 0; None without an interval."""
        difference = self.gap_differences.get(metric)
        return None if difference is None else not (difference[0] <= 0.0 <= difference[1])


@dataclass
class Board:
    key: str
    title: str
    provenance: str
    task: str
    benchmarks: list[str]
    protocol_sha256: str
    protocol: dict
    metrics: list[str]
    rows: list[Row]
    differences: list[str] = field(default_factory=list)  # vs the first board of the same task
    note: str = ""
    rank_by: str = RANK_BY
    breakdowns: list[Breakdown] = field(default_factory=list)  # per-label means (accuracy per emotion)
    unmeasured: dict[str, str] = field(default_factory=dict)  # metric → why no run of the board has it

    def sides(self) -> list[str]:
        return [s for s in (IE, NON_IE) if any(r.value(s, m) is not None for r in self.rows for m in self.metrics)]

    def columns(self) -> list[tuple[str, str]]:
        """(side | 'gap', metric) in display order."""
        cols = [(s, m) for s in self.sides() for m in self.metrics]
        if len(self.sides()) == 2:
            cols += [("gap", m) for m in self.metrics]
        return cols

    def cell(self, row: Row, column: tuple[str, str]) -> float | None:
        side, metric = column
        return row.gap(metric) if side == "gap" else row.value(side, metric)

    def cell_interval(self, row: Row, column: tuple[str, str]) -> Interval | None:
        side, metric = column
        return row.gap_interval(metric) if side == "gap" else row.interval(side, metric)

    def ranks(self) -> list[Rank]:
        """Ranks in row order (rows are sorted best first): a method tied with the one ranked
        just above it shares that one's rank, so a chain of overlapping intervals is one tie
        (1=, 1=, 3). The reference is shown but never ranked."""
        positions: list[int | None] = []
        above: Estimate | None = None  # the estimate of the row ranked just above
        above_position = ranked = 0
        for row in self.rows:
            estimate = ranking_estimate(row, self.rank_by)
            if row.method in REFERENCE_METHODS or estimate is None:
                positions.append(None)
                continue
            ranked += 1
            if above is None or not tied(above, estimate):
                above_position = ranked
            positions.append(above_position)
            above = estimate
        sharing = Counter(p for p in positions if p is not None)
        return [Rank(p, sharing[p] > 1) if p is not None else Rank(None) for p in positions]

    def legend(self) -> str:
        if self.provenance == "reported":
            return "1= tied rank: equal values (published numbers carry no interval)"
        return tie_rule(Resampling.of(self.protocol).level)

    def column_marks(self, column: tuple[str, str]) -> list[str]:
        side, metric = column
        values = [self.cell(r, column) for r in self.rows]
        higher = False if side == "gap" else higher_is_better(metric)
        return marks(values, higher, [r.method in REFERENCE_METHODS for r in self.rows])

    def to_dict(self) -> dict:
        columns = self.columns()

        def bound(row: Row, column: tuple[str, str], end: int) -> float | None:
            interval = self.cell_interval(row, column)
            return None if interval is None else interval[end]

        return {
            "key": self.key, "title": self.title, "provenance": self.provenance, "task": self.task,
            "benchmarks": self.benchmarks, "protocol_sha256": self.protocol_sha256,
            "protocol": self.protocol, "differences": self.differences, "note": self.note,
            "rank_by": self.rank_by, "legend": self.legend(),
            "columns": [list(c) for c in columns],
            "rows": [
                {"rank": rank.position, "tied": rank.tied, "method": r.method, "provenance": r.provenance,
                 "kind": r.kind, "run_ids": r.run_ids,
                 "values": {f"{s}:{m}": self.cell(r, (s, m)) for s, m in columns},
                 "ci_low": {f"{s}:{m}": bound(r, (s, m), 0) for s, m in columns},
                 "ci_high": {f"{s}:{m}": bound(r, (s, m), 1) for s, m in columns},
                 "gap_significant": {m: r.gap_significant(m) for s, m in columns if s == "gap"}}
                for rank, r in zip(self.ranks(), self.rows)
            ],
            "breakdowns": [b.to_dict() for b in self.breakdowns],
            "unmeasured": self.unmeasured,
        }


def _order_metrics(names) -> list[str]:
    names = set(names)
    ordered = [m for m in METRIC_ORDER if m in names]
    return ordered + sorted(names - set(ordered))


def ranking_estimate(row: Row, metric: str) -> Estimate | None:
    """What a row is ranked by: ``metric`` on non-Indo-European clips, else on Indo-European."""
    for side in (NON_IE, IE):
        value = row.value(side, metric)
        if value is not None:
            return Estimate(value, row.interval(side, metric))
    return None


def _rank_metric(metrics: list[str], main: str) -> str | None:
    return main if main in metrics else (metrics[0] if metrics else None)


def _sort_rows(rows: list[Row], main: str | None) -> list[Row]:
    if main is None:
        return rows
    up = higher_is_better(main)

    def key(r: Row):
        estimate = ranking_estimate(r, main)
        ref = r.method in REFERENCE_METHODS
        if estimate is None:
            return (not ref, 1, 0.0)
        return (not ref, 0, -estimate.value if up else estimate.value)

    return sorted(rows, key=key)


def _clip_samples(clip_rows: list[dict], side_of: dict[str, str]) -> dict[tuple[str, str], np.ndarray]:
    """A run's per-clip values by (side, metric), in clip-id order (the resampling depends on
    the order, so the interval is reproducible only with a fixed one)."""
    grouped: dict[tuple[str, str], list[float]] = {}
    for clip in clip_rows:
        scope = "all" if "all" in side_of else clip["language_group"]
        if clip["value"] is not None and scope in side_of:
            grouped.setdefault((side_of[scope], clip["metric"]), []).append(clip["value"])
    return {key: np.array(values) for key, values in grouped.items()}


@dataclass
class _RunCells:
    """One run's part of a board row, keyed by (IE | NON_IE, metric)."""

    values: dict[tuple[str, str], float]
    intervals: dict[tuple[str, str], Interval | None]
    samples: dict[tuple[str, str], np.ndarray]  # the per-clip values behind each mean
    resampling: Resampling


def _run_cells(store: Store, run: dict, means: dict, aggregates: dict) -> _RunCells:
    """A run's means and stored aggregates (FID/FVD) on the board's sides, each with its
    interval: the one stored with the value when there is one, else the per-clip values'."""
    if run["benchmark"] in PAIRED:  # the whole benchmark is one side: HDTF IE, MNTE not
        side_of = {"all": PAIRED[run["benchmark"]]}
    else:
        side_of = {IE: IE, NON_IE: NON_IE}
    values, stored_intervals = {}, {}
    for (scope, metric), v in means.items():
        if scope in side_of and v is not None:
            values[(side_of[scope], metric)] = v
    for (scope, metric), cell in aggregates.items():
        scope = scope.split(":", 1)[1] if scope.startswith("group:") else scope
        if scope in side_of and cell["value"] is not None:
            values[(side_of[scope], metric)] = cell["value"]
            if cell["ci"] is not None:
                stored_intervals[(side_of[scope], metric)] = cell["ci"]
    samples = _clip_samples(store.clip_values(run["run_id"]), side_of)
    resampling = Resampling.of(run["protocol"])
    intervals = {key: stored_intervals.get(key) or resampling.mean(samples.get(key)) for key in values}
    return _RunCells(values, intervals, samples, resampling)


def _references(run: dict) -> str:
    return run["attributes"].get("references_sha256", "")


def measured_boards(store: Store, benchmark: str | None = None) -> list[Board]:
    runs = store.runs(provenance="measured")
    if benchmark:
        name, version = split_version(benchmark)
        wanted = {name} | ({"hdtf-test", "mnte"} if name in PAIRED else set())
        runs = [r for r in runs if r["benchmark"] in wanted and version in (None, r["benchmark_version"])]
    if not runs:
        return []
    ids = [r["run_id"] for r in runs]
    means = store.group_means(ids)
    aggs = store.aggregates(ids)
    # HDTF and MNTE runs pair up into one board (the cross-lingual gap) only while each of the
    # two has a single reference build (references_sha256) under that task and protocol; a second
    # build of either splits them into one board per benchmark build, never ranked together.
    builds: dict[tuple, set[str]] = {}
    for r in runs:
        if r["benchmark"] in PAIRED:
            builds.setdefault((r["task"], r["protocol_hash"], r["benchmark"]), set()).add(_references(r))
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        paired = r["benchmark"] in PAIRED and not any(
            len(builds.get((r["task"], r["protocol_hash"], b), ())) > 1 for b in PAIRED)
        pair = PAIR if paired else f"{r['benchmark']}@{r['benchmark_version']}"
        groups.setdefault((pair, r["task"], r["protocol_hash"], "" if paired else _references(r)), []).append(r)

    boards = []
    builds_of = {}  # (pair, task, protocol) -> how many reference builds have a board
    for pair, task, phash, _refs in groups:
        builds_of[pair, task, phash] = builds_of.get((pair, task, phash), 0) + 1
    for (pair, task, phash, refs), members in groups.items():
        by_method: dict[str, Row] = {}
        # per method, while its runs are read: per-clip values by (side, metric), and the
        # latest run's resampling (paired runs share the seed: it is in the protocol hash)
        row_samples: dict[str, dict[tuple[str, str], np.ndarray]] = {}
        row_resampling: dict[str, Resampling] = {}
        metric_names: set[str] = set()
        for r in sorted(members, key=lambda r: r["created_at"]):  # latest run per method wins
            cells = _run_cells(store, r, means.get(r["run_id"], {}), aggs.get(r["run_id"], {}))
            metric_names |= {m for _, m in cells.values}
            row = by_method.setdefault(r["method"], Row(r["method"], "measured", [], {}, attributes=r["attributes"]))
            if r["benchmark"] not in PAIRED:
                row.values, row.intervals, row.run_ids, row_samples[r["method"]] = {}, {}, [], {}
            row.values.update(cells.values)
            # a later run's missing interval replaces an earlier one's, as its value does
            row.intervals = {k: v for k, v in {**row.intervals, **cells.intervals}.items() if v is not None}
            row_samples.setdefault(r["method"], {}).update(cells.samples)
            row_resampling[r["method"]] = cells.resampling
            row.run_ids.append(r["run_id"])
        for method, row in by_method.items():
            samples, resampling = row_samples[method], row_resampling[method]
            for metric in {m for _, m in row.values}:
                difference = resampling.difference(samples.get((IE, metric)), samples.get((NON_IE, metric)))
                if difference is not None:
                    row.gap_differences[metric] = difference
        methods = store.methods()
        for row in by_method.values():
            row.kind = methods.get(row.method, {}).get("kind", "")
        spec = None if pair == PAIR else store.benchmark_spec(members[0]["benchmark"], members[0]["benchmark_version"])
        hidden = set(HIDDEN) - set(spec.board_values if spec else ())
        metrics = _order_metrics(m for m in metric_names if m not in hidden and not m.endswith("_iod"))
        bench_names = sorted({r["benchmark"] for r in members})
        main = _rank_metric(metrics, spec.main_score if spec else RANK_BY)
        rows = _sort_rows(list(by_method.values()), main)
        breakdowns = label_breakdowns(store, spec, {r.method: r.run_ids[-1] for r in rows}) if spec else []
        boards.append(Board(
            key=f"{pair}:{task}:{phash[:12]}" + (f":{refs[:8]}" if refs else ""),
            title=f"{pair} · {task} · measured" + (f" · references {refs[:8]}" if builds_of[pair, task, phash] > 1 else ""),
            provenance="measured",
            task=task, benchmarks=bench_names, protocol_sha256=phash, protocol=members[-1]["protocol"],
            metrics=metrics, rows=rows, rank_by=main or RANK_BY, breakdowns=breakdowns,
            unmeasured=_unmeasured(members, metric_names),
        ))
    _name_differences(boards)
    return boards


def _unmeasured(runs: list[dict], measured: set[str]) -> dict[str, str]:
    """Metrics the runs asked for and no run measured, with the (latest) reason stored."""
    reasons: dict[str, str] = {}
    for r in sorted(runs, key=lambda r: r["created_at"]):
        reasons.update(r["attributes"].get("unavailable") or {})
    return {m: why for m, why in sorted(reasons.items()) if not set(_values_of(m)) & measured}


def _values_of(metric: str) -> tuple[str, ...]:
    """A metric's value names; a metric no longer registered is its own value name."""
    from talkbench.metrics.registry import get_metric  # every metric module (torch): only when a run lacks one

    try:
        return get_metric(metric).values
    except ValueError:
        return (metric,)


def _name_differences(boards: list[Board]) -> None:
    """Boards of the same benchmark(s) and task under different protocols: name the fields."""
    first: dict[tuple, Board] = {}
    for b in boards:
        k = (tuple(b.benchmarks), b.task)
        if k not in first:
            first[k] = b
            continue
        a, c = first[k].protocol, b.protocol
        diff = sorted(f for f in set(a) | set(c) if f not in NOT_HASHED and a.get(f) != c.get(f))
        b.differences = diff or ["reference files"]
        b.note = f"not ranked with {first[k].key}: protocol differs in {', '.join(b.differences)}"
        if not first[k].note:
            first[k].note = "other protocols for this benchmark are shown on separate boards"


def reported_boards(store: Store) -> list[Board]:
    """VQTalker Table 2 as a board: HDTF = Indo-European, MNTE = non-Indo-European."""
    t = table("vqtalker", 2)
    runs = store.runs(provenance="reported", source_paper=t.paper, source_table=t.number)
    if not runs:
        return []
    aggs = store.aggregates([r["run_id"] for r in runs])
    side_of = {"HDTF": IE, "MNTE": NON_IE}
    rows: dict[str, Row] = {}
    for r in runs:
        side = side_of[r["attributes"]["dataset"]]
        row = rows.setdefault(r["method"], Row(r["method"], "reported", [], {}, kind="reported"))
        row.run_ids.append(r["run_id"])
        for (_, metric), cell in aggs.get(r["run_id"], {}).items():
            if cell["value"] is not None:
                row.values[(side, metric)] = cell["value"]
    metrics = [c.key for c in t.metrics]
    main = _rank_metric(metrics, RANK_BY)
    proto = runs[0]["protocol"]
    return [Board(
        key=f"reported:{t.key}", title=f"{t.paper} Table {t.number} · speech-driven · reported",
        provenance="reported", task=t.task, benchmarks=["hdtf-test", "mnte"],
        protocol_sha256=runs[0]["protocol_hash"], protocol=proto, metrics=metrics,
        rows=_sort_rows(list(rows.values()), main), rank_by=main or RANK_BY,
        note="published numbers (the authors' protocol); never ranked with measured runs",
    )]


def leaderboard(store: Store, benchmark: str | None = None, reported: bool = True) -> list[Board]:
    boards = measured_boards(store, benchmark)
    name = split_version(benchmark)[0] if benchmark else None
    if reported and (name is None or name in PAIRED):
        boards += reported_boards(store)
    return boards


def boards_json(boards: list[Board]) -> str:
    return json.dumps([b.to_dict() for b in boards], indent=2, default=str)
