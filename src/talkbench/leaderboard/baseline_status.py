"""Which competitor methods can be run, imported, or only quoted, and where the papers report
them: the rows the demo and ``talkbench baselines list`` show. The presets say what a method's
code can do (``baselines.external``); the papers' tables (``leaderboard.paper``) say which task
each table a method appears in is about."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from talkbench.baselines.external.preset import STATUS_LABEL, all_presets
from talkbench.leaderboard.paper import TABLES

# the comparison tables first, in the papers' order; then the rest
TABLE_ORDER = {"vqtalker:1": 0, "vqtalker:2": 1, "flowvqtalker:1": 2}


@dataclass(frozen=True)
class StatusRow:
    method: str
    status: str  # "runnable preset" | "import only" | "reported only"
    tables: tuple[str, ...]  # "vqtalker:1", "flowvqtalker:1", ...
    tasks: tuple[str, ...]
    code: str  # repository URL, or "" when the code is not public
    commit: str  # pinned commit, or ""
    licence: str
    official: bool
    note: str = ""
    by_table: tuple[tuple[str, str], ...] = ()  # (table, status for that table's task)

    def to_dict(self) -> dict:
        return asdict(self)


def baseline_status_rows() -> list[StatusRow]:
    """One row per competitor method of the two papers, in table order; ``by_table`` says, per
    table, whether the method can be run for that table's task, imported, or only quoted."""
    table_task = {t.key: t.task for t in TABLES}
    rows = []
    for p in all_presets():
        note = ""
        if not p.code.public:
            note = p.code.note or "no public code"
        elif not p.code.official:
            note = "third-party re-implementation"
        if p.requires_gpu and p.status == "runnable":
            note = "; ".join(x for x in (note, "needs CUDA") if x)
        by_table = []
        for key in p.tables:
            task = table_task.get(key)
            if p.status == "runnable" and task is not None and task not in p.tasks:
                # the code runs, but not for this table's task (AniTalker has no video-driven entry point)
                by_table.append((key, STATUS_LABEL["import-only" if p.released_outputs else "reported-only"]))
            else:
                by_table.append((key, p.status_label))
        rows.append(StatusRow(
            method=p.name, status=p.status_label, tables=tuple(p.tables), tasks=tuple(p.tasks),
            code=p.code.url or "", commit=p.code.commit or "", licence=p.code.licence if p.code.public else "",
            official=p.code.official, note=note, by_table=tuple(by_table),
        ))
    rows.sort(key=lambda r: (min((TABLE_ORDER.get(t, 9) for t in r.tables), default=9), r.method.lower()))
    return rows
