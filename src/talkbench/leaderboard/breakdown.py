"""Per-label breakdowns: a board metric averaged within each value of a clip label, such as
emotion accuracy per emotion on MEAD. A benchmark spec names its labels (``labels``) and each
clip its value (``BenchmarkClip.emotion``); the per-clip values come from the store."""

from __future__ import annotations

from dataclasses import dataclass, field

from talkbench.leaderboard.benchmarks import BenchmarkSpec
from talkbench.leaderboard.store import Store

# label → the value broken down by it
BROKEN_DOWN = {"emotion": "acc_emo"}


@dataclass(frozen=True)
class BreakdownRow:
    method: str
    values: dict[str, float]  # label value → mean over its clips
    clips: dict[str, int]  # label value → clips with a value


@dataclass(frozen=True)
class Breakdown:
    label: str  # "emotion"
    metric: str  # "acc_emo"
    groups: list[str]  # the label's values, in the spec's order
    rows: list[BreakdownRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"label": self.label, "metric": self.metric, "groups": self.groups,
                "rows": [{"method": r.method, "values": r.values, "clips": r.clips} for r in self.rows]}  # fmt: skip


def label_breakdowns(store: Store, spec: BenchmarkSpec, runs: dict[str, str]) -> list[Breakdown]:
    """For each label of ``spec`` with a broken-down value: per method (``runs``: method → run
    id, in board order) the mean of that value over the clips of each label value."""
    breakdowns = []
    for label in spec.labels:
        metric = BROKEN_DOWN.get(label)
        if metric is None:
            continue
        label_of = {c.id: getattr(c, label) for c in spec.clips}
        groups = list(dict.fromkeys(v for v in label_of.values() if v is not None))
        rows = []
        for method, run_id in runs.items():
            sums: dict[str, list[float]] = {}
            for clip in store.clip_values(run_id):
                group = label_of.get(clip["clip_id"])
                if clip["metric"] == metric and clip["value"] is not None and group is not None:
                    sums.setdefault(group, []).append(clip["value"])
            if sums:
                rows.append(BreakdownRow(method, {g: sum(v) / len(v) for g, v in sums.items()},
                                         {g: len(v) for g, v in sums.items()}))  # fmt: skip
        if rows:
            breakdowns.append(Breakdown(label, metric, groups, rows))
    return breakdowns
