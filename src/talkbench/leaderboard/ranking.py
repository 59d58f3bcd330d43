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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from talkbench.leaderboard.store import Store

IE, NON_IE = "indo_european", "non_indo_european"
PAIRED = {"hdtf-test": IE, "mnte": NON_IE}  # benchmarks that are one side of a pair
METRIC_ORDER = ("ssim", "lpips", "csim", "csim_dlib", "csim_arcface", "lmd", "m_lmd", "f_lmd",
                "cpbd", "msi", "fid", "fvd", "bitrate_kbps")
LABELS = {"csim_dlib": "CSIM", "csim_arcface": "CSIM (ArcFace)", "bitrate_kbps": "kbps",
          "m_lmd": "M-LMD", "f_lmd": "F-LMD"}
_PAPER_DIRECTIONS = {"ssim": True, "lpips": False, "csim": True, "lmd": False, "cpbd": True,
                     "fid": False, "fvd": False, "msi": True, "m_lmd": False, "f_lmd": False,
                     "sync_conf": True, "acc_emo_pct": True, "utilization_pct": True,
                     "bitrate_kbps": False}
REFERENCE_METHODS = ("ground-truth", "GT")
# variants kept in the store and on method pages but not given board columns of their own
HIDDEN = ("m_lmd", "f_lmd", "msi_face", "fid_samples", "fvd_samples")  # the reference itself: shown, never marked best


def higher_is_better(metric: str) -> bool:
    """A value name's direction, from the metrics registry (the paper's for paper-only names)."""
    try:
        from talkbench.metrics.registry import available_metrics, get_metric

        for name in available_metrics():
            spec = get_metric(name)
            if metric in spec.values or metric == name:
                return spec.higher_is_better
    except ImportError:  # pragma: no cover - metrics always ship with talkbench
        pass
    return _PAPER_DIRECTIONS.get(metric, True)


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


@dataclass
class Row:
    method: str
    provenance: str
    run_ids: list[str]
    values: dict[tuple[str, str], float]  # (IE | NON_IE, metric) -> value
    kind: str = ""
    attributes: dict = field(default_factory=dict)

    def value(self, side: str, metric: str) -> float | None:
        return self.values.get((side, metric))

    def gap(self, metric: str) -> float | None:
        return gap_percent(self.value(IE, metric), self.value(NON_IE, metric), metric)


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

    def column_marks(self, column: tuple[str, str]) -> list[str]:
        side, metric = column
        values = [self.cell(r, column) for r in self.rows]
        higher = False if side == "gap" else higher_is_better(metric)
        return marks(values, higher, [r.method in REFERENCE_METHODS for r in self.rows])

    def to_dict(self) -> dict:
        return {
            "key": self.key, "title": self.title, "provenance": self.provenance, "task": self.task,
            "benchmarks": self.benchmarks, "protocol_sha256": self.protocol_sha256,
            "protocol": self.protocol, "differences": self.differences, "note": self.note,
            "columns": [list(c) for c in self.columns()],
            "rows": [
                {"rank": i + 1, "method": r.method, "provenance": r.provenance, "kind": r.kind,
                 "run_ids": r.run_ids,
                 "values": {f"{s}:{m}": self.cell(r, (s, m)) for s, m in self.columns()}}
                for i, r in enumerate(self.rows)
            ],
        }


def _order_metrics(names) -> list[str]:
    names = set(names)
    ordered = [m for m in METRIC_ORDER if m in names]
    return ordered + sorted(names - set(ordered))


def _sort_rows(rows: list[Row], metrics: list[str], main: str | None) -> list[Row]:
    main = main if main in metrics else (metrics[0] if metrics else None)
    if main is None:
        return rows
    up = higher_is_better(main)

    def key(r: Row):
        v = r.value(NON_IE, main)
        v = r.value(IE, main) if v is None else v
        ref = r.method in REFERENCE_METHODS
        if v is None:
            return (not ref, 1, 0.0)
        return (not ref, 0, -v if up else v)

    return sorted(rows, key=key)


def _references(run: dict) -> str:
    return run["attributes"].get("references_sha256", "")


def measured_boards(store: Store, benchmark: str | None = None) -> list[Board]:
    runs = store.runs(provenance="measured")
    if benchmark:
        wanted = {benchmark} | ({"hdtf-test", "mnte"} if benchmark in PAIRED else set())
        runs = [r for r in runs if r["benchmark"] in wanted]
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
        pair = "hdtf-test+mnte" if paired else f"{r['benchmark']}@{r['benchmark_version']}"
        groups.setdefault((pair, r["task"], r["protocol_hash"], "" if paired else _references(r)), []).append(r)

    boards = []
    builds_of = {}  # (pair, task, protocol) -> how many reference builds have a board
    for pair, task, phash, _refs in groups:
        builds_of[pair, task, phash] = builds_of.get((pair, task, phash), 0) + 1
    for (pair, task, phash, refs), members in groups.items():
        by_method: dict[str, Row] = {}
        metric_names: set[str] = set()
        for r in sorted(members, key=lambda r: r["created_at"]):  # latest run per method wins
            values = {}
            if r["benchmark"] in PAIRED:  # the whole benchmark is one side: HDTF IE, MNTE not
                side_of = {"all": PAIRED[r["benchmark"]]}
            else:
                side_of = {IE: IE, NON_IE: NON_IE}
            for (scope, metric), v in means.get(r["run_id"], {}).items():
                if scope in side_of and v is not None:
                    values[(side_of[scope], metric)] = v
            for (scope, metric), cell in aggs.get(r["run_id"], {}).items():
                scope = scope.split(":", 1)[1] if scope.startswith("group:") else scope
                if scope in side_of and cell["value"] is not None:
                    values[(side_of[scope], metric)] = cell["value"]
            metric_names |= {m for _, m in values}
            row = by_method.setdefault(r["method"], Row(r["method"], "measured", [], {}, attributes=r["attributes"]))
            if r["benchmark"] not in PAIRED:
                row.values, row.run_ids = {}, []
            row.values.update(values)
            row.run_ids.append(r["run_id"])
        methods = store.methods()
        for row in by_method.values():
            row.kind = methods.get(row.method, {}).get("kind", "")
        metrics = _order_metrics(m for m in metric_names if m not in HIDDEN and not m.endswith("_iod"))
        bench_names = sorted({r["benchmark"] for r in members})
        main = "ssim"
        boards.append(Board(
            key=f"{pair}:{task}:{phash[:12]}" + (f":{refs[:8]}" if refs else ""),
            title=f"{pair} · {task} · measured" + (f" · references {refs[:8]}" if builds_of[pair, task, phash] > 1 else ""),
            provenance="measured",
            task=task, benchmarks=bench_names, protocol_sha256=phash, protocol=members[-1]["protocol"],
            metrics=metrics, rows=_sort_rows(list(by_method.values()), metrics, main),
        ))
    _name_differences(boards)
    return boards


def _name_differences(boards: list[Board]) -> None:
    """Boards of the same benchmark(s) and task under different protocols: name the fields."""
    from talkbench.protocol import NOT_HASHED

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
    from talkbench.leaderboard.paper import table

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
    proto = runs[0]["protocol"]
    return [Board(
        key=f"reported:{t.key}", title=f"{t.paper} Table {t.number} · speech-driven · reported",
        provenance="reported", task=t.task, benchmarks=["hdtf-test", "mnte"],
        protocol_sha256=runs[0]["protocol_hash"], protocol=proto, metrics=metrics,
        rows=_sort_rows(list(rows.values()), metrics, "ssim"),
        note="published numbers (the authors' protocol); never ranked with measured runs",
    )]


def leaderboard(store: Store, benchmark: str | None = None, reported: bool = True) -> list[Board]:
    boards = measured_boards(store, benchmark)
    if reported and (benchmark is None or benchmark in PAIRED):
        boards += reported_boards(store)
    return boards


def boards_json(boards: list[Board]) -> str:
    return json.dumps([b.to_dict() for b in boards], indent=2, default=str)
