"""``talkbench submit`` as real processes: two at once both land; a killed one leaves no run."""

from __future__ import annotations

import numpy as np

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from talkbench import media
from talkbench.leaderboard.store import Store

TALKBENCH = [sys.executable, "-m", "talkbench"]


def _submission(root: Path, method: str, sample_clips) -> Path:
    sub = root / method
    (sub / "videos").mkdir(parents=True)
    (sub / "submission.yaml").write_text(yaml.safe_dump({
        "method": method, "authors": ["T. Ester"], "licence": "MIT", "resolution": 512,
        "contact": "t@example.org"}))
    for clip in sample_clips:  # a lossy re-encode: a copy of the ground truth is refused
        media.write_video(sub / "videos" / f"{clip.id}.mp4", (np.roll(f, 1, axis=1) for f in media.iter_frames(clip.video)), crf=23)
    return sub


def _env():
    return {**os.environ, "TALKBENCH_LEADERBOARD": "", "PYTHONUNBUFFERED": "1",
            "TALKBENCH_SUBMITTER_KEY": "cli-test-submitter-key"}


@pytest.mark.slow
def test_two_concurrent_submits_both_land(tmp_path, sample_clips):
    db = tmp_path / "lb.duckdb"
    subs = [_submission(tmp_path, name, sample_clips) for name in ("AlphaTalker", "BetaTalker")]
    procs = [subprocess.Popen(TALKBENCH + ["submit", str(s), "--benchmark", "sample", "--store", str(db),
                                           "--metrics", "ssim"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for s in subs]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "stored run" in out
    store = Store(db)
    runs = store.runs(provenance="measured")
    assert sorted(r["method"] for r in runs) == ["AlphaTalker", "BetaTalker"]
    for r in runs:
        assert len(store.clip_values(r["run_id"])) == 8  # one ssim per clip, all there
    assert len({r["protocol_hash"] for r in runs}) == 1
    assert len(store.runs(provenance="reported")) == 73  # loaded once, not twice


@pytest.mark.slow
def test_killed_submit_leaves_no_partial_run(tmp_path, sample_clips):
    db = tmp_path / "lb.duckdb"
    sub = _submission(tmp_path, "KilledTalker", sample_clips)
    p = subprocess.Popen(TALKBENCH + ["submit", str(sub), "--benchmark", "sample", "--store", str(db),
                                      "--metrics", "ssim,cpbd", "--workers", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**_env(), "TALKBENCH_CACHE_DIR": str(tmp_path / "cache")})  # measured, not cached
    seen = ""
    deadline = time.monotonic() + 240
    while "evaluating tr_001" not in seen and time.monotonic() < deadline:  # 6th of 8 clips done, 2 to go
        line = p.stderr.readline()
        if not line:
            break
        seen += line
    assert "evaluating" in seen, seen
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    store = Store(db)
    assert store.runs(provenance="measured") == []
    assert store.query("SELECT count(*) AS n FROM clip_results")[0]["n"] == 0
    assert "KilledTalker" not in store.methods()


WRITER = textwrap.dedent("""
    import sys
    from talkbench.leaderboard.store import Store, Run, ClipValue
    store = Store(sys.argv[1])
    i = 0
    while True:
        run = Run(method="w", benchmark="sample", benchmark_version="1", task="speech-driven",
                  provenance="measured", protocol={"i": i})
        store.add_run(run, [ClipValue(f"clip{k}", "ssim", k / 100) for k in range(200)])
        i += 1
        print(i, flush=True)
""")


@pytest.mark.slow
def test_kill_during_writes_leaves_only_whole_runs(tmp_path):
    db = tmp_path / "lb.duckdb"
    Store(db)
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    for _ in range(5):
        assert p.stdout.readline()
    time.sleep(0.37)  # somewhere inside a later transaction
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    store = Store(db)
    counts = store.query("SELECT r.run_id, count(c.metric) AS n FROM runs r "
                         "LEFT JOIN clip_results c USING (run_id) GROUP BY r.run_id")
    assert len(counts) >= 5
    assert {c["n"] for c in counts} == {200}


def test_a_paper_protocol_takes_only_the_task_and_benchmarks_of_its_table():
    from talkbench.leaderboard.evaluate import EvaluationError, check_protocol_fits

    check_protocol_fits("vqtalker-t1", "reconstruction", "hdtf-test", "sub.zip")
    check_protocol_fits("talkbench", "speech-driven", "sample", "sub.zip")  # talkbench's own: any run
    with pytest.raises(EvaluationError, match=r"sub.zip: protocol vqtalker-t1-v1 reproduces VQTalker Table 1 "
                                              r"\(reconstruction on hdtf-test\); this is speech-driven on hdtf-test"):
        check_protocol_fits("vqtalker-t1", "speech-driven", "hdtf-test", "sub.zip")
    with pytest.raises(EvaluationError, match="speech-driven on hdtf-test, mnte\\); this is speech-driven on sample"):
        check_protocol_fits("vqtalker-t2", "speech-driven", "sample", "sub.zip")
