"""Kill -9 and resume: a build killed twice mid-run (the whole process group: coordinator and
workers) and then re-run ends with the same catalog as an uninterrupted build: same rows,
same values (timestamps and timings aside), no duplicate clip ids, every accepted clip file
complete and byte-identical, no half-written files left."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from talkbench.datasets.catalog import Catalog
from talkbench.datasets.pipeline import build_dataset

CLIPS = ["WDA_KatieHill_000.mp4", "WDA_AlexandriaOcasioCortez_000.mp4", "retalking_2.mp4", "retalking_5.mp4",
         "latentsync_demo1_video.mp4", "liveportrait_d0.mp4", "RD_Radio10_0_clip_0.mp4"]


def _cli() -> list[str]:
    return [str(Path(sys.executable).parent / "talkbench")]


def _build_cmd(videos: Path, out: Path) -> list[str]:
    return _cli() + ["data", "build", "files", "--manifest", str(videos), "--out", str(out), "--workers", "2", "--json"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kill_when(proc: subprocess.Popen, out: Path, clips_done: int, timeout: float = 240) -> None:
    """kill -9 the process group once ``clips_done`` clip files exist (or the run ends)."""
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        if len(list((out / "clips").glob("[!.]*.mp4"))) >= clips_done:
            break
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.shared_data
def test_kill_and_resume_gives_same_catalog(shared_data, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in CLIPS:
        os.symlink(shared_data / "video" / name, videos / name)

    straight = tmp_path / "straight"
    build_dataset("files", videos, straight, workers=2, progress=False)

    resumed = tmp_path / "resumed"
    kills = 0
    for clips_done in (1, 3):
        proc = subprocess.Popen(_build_cmd(videos, resumed), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _kill_when(proc, resumed, clips_done)
        kills += proc.returncode == -signal.SIGKILL
    assert kills >= 1, "the build finished before it could be killed"
    with Catalog(resumed) as cat:
        partial = len(cat.rows())
    assert partial < len(CLIPS)
    done = subprocess.run(_build_cmd(videos, resumed), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    with Catalog(straight) as a, Catalog(resumed) as b:
        rows_a, rows_b = a.rows(volatile=False), b.rows(volatile=False)
        n, distinct = b.con.execute("SELECT count(*), count(DISTINCT clip_id) FROM clips").fetchone()
    assert n == distinct == len(CLIPS)
    for ra, rb in zip(rows_a, rows_b):
        assert ra == rb, ra["clip_id"]
    accepted = [r for r in rows_b if r["status"] == "accepted"]
    assert len(accepted) >= 3
    for r in accepted:
        assert _sha(straight / r["path"]) == _sha(resumed / r["path"]), r["path"]
    assert not list((resumed / "clips").glob(".*.mp4"))
    # 'talkbench data status' prints the same summary again, from the catalog alone
    status = subprocess.run(_cli() + ["data", "status", str(resumed), "--json"], capture_output=True, text=True)
    again = json.loads(status.stdout)
    final = json.loads(done.stdout)
    assert {k: again[k] for k in ("clips", "accepted", "rejected", "stages", "reasons")} == {
        k: final[k] for k in ("clips", "accepted", "rejected", "stages", "reasons")}
    assert again["meta"]["params"]["min_face_px"] == 512
    missing = subprocess.run(_cli() + ["data", "status", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no catalog here" in missing.stderr
    print(f"killed {kills}x, {partial} rows before the final run; {len(accepted)} accepted")
