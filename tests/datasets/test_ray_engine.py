"""The Ray engine runs the same stage functions as Ray tasks (a local Ray with 2 CPUs) and
gives the same catalog as the local engine on the same clips."""

from __future__ import annotations

import os

import pytest

from talkbench.datasets.catalog import Catalog
from talkbench.datasets.pipeline import build_dataset

CLIPS = ["retalking_5.mp4", "latentsync_demo1_video.mp4", "RD_Radio10_0_clip_0.mp4"]


@pytest.mark.slow
@pytest.mark.shared_data
def test_ray_engine_matches_local(shared_data, tmp_path):
    pytest.importorskip("ray")
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in CLIPS:
        os.symlink(shared_data / "video" / name, videos / name)

    local = build_dataset("files", videos, tmp_path / "local", engine="local", workers=1, progress=False)
    ray_summary = build_dataset("files", videos, tmp_path / "ray", engine="ray", workers=2, progress=False)
    assert ray_summary.engine == "ray"
    assert {k: getattr(ray_summary, k) for k in ("accepted", "rejected", "failed", "reasons")} == {
        k: getattr(local, k) for k in ("accepted", "rejected", "failed", "reasons")}
    with Catalog(tmp_path / "local") as a, Catalog(tmp_path / "ray") as b:
        rows_a, rows_b = a.rows(volatile=False), b.rows(volatile=False)
    for ra, rb in zip(rows_a, rows_b):
        diff = {k: (ra[k], rb[k]) for k in ra if ra[k] != rb[k]}
        assert not diff, (ra["clip_id"], diff)
    assert {r["clip_id"]: r["reason"] for r in rows_b} == {
        "retalking_5": None, "latentsync_demo1_video": "face_too_small", "RD_Radio10_0_clip_0": "too_short"}
