"""Ranks waiting for each other's data preparation (``training.preparing``/``long_barrier``):
two real gloo processes. A failure on one rank is raised promptly on every rank, naming the
rank and its error (region preparation on rank 0, a stage-2 shard on each rank); a rank that
dies is noticed by the others at once; and a preparation longer than the default group's
timeout is waited through. Single-process: ``train.prepare_timeout_s`` and the regions check
of the ranks that did not prepare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from talkbench import media
from talkbench.vqtalker.data import TrainingDataError, file_clip, regions_path
from talkbench.vqtalker.prepare import check_regions, prepare_regions
from talkbench.vqtalker.training import PREPARE_TIMEOUT_S, DistInfo, TrainingError, prepare_timeout, preparing

DEFAULT_TIMEOUT_S = 6  # the default group's: the slow preparation below outlasts it
SLOW_S = 8

_SCRIPT = """
import datetime, json, os, sys, time
from pathlib import Path
import torch, torch.distributed as dist
from talkbench.vqtalker.inference import load_tokenizer
from talkbench.vqtalker.prepare import prepare_generator_samples
from talkbench.vqtalker.speech import get_speech_backend
from talkbench.vqtalker.training import DistInfo, TrainingError, preparing

rank, world, init, out, mode = int(sys.argv[1]), 2, sys.argv[2], Path(sys.argv[3]), sys.argv[4]
torch.set_num_threads(1)
tokenizer = load_tokenizer(sys.argv[5])
backend = get_speech_backend("whisper")  # loads its model on first use: never here
dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                        timeout=datetime.timedelta(seconds=%(default)d))
info = DistInfo(rank, world, rank)
results = {}

def attempt(name, body):
    start = time.monotonic()
    try:
        body()
        results[name] = {"ok": True}
    except TrainingError as exc:
        results[name] = {"error": str(exc), "type": type(exc).__name__}
    results[name]["wait"] = time.monotonic() - start
    (out / f"rank{rank}.json").write_text(json.dumps(results))

def regions():
    with preparing(info, "eye/mouth regions preparation", 60):
        if rank == 0:
            time.sleep(1)
            raise ValueError("no face in clip_x")

def stage2():
    broken = []
    for r in range(world):
        broken.append(out / f"broken{r}.mp4")
        broken[-1].write_bytes(b"not a video")
    prepare_generator_samples(broken, tokenizer, "0" * 64, backend, cache_dir=out / "cache", dist_info=info,
                              timeout_s=60)

def slow():
    with preparing(info, "slow preparation", 60):
        if rank == 0:
            time.sleep(%(slow)d)

def dies():
    with preparing(info, "eye/mouth regions preparation", 60):
        if rank == 0:
            time.sleep(1)
            os._exit(3)

if mode == "together":
    attempt("regions", regions)
    attempt("stage2", stage2)
    attempt("slow", slow)
    dist.barrier()  # the default group is still usable after all that
    results["after"] = "barrier"
    (out / f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()
else:
    attempt("dies", dies)
    os._exit(0)  # rank 0 is gone: no tear-down together
""" % {"default": DEFAULT_TIMEOUT_S, "slow": SLOW_S}


def _two_ranks(tmp_path: Path, mode: str) -> dict[int, dict]:
    script, out = tmp_path / "ranks.py", tmp_path / mode
    out.mkdir()
    script.write_text(_SCRIPT)
    checkpoint = Path(__file__).parents[2] / "src/talkbench/vqtalker/pretrained/tiny-tokenizer.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), f"file://{tmp_path / ('store-' + mode)}",
                               str(out), mode, str(checkpoint)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env) for rank in range(2)]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=120)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"the ranks of {mode!r} hang")
    results = {}
    for rank in range(2):
        path = out / f"rank{rank}.json"
        if path.is_file():
            results[rank] = json.loads(path.read_text())
    assert results, "\n".join(log[-3000:] for log in logs)
    return results


def test_a_failure_on_one_rank_is_raised_on_every_rank_and_a_long_preparation_is_waited_through(tmp_path):
    ranks = _two_ranks(tmp_path, "together")
    assert sorted(ranks) == [0, 1]
    for rank, results in ranks.items():
        # rank 0's region preparation fails: both raise, naming rank 0 and its error
        assert results["regions"]["type"] == "TrainingError"
        assert results["regions"]["error"] == \
            "eye/mouth regions preparation failed on rank 0: ValueError: no face in clip_x"
        # stage 2: each rank encodes only its shard (clip i on rank i), and both hear of both failures
        error = results["stage2"]["error"]
        assert error.startswith("stage-2 preparation failed on rank 0: ")
        on_rank0, _, on_rank1 = error.partition("; rank 1: MediaError: ")
        assert "broken0.mp4" in on_rank0 and "broken1" not in on_rank0
        assert "broken1.mp4" in on_rank1 and "broken0" not in on_rank1
        # rank 0 prepares longer than the default group's timeout: everyone waits it out
        assert results["slow"] == {"ok": True, "wait": results["slow"]["wait"]}
        assert results["after"] == "barrier"
    assert 0.9 < ranks[1]["regions"]["wait"] < 15  # waited for rank 0's second, then raised promptly
    assert ranks[1]["slow"]["wait"] > SLOW_S - 0.5 > DEFAULT_TIMEOUT_S  # rank 1 waited past its default timeout


def test_a_rank_that_dies_during_preparation_does_not_leave_the_others_waiting(tmp_path):
    ranks = _two_ranks(tmp_path, "dies")
    assert list(ranks) == [1]  # rank 0 died
    result = ranks[1]["dies"]
    assert result["type"] == "TrainingError" and result["wait"] < 30
    assert result["error"].startswith("eye/mouth regions preparation: rank 1 lost the other ranks (one died, or "
                                      "they did not all finish within train.prepare_timeout_s=60 s): ")


def test_prepare_timeout_is_a_positive_number_of_seconds():
    assert prepare_timeout({}) == PREPARE_TIMEOUT_S == 86400
    assert prepare_timeout({"prepare_timeout_s": 600}) == 600.0
    for bad in (0, -5, "soon", None, float("nan")):
        with pytest.raises(TrainingError, match=r"train.prepare_timeout_s=.* is not a positive number of seconds"):
            prepare_timeout({"prepare_timeout_s": bad})


def test_without_a_process_group_a_failure_passes_as_it_is():
    with pytest.raises(TrainingDataError, match="as it is"):
        with preparing(DistInfo(1, 2), "preparation"):  # torchrun-like sizes, but no group is up
            raise TrainingDataError("as it is")


def test_the_other_ranks_check_names_missing_and_stale_regions_files(tmp_path):
    rng = np.random.default_rng(0)
    clips = [file_clip(media.write_video(tmp_path / f"{name}.mp4", (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
                                                                      for _ in range(4)))) for name in ("a", "b")]
    root = tmp_path / "regions"
    with pytest.raises(TrainingDataError, match=rf"2 of 2 .*{regions_path(root, clips[0])}, "
                                                 rf"{regions_path(root, clips[1])}; every node must see the regions "
                                                 rf"folder {root} \(a shared filesystem"):
        check_regions(clips, root)
    prepare_regions(clips, root, workers=0, progress=False)
    check_regions(clips, root)
    media.write_video(clips[1].path, (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)))
    with open(clips[1].path, "ab") as fh:
        fh.write(b"\0" * 10)  # another file under the same name (another size): its boxes are not this file's
    with pytest.raises(TrainingDataError, match=rf"^1 of 2 .*: {regions_path(root, clips[1])}; every node"):
        check_regions(clips, root)
