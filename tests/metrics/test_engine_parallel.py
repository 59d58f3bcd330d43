"""One worker, a pool of worker processes and Ray give the same numbers; a killed evaluation
resumes from the on-disk cache; two processes share one cache safely."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from talkbench import media
from talkbench.metrics import cache
from talkbench.metrics.engine import ClipJob, EvalSettings, evaluate

SETTINGS = EvalSettings(metrics=("ssim", "cpbd", "lmd", "msi", "csim", "fvd"), csim_frame_stride=4, use_cache=False,
                        distribution_bootstrap_replicates=5)  # fmt: skip


@pytest.fixture(scope="module")
def jobs(sample_clips):
    """Two methods × three real clips of 16 frames (one FVD window each)."""
    out = []
    for c in sample_clips[:3]:
        reference = media.read_frames(c.video, size=256)[:16]
        out.append(ClipJob("reversed", c.id, reference[::-1].copy(), reference))
        out.append(ClipJob("shifted", c.id, np.roll(reference, 4, axis=0), reference))
    return out


def _numbers(report):
    return [(r.method, [(c.id, c.values, c.unavailable, c.faces, c.frames) for c in r.clips], r.summary,
             r.distribution, r.protocol_sha256) for r in report.evaluations]  # fmt: skip


@pytest.mark.slow
def test_one_worker_many_workers_and_ray_agree_exactly(jobs, stand_in_i3d):
    one = evaluate(jobs, SETTINGS, workers=1)
    assert [r.method for r in one.evaluations] == ["reversed", "shifted"]
    first = one.evaluations[0]
    assert first.errors == [] and first.unavailable == {}
    assert first.distribution["fvd"].generated_samples == first.distribution["fvd"].reference_samples == 3
    assert first.distribution["fvd"].ci95 is not None and first.summary["ssim"].ci95 is not None
    assert set(first.summary) >= {"ssim", "cpbd", "lmd", "m_lmd", "msi", "csim_dlib"}
    pool = evaluate(jobs, SETTINGS, workers=2)
    assert pool.evaluations[0].timing.workers == 2
    assert _numbers(pool) == _numbers(one)  # every value, interval, FVD and protocol: bit for bit
    on_ray = evaluate(jobs, SETTINGS, workers=2, engine="ray")
    assert on_ray.evaluations[0].timing.engine == "ray"
    assert _numbers(on_ray) == _numbers(one)
    # the comparison can fail: another method's numbers differ
    assert one.evaluations[1].distribution["fvd"].value != first.distribution["fvd"].value


def _eval_command(gen, gt, *extra):
    return [sys.executable, "-m", "talkbench", "eval", "-g", str(gen), "-r", str(gt), "-m", "ssim,cpbd,lmd",
            "--workers", "1", "--json", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def folders(sample_clips, tmp_path_factory):
    """The first 40 frames of four sample clips as ground truth, and a 'method' that is each
    clip mirrored (short, so that three evaluations fit in seconds)."""
    root = tmp_path_factory.mktemp("eval")
    gt, gen = root / "gt", root / "gen"
    gt.mkdir()
    gen.mkdir()
    for c in sample_clips[:4]:
        frames = media.read_frames(c.video, size=256)[:40]
        media.write_video(gt / c.video.name, frames, fps=25)
        media.write_video(gen / c.video.name, frames[:, :, ::-1].copy(), fps=25)
    return gen, gt


def test_a_killed_evaluation_resumes_from_the_cache(folders):
    gen, gt = folders
    env = {**os.environ}
    process = subprocess.Popen(_eval_command(gen, gt), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    clips = cache.cache_root() / "clips"
    deadline = time.monotonic() + 300
    while not list(clips.glob("*/*.npz")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(list(clips.glob("*/*.npz")))
    assert 1 <= done < 4, "kill the run after its first clip and before its last"
    assert all(cache.load_json("clips", json.loads(str(np.load(p)["__key__"]))) is not None for p in clips.glob("*/*.npz"))

    resumed = subprocess.run(_eval_command(gen, gt), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)["evaluations"][0]
    assert result["timing"]["clips_cached"] == done  # what was complete is reused, the rest measured
    fresh = subprocess.run(_eval_command(gen, gt, "--no-cache"), env=env, capture_output=True, text=True, timeout=600)
    expected = json.loads(fresh.stdout)["evaluations"][0]
    assert [c["values"] for c in result["clips"]] == [c["values"] for c in expected["clips"]]
    assert result["summary"] == expected["summary"]


def test_two_processes_share_one_cache(folders):
    gen, gt = folders
    runs = [subprocess.Popen(_eval_command(gen, gt), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]  # fmt: skip
    outputs = [r.communicate(timeout=600) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs[0][1] + outputs[1][1]
    first, second = (json.loads(out)["evaluations"][0] for out, _ in outputs)
    assert [c["values"] for c in first["clips"]] == [c["values"] for c in second["clips"]]
    info = {k.kind: k for k in cache.info()}
    assert info["clips"].entries == 4 and info["faces"].entries == 8  # 4 generated + 4 ground truths
    assert all(k.partial == 0 for k in info.values())
