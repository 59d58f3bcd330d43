"""The papers' published numbers as ``reported`` runs in the store.

Each CSV row (per dataset, for the long tables) becomes one run: provenance ``reported``, the
paper and table it came from, its printed row label and position, the non-metric columns as
attributes, and one aggregate per cell holding the printed text and its numeric value. The run
ids are derived from (paper, table, row, dataset), so loading twice changes nothing.
"""

from __future__ import annotations

import hashlib

from talkbench.baselines.method import MethodInfo
from talkbench.leaderboard.paper import TABLES, PaperTable
from talkbench.leaderboard.store import AggregateValue, Run, Store

PAPER_VERSION = "paper"


def numeric(text: str) -> float | None:
    """The number in a printed cell ('0.775' → 0.775, '≈ 11' → 11.0, '<1' → 1.0); None for
    an empty cell or one that is not a number ('5x5x5x5', 'yes')."""
    text = (text or "").strip().lstrip("≈<>~ ").strip()
    try:
        return float(text)
    except ValueError:
        return None


def reported_protocol(t: PaperTable, dataset: str | None) -> dict:
    return {
        "provenance": "reported",
        "paper": t.paper,
        "table": t.number,
        "dataset": dataset,
        "task": t.task,
        "note": "published number; measured by the authors under their own protocol",
    }


def _run_id(t: PaperTable, index: int, dataset: str | None) -> str:
    digest = hashlib.sha1(f"{t.paper}|{t.number}|{index}|{dataset}".encode()).hexdigest()[:16]
    return f"reported-{digest}"


def reported_runs(t: PaperTable) -> list[tuple[Run, list[AggregateValue]]]:
    out = []
    for index, row in enumerate(t.rows()):
        dataset = row.get(t.dataset_column) if t.dataset_column else None
        benchmark = t.benchmark
        if t.groups:
            benchmark = {g[0]: g[2] for g in t.groups}.get(dataset, (dataset or "").lower())
        attrs = {c.key: row.get(c.key, "") for c in t.attributes}
        if t.dataset_column:
            attrs[t.dataset_column] = dataset
        extra = [k for k in row if k not in {c.key for c in t.columns} | {"method", t.dataset_column}]
        for k in extra:  # e.g. language_group in Table 2
            attrs[k] = row[k]
        run = Run(
            method=row["method"],
            benchmark=benchmark or "",
            benchmark_version=PAPER_VERSION,
            task=t.task,
            provenance="reported",
            protocol=reported_protocol(t, dataset),
            attributes=attrs,
            source_paper=t.paper,
            source_table=t.number,
            row_label=row["method"],
            row_order=index,
            run_id=_run_id(t, index, dataset),
        )
        cells = [
            AggregateValue("all", c.key, numeric(row.get(c.key, "")), row.get(c.key, ""))
            for c in t.columns
        ]
        out.append((run, cells))
    return out


def load_reported(store: Store) -> int:
    """Add every published row not yet in the store; returns how many runs were added. The
    check and the inserts share one transaction (``Store.add_missing_runs``), so two processes
    loading at once (two ``talkbench submit``) add each row exactly once."""
    return store.add_missing_runs(
        (run, cells, MethodInfo(name=run.method, kind="reported", paper=f"cited in {t.paper}"))
        for t in TABLES for run, cells in reported_runs(t)
    )
