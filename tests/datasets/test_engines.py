"""The local engine when a worker process dies: only the clip that kills its worker is lost;
progress as (done, total, stage) counts."""

from __future__ import annotations

import multiprocessing
import os
import time

from talkbench.datasets.engines import LocalEngine, StageProgress
from talkbench.datasets.sources import ClipSpec
from talkbench.datasets.stages import STAGES, BuildConfig, process_clip


def crash_on_boom(spec, cfg, events):
    """The pipeline's own stages, except that clip 'boom' kills its worker as a segfaulting
    decoder would (module level, so spawned workers can import it)."""
    if spec.clip_id == "boom":
        os._exit(139)
    return process_clip(spec, cfg, events)


def test_a_dying_worker_loses_only_its_own_clip(tmp_path):
    # sources that do not exist: the real stages fail them at once (reason source_missing)
    specs = [ClipSpec(name, "files", str(tmp_path / f"{name}.mp4")) for name in ("a", "b", "boom", "c", "d")]
    cfg = BuildConfig(out_dir=tmp_path / "out")
    rows = {r["clip_id"]: r for r in LocalEngine(workers=2, task=crash_on_boom).run(specs, cfg)}
    assert sorted(rows) == ["a", "b", "boom", "c", "d"]
    assert rows["boom"]["status"] == "failed" and "worker process died" in rows["boom"]["error"]
    for name in ("a", "b", "c", "d"):
        assert (rows[name]["status"], rows[name]["reason"]) == ("failed", "source_missing"), rows[name]


def slow_on_slow(spec, cfg, events):
    """The pipeline's stages, except that clip 'slow' takes a minute."""
    if spec.clip_id == "slow":
        time.sleep(60)
    return process_clip(spec, cfg, events)


def test_stopping_early_kills_the_workers_at_once(tmp_path):
    """A caller that stops reading rows (an error while writing the catalog, Ctrl-C) must not
    wait for the clips in flight, nor leave their workers running."""
    specs = [ClipSpec(name, "files", str(tmp_path / f"{name}.mp4")) for name in ("slow", "a")]
    cfg = BuildConfig(out_dir=tmp_path / "out")
    before = {p.pid for p in multiprocessing.active_children()}
    rows = LocalEngine(workers=2, task=slow_on_slow).run(specs, cfg, progress=lambda done, total, stage: None)
    assert next(rows)["clip_id"] == "a"
    workers = [p for p in multiprocessing.active_children() if p.pid not in before]
    assert len(workers) == 2
    t0 = time.monotonic()
    rows.close()
    assert time.monotonic() - t0 < 10
    for p in workers:  # SIGKILLed by close(); on a loaded machine the kernel may take a moment to reap them
        p.join(timeout=max(0.0, 10 - (time.monotonic() - t0)))
    assert not [p for p in workers if p.is_alive()]


def test_stage_progress_counts_clips_past_each_stage():
    calls = []
    counter = StageProgress(lambda *call: calls.append(call), total=2, stages=("fetch", "cut", "face"))
    assert calls == [(0, 2, "fetch"), (0, 2, "cut"), (0, 2, "face")]  # every stage announced first
    calls.clear()
    counter.entered("a", "fetch")  # nothing is past a stage yet
    counter.entered("a", "face")  # a is past fetch and cut
    counter.entered("b", "cut")
    counter.finished("b")  # b stopped in cut: it moves on in every later stage too
    counter.finished("a")
    counter.finished("a")  # a row reported twice counts once
    assert calls == [(1, 2, "fetch"), (1, 2, "cut"), (2, 2, "fetch"), (2, 2, "cut"), (1, 2, "face"), (2, 2, "face")]


def test_local_engine_reports_progress_in_this_process(tmp_path):
    """workers=0: the real stages fail missing sources in fetch; every stage's count ends at the
    number of clips, and no count ever goes past it or backwards."""
    specs = [ClipSpec(name, "files", str(tmp_path / f"{name}.mp4")) for name in ("a", "b", "c")]
    calls = []
    rows = list(LocalEngine(workers=0).run(specs, BuildConfig(out_dir=tmp_path / "out"),
                                           progress=lambda *call: calls.append(call)))
    assert [r["reason"] for r in rows] == ["source_missing"] * 3
    last = {}
    for done, total, stage in calls:
        assert total == 3 and done >= last.get(stage, 0) and stage in STAGES
        last[stage] = done
    assert last == {stage: 3 for stage in STAGES}
    assert calls[: len(STAGES)] == [(0, 3, stage) for stage in STAGES]
