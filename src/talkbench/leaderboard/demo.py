"""The leaderboard part of ``talkbench demo``: sample corpus → built-in methods → metrics
engine → DuckDB → terminal leaderboard and static HTML site."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from talkbench.baselines.builtin import BUILTIN
from talkbench.leaderboard.evaluate import Say, default_settings, run_methods
from talkbench.leaderboard.ranking import Board, leaderboard
from talkbench.leaderboard.reported import load_reported
from talkbench.leaderboard.site import build_site
from talkbench.leaderboard.store import Store
from talkbench.leaderboard.tables import boards_rich

# What the demo scores on the sample benchmark: the bounds and tiny VQTalker on the speech-driven
# task (Table 2's setting); the tiny tokenizer beside the H.264 codec on reconstruction (Table 1's).
# The bounds ignore the task, so scoring all of them twice would only repeat their numbers.
DEMO_RUNS: tuple[tuple[str, str], ...] = (
    *((name, "speech-driven") for name in BUILTIN),
    ("vqtalker-tiny", "speech-driven"),
    ("h264", "reconstruction"),
    ("vqtalker-tokenizer-tiny", "reconstruction"),
)


@dataclass
class DemoResult:
    store: Path
    site: Path  # index.html
    run_ids: dict[tuple[str, str], str]  # (method, task) -> run id
    boards: list[Board] = field(default_factory=list)
    run_seconds: dict[str, float] = field(default_factory=dict)  # task -> generation and scoring of its methods, wall

    def unavailable(self) -> dict[str, str]:
        """Metrics no run could measure (their weights are not installed), with the fix."""
        out: dict[str, str] = {}
        for run in Store(self.store).runs(provenance="measured"):
            out.update(run["attributes"].get("unavailable", {}))
        return dict(sorted(out.items()))

    def rich_tables(self) -> list:
        # the demo names the unmeasured metrics once, with the commands that install their weights
        return boards_rich([b for b in self.boards if b.provenance == "measured"], unmeasured=False)


def run_demo_leaderboard(
    out_dir: str | Path,
    metrics: tuple[str, ...] | None = None,
    runs: tuple[tuple[str, str], ...] = DEMO_RUNS,
    say: Say | None = None,
    workers: int | None = None,
) -> DemoResult:
    """Generate each (method, task) of ``runs`` on the ``sample`` benchmark, evaluate with the
    metrics engine, store the runs (plus the papers' reported numbers) in
    ``out_dir/leaderboard.duckdb`` and build the site in ``out_dir/site``."""
    out = Path(out_dir)
    store = Store(out / "leaderboard.duckdb")
    load_reported(store)
    settings = default_settings(metrics)
    workers = workers or os.cpu_count() or 1
    run_ids, run_seconds = {}, {}
    for task in dict.fromkeys(t for _, t in runs):  # per task, every method in one engine call
        start = time.perf_counter()
        names = [name for name, t in runs if t == task]
        done = run_methods(store, names, "sample", task, out / "outputs" / task, settings=settings,
                           say=say, workers=workers)  # fmt: skip
        run_ids.update({(name, task): run_id for name, run_id in done.items()})
        run_seconds[task] = time.perf_counter() - start
    site = build_site(store, out / "site")
    return DemoResult(store.path, site, run_ids, leaderboard(store, "sample"), run_seconds)
