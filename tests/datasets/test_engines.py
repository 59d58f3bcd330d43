"""The local engine when a worker process dies: only the clip that kills its worker is lost."""

from __future__ import annotations

import os

from talkbench.datasets.engines import LocalEngine
from talkbench.datasets.sources import ClipSpec
from talkbench.datasets.stages import BuildConfig, process_clip


def crash_on_boom(spec, cfg, events):
    """The pipeline's own stages, except that clip 'boom' kills its worker as a segfaulting
    decoder would (module level, so spawned workers can import it)."""
    if spec.clip_id == "boom":
        os._exit(139)
    return process_clip(spec, cfg, events)


def test_a_dying_worker_loses_only_its_own_clip(tmp_path):
    # sources that do not exist: the real stages reject them at once (reason source_missing)
    specs = [ClipSpec(name, "files", str(tmp_path / f"{name}.mp4")) for name in ("a", "b", "boom", "c", "d")]
    cfg = BuildConfig(out_dir=tmp_path / "out")
    rows = {r["clip_id"]: r for r in LocalEngine(workers=2, task=crash_on_boom).run(specs, cfg)}
    assert sorted(rows) == ["a", "b", "boom", "c", "d"]
    assert rows["boom"]["status"] == "failed" and "worker process died" in rows["boom"]["error"]
    for name in ("a", "b", "c", "d"):
        assert (rows[name]["status"], rows[name]["reason"]) == ("rejected", "source_missing"), rows[name]
