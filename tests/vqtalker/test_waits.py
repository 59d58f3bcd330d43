"""Ranks waiting for each other's data preparation (``training.preparing``/``long_barrier``):
two real gloo processes joined by ``training.init_distributed``. A failure on one rank is
raised promptly on every rank, naming the rank and its error (region preparation on rank 0, a
stage-2 shard on each rank); a rank that dies, during a preparation or before any (right after
joining), is noticed by the others at once; and a preparation longer than the default group's
timeout is waited through. Single-process: ``train.prepare_timeout_s`` and the regions check
of the ranks that did not prepare."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from talkbench import media
from talkbench.vqtalker.data import TrainingDataError, file_clip, regions_path
from talkbench.samples import sample_dir
from talkbench.vqtalker.inference import load_tokenizer
from talkbench.vqtalker.prepare import (
    check_regions,
    check_stage1,
    prepare_generator_samples,
    prepare_regions,
    stage1_path,
)
from talkbench.vqtalker.pretrained import TINY_TOKENIZER
from talkbench.vqtalker.training import (
    MAX_PREPARE_TIMEOUT_S,
    PREPARE_TIMEOUT_S,
    DistInfo,
    TrainingError,
    local_world_size,
    prepare_timeout,
    preparing,
)

DEFAULT_TIMEOUT_S = 6  # the default group's: the slow preparation below outlasts it
SLOW_S = 8

_SCRIPT = """
import json, os, sys, time
from pathlib import Path
import torch, torch.distributed as dist
from talkbench.vqtalker.training import TrainingError, finish_distributed, init_distributed, preparing

rank, out, mode = int(os.environ["RANK"]), Path(sys.argv[1]), sys.argv[2]
torch.set_num_threads(1)
info = init_distributed(60)  # the default group's timeout: TALKBENCH_DIST_TIMEOUT_MIN
if mode == "early":  # rank 1 fails before any preparation (say, out of GPU memory loading the tokenizer)
    if rank == 1:
        os._exit(3)
    time.sleep(1)  # rank 0's own work before its preparation
results = {}

def attempt(name, body):
    start = time.monotonic()
    try:
        results[name] = {"ok": body()}
    except TrainingError as exc:
        results[name] = {"error": str(exc), "type": type(exc).__name__}
    results[name]["wait"] = time.monotonic() - start
    (out / f"rank{rank}.json").write_text(json.dumps(results))

def regions():
    with preparing(info, "eye/mouth regions preparation", 60):
        if rank == 0:
            time.sleep(1)
            raise ValueError("no face in clip_x")

def samples(videos, cache_dir):
    from talkbench.vqtalker.inference import load_tokenizer
    from talkbench.vqtalker.prepare import prepare_generator_samples
    from talkbench.vqtalker.speech import get_speech_backend

    backend = get_speech_backend("cosyvoice-s3", onnx_path=sys.argv[5])  # a tiny S3 stand-in
    # workers=0: controls in this process; a spawned worker would run this script again, joining the group
    got = prepare_generator_samples(videos, load_tokenizer(sys.argv[3]), "0" * 64, backend, cache_dir=cache_dir,
                                    dist_info=info, timeout_s=60, workers=0)
    return [[s.clip, s.frames, s.targets.tolist()] for s in got]

def stage2():
    broken = []
    for r in range(info.world_size):
        broken.append(out / f"broken{r}.mp4")
        broken[-1].write_bytes(b"not a video")
    samples(broken, out / "cache")

def stage2_shared():  # rank 0 encodes the one clip, rank 1 reads it from the cache both see
    return samples([Path(sys.argv[4])], out / "shared")

def stage2_unshared():  # rank 1's cache is its own, without rank 0's clip
    return samples([Path(sys.argv[4])], out / ("shared" if rank == 0 else "rank1-cache"))

def slow():
    with preparing(info, "slow preparation", 60):
        if rank == 0:
            time.sleep(%(slow)d)

def dies():
    with preparing(info, "eye/mouth regions preparation", 60):
        if rank == 0:
            time.sleep(1)
            os._exit(3)

def early():
    with preparing(info, "eye/mouth regions preparation"):
        pass

def other_timeout():
    with preparing(info, "stage-2 preparation", 30):
        pass

if mode == "together":
    attempt("regions", regions)
    attempt("stage2", stage2)
    attempt("stage2_shared", stage2_shared)
    attempt("stage2_unshared", stage2_unshared)
    attempt("slow", slow)
    attempt("other_timeout", other_timeout)
    dist.barrier()  # the default group is still usable after all that
    results["after"] = "barrier"
    (out / f"rank{rank}.json").write_text(json.dumps(results))
    finish_distributed(info)
else:
    attempt(mode, dies if mode == "dies" else early)
    os._exit(0)  # the other rank is gone: no tear-down together
""" % {"slow": SLOW_S}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_ranks(tmp_path: Path, mode: str) -> dict[int, dict]:
    script, out = tmp_path / "ranks.py", tmp_path / mode
    out.mkdir()
    script.write_text(_SCRIPT)
    checkpoint = Path(__file__).parents[2] / "src/talkbench/vqtalker/pretrained/tiny-tokenizer.pt"
    clip, s3 = tmp_path / "clip.mp4", tmp_path / "s3.onnx"
    if mode == "together":  # a 10-frame talking clip and a tiny S3 tokenizer for the stage-2 cases
        from tests.vqtalker.test_speech import _loudness_tokenizer

        frames = media.read_frames(sample_dir() / "en_001.mp4", size=256)[:10]
        media.write_video(clip, iter(frames), audio=media.read_audio(sample_dir() / "en_001.mp4")[:6400])
        _loudness_tokenizer(s3)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "TALKBENCH_DIST_TIMEOUT_MIN": str(DEFAULT_TIMEOUT_S / 60)}
    procs = [subprocess.Popen([sys.executable, str(script), str(out), mode, str(checkpoint), str(clip), str(s3)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}) for rank in range(2)]
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
        on_rank0, _, on_rank1 = error.partition("; rank 1: TrainingDataError: controls failed for 1 of 1 clips: ")
        assert "broken0.mp4" in on_rank0 and "broken1" not in on_rank0
        assert "broken1.mp4" in on_rank1 and "broken0" not in on_rank1
        # one clip, encoded by rank 0: rank 1 reads it from the shared cache (the same sample)
        assert results["stage2_shared"]["ok"][0][:2] == ["clip", 10]
        # a cache rank 1 does not share: an error naming the missing file, raised on both ranks
        assert results["stage2_unshared"]["error"].startswith(
            "reading the stage-2 samples failed on rank 1: TrainingDataError: 1 of 1 stage-1 files other ranks "
            f"encoded are missing from the stage-2 cache: {tmp_path / 'together' / 'rank1-cache'}/")
        assert results["stage2_unshared"]["error"].endswith(
            f"; every node must see the stage-2 cache {tmp_path / 'together' / 'rank1-cache'} (a shared filesystem: "
            "put --cache-dir or TALKBENCH_CACHE_DIR there)")
        # rank 0 prepares longer than the default group's timeout: everyone waits it out
        assert results["slow"] == {"ok": None, "wait": results["slow"]["wait"]}
        # a preparation asking another timeout than the group was made with is refused up front, on every rank
        assert results["other_timeout"]["error"] == ("train.prepare_timeout_s=30 s, but the process group was "
                                                     "joined with 60 s: pass the config's value to "
                                                     "training.init_distributed")
        assert results["after"] == "barrier"
    assert ranks[0]["stage2_shared"]["ok"] == ranks[1]["stage2_shared"]["ok"]
    assert not list((tmp_path / "together" / "rank1-cache").glob("*/stage1_*.npz"))  # not encoded again there
    assert 0.9 < ranks[1]["regions"]["wait"] < 15  # waited for rank 0's second, then raised promptly
    assert ranks[1]["slow"]["wait"] > SLOW_S - 0.5 > DEFAULT_TIMEOUT_S  # rank 1 waited past its default timeout


def test_a_rank_that_dies_during_preparation_does_not_leave_the_others_waiting(tmp_path):
    ranks = _two_ranks(tmp_path, "dies")
    assert list(ranks) == [1]  # rank 0 died
    result = ranks[1]["dies"]
    assert result["type"] == "TrainingError" and result["wait"] < 30
    assert result["error"].startswith("eye/mouth regions preparation: rank 1 lost the other ranks (one died, or "
                                      "they did not all finish within train.prepare_timeout_s=60 s): ")


def test_a_rank_that_fails_before_any_preparation_does_not_leave_the_others_waiting(tmp_path):
    """The long group is made when the ranks join, not at the first preparation: a rank that
    dies before it (a config error, out of GPU memory loading the tokenizer) would otherwise
    leave the others in the group's creation for the whole train.prepare_timeout_s."""
    ranks = _two_ranks(tmp_path, "early")
    assert list(ranks) == [0]  # rank 1 died right after joining
    result = ranks[0]["early"]
    assert result["type"] == "TrainingError" and result["wait"] < 15
    assert result["error"].startswith("eye/mouth regions preparation: rank 0 lost the other ranks (one died, or "
                                      "they did not all finish within train.prepare_timeout_s=60 s): ")


def test_prepare_timeout_is_a_positive_number_of_seconds_up_to_30_days():
    assert prepare_timeout({}) == PREPARE_TIMEOUT_S == 86400
    assert prepare_timeout({"prepare_timeout_s": 600}) == 600.0
    assert prepare_timeout({"prepare_timeout_s": MAX_PREPARE_TIMEOUT_S}) == 30 * 86400
    for bad in (0, -5, "soon", None, float("nan")):
        with pytest.raises(TrainingError, match=r"train.prepare_timeout_s=.* is not a positive number of seconds"):
            prepare_timeout({"prepare_timeout_s": bad})
    for huge in (MAX_PREPARE_TIMEOUT_S + 1, 1e300, float("inf")):  # 1e300 s overflows datetime.timedelta
        with pytest.raises(TrainingError, match=r"train.prepare_timeout_s=.* is more than 2592000 s \(30 days\)"):
            prepare_timeout({"prepare_timeout_s": huge})


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


def test_a_speech_vocabulary_mismatch_is_refused_before_any_preparation(tmp_path):
    """build_trainer checks model.speech_vocab against the speech backend before it reads a clip
    (here the source does not even exist), not after hours of preparation."""
    from tests.vqtalker.test_speech import _loudness_tokenizer

    from talkbench.vqtalker.generator import load_generator_config
    from talkbench.vqtalker.generator_train import build_trainer

    cfg = load_generator_config("tiny")
    cfg["model"]["speech_vocab"] = 17
    cfg["speech"] = {"backend": "cosyvoice-s3", "onnx_path": str(_loudness_tokenizer(tmp_path / "s3.onnx"))}
    cfg["data"] = {"source": str(tmp_path / "no-such-dataset")}
    checkpoint = Path(__file__).parents[2] / "src/talkbench/vqtalker/pretrained/tiny-tokenizer.pt"
    with pytest.raises(TrainingError, match=r"^speech backend has 4096 codes but model.speech_vocab is 17: "
                                            r"set --set model.speech_vocab=4096$"):
        build_trainer(cfg, tmp_path / "run", checkpoint, device="cpu")


def test_ray_preparation_on_several_ranks_needs_a_cluster_address(tmp_path, monkeypatch):
    """Each rank starting (and shutting down) a Ray of its own would fight over one node: refused
    before anything is prepared. Workers are shared among a node's ranks."""
    two_ranks = DistInfo(0, 2, 0)
    with pytest.raises(TrainingError, match=r"^data.engine=ray with several ranks needs data.ray_address"):
        prepare_generator_samples([tmp_path / "a.mp4"], load_tokenizer(TINY_TOKENIZER), "0" * 64, None,
                                  cache_dir=tmp_path, dist_info=two_ranks, engine="ray")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert local_world_size() == 4


def test_the_other_ranks_check_names_missing_controls_once_stage1_files_are_there(tmp_path):
    video = Path(sample_dir()) / "en_001.mp4"
    target = stage1_path(video, "0" * 64, 25.0, tmp_path)
    with pytest.raises(TrainingDataError, match=r"^1 of 1 stage-1 files other ranks encoded are missing"):
        check_stage1([video], "0" * 64, 25.0, tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"")
    with pytest.raises(TrainingDataError, match=r"^1 of 1 controls files other ranks encoded are missing from the "
                                                r"stage-2 cache: .*controls_v1_25fps\.npz; every node must see"):
        check_stage1([video], "0" * 64, 25.0, tmp_path)
