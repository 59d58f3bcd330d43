"""The one training module of both stages: the batch per process from ``train.global_batch``,
the scalar log that widens for validation columns, exact resume of stage 1 through the
DataLoader path (slow: eye/mouth regions are prepared with dlib), and a 2-process CPU torchrun
(gloo) that trains stage 1 and then stage 2 from a built sample dataset through the DataLoader
path, with held-out validation and the best checkpoint (slow)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from talkbench.vqtalker.training import ScalarLog, Stage, TrainingError, per_process_batch, run_fit


def test_global_batch_is_divided_over_processes_and_accumulation():
    assert per_process_batch({"global_batch": 16}, world_size=2, grad_accum=2) == 4
    assert per_process_batch({"global_batch": 16, "batch_size": 3}, world_size=1) == 16  # global wins
    assert per_process_batch({"batch_size": 3}, world_size=4, grad_accum=2) == 3  # old configs: per process
    with pytest.raises(TrainingError, match=r"train.global_batch=12 is not divisible by world_size \(2\) × "
                                            r"train.grad_accum \(4\) = 8"):
        per_process_batch({"global_batch": 12}, world_size=2, grad_accum=4)
    with pytest.raises(TrainingError, match="neither train.global_batch nor train.batch_size"):
        per_process_batch({}, world_size=1)


def test_scalar_log_widens_its_header_and_keeps_earlier_rows(tmp_path):
    first = ScalarLog(tmp_path, ["step", "time", "l1"])
    first.write({"step": 1, "time": 0.1, "l1": 0.5})
    first.write({"step": 2, "time": 0.2, "l1": 0.4, "val_ssim": 0.7})
    first.close()
    resumed = ScalarLog(tmp_path, ["step", "time", "l1"])  # a resumed run appends under the wider header
    resumed.write({"step": 3, "time": 0.3, "l1": 0.3})
    resumed.close()
    with open(tmp_path / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["step", "time", "l1", "val_ssim"]
    assert [(r["step"], r["l1"], r["val_ssim"]) for r in rows] == [("1", "0.5", ""), ("2", "0.4", "0.7"), ("3", "0.3", "")]


@pytest.fixture(scope="module")
def built_dataset(tmp_path_factory, sample_clips):
    """Three sample clips (512², a face, speech) built into a catalog: two train, one val."""
    from talkbench.datasets.pipeline import build_dataset
    from talkbench.datasets.sources import ClipSpec

    out = tmp_path_factory.mktemp("built") / "dataset"
    specs = [ClipSpec(c.id, "files", str(c.video), 0.0, 3.2, split=split)
             for c, split in zip(sample_clips[:3], ("train", "train", "val"))]
    summary = build_dataset("files", None, out, specs=specs, workers=1, progress=False, min_face_px=256)
    assert summary.accepted == 3
    return out


def test_a_resumed_log_drops_the_rows_past_its_checkpoint(tmp_path):
    first = ScalarLog(tmp_path, ["step", "time", "nll"])
    for step in (10, 20, 30):
        first.write({"step": step, "time": 0.0, "nll": step / 10})
    first.close()
    resumed = ScalarLog(tmp_path, ["step", "time", "nll"])  # resumed from the step-20 checkpoint
    resumed.drop_after(20)
    resumed.write({"step": 30, "time": 0.0, "nll": 9.0})
    resumed.close()
    with open(tmp_path / "log.csv", newline="") as fh:
        assert [(r["step"], r["nll"]) for r in csv.DictReader(fh)] == [("10", "1.0"), ("20", "2.0"), ("30", "9.0")]


class LineStage(Stage):
    """A one-weight stage whose validation fails: the loop must log that and train on."""

    fields = ["loss"]

    def __init__(self, config, out_dir):
        super().__init__(config, out_dir, device="cpu")
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.optim = torch.optim.SGD([self.weight], lr=0.1)

    def train_step(self):
        loss = (self.weight - 1.0) ** 2
        self.optim.zero_grad()
        loss.backward()
        self.optim.step()
        self.step += 1
        return {"loss": float(loss.detach())}

    def validate(self, out_dir):
        raise OSError(f"{out_dir}: no space left on device")

    def state_dict(self):
        return {"format": "line/1", "step": self.step, "weight": self.weight.detach().clone()}


def test_a_failed_validation_costs_its_row_not_the_run(tmp_path, caplog):
    stage = LineStage({"train": {"best_metric": "ssim"}}, tmp_path)
    rows = run_fit(stage, steps=6, log_every=2, checkpoint_every=3, eval_every=None, validate_every=2)
    assert stage.step == 6 and [r["step"] for r in rows] == [2, 4, 6]
    assert all(r["val_error"] == 1.0 for r in rows)
    assert "validation at step 2 failed: OSError" in caplog.text
    saved = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)
    assert saved["step"] == 6 and saved["run_shape"] == {"world_size": 1, "grad_accum": 1}
    assert not (tmp_path / "checkpoints" / "best.pt").exists()


@pytest.mark.slow
def test_stage1_from_a_built_dataset_resumes_exactly_through_the_loader(built_dataset, tmp_path):
    """The DataLoader path: 2 steps, save, a fresh trainer resumes for the 3rd; the losses and
    weights equal 3 uninterrupted steps (the batch sampler restarts at the saved step)."""
    from talkbench.vqtalker.tokenizer import load_config
    from talkbench.vqtalker.train import Trainer
    from talkbench.vqtalker.training import apply_overrides

    cfg = apply_overrides(load_config("tiny"), [
        "model.size=32", "train.global_batch=2", "train.grad_accum=2", "train.loader_workers=0",
        f"data.source={built_dataset}", "data.splits={train: [train], val: [val]}",
    ])
    straight = Trainer(cfg, tmp_path / "a")
    assert straight.regions_root == built_dataset / "vqtalker" / "regions"  # beside the dataset, not in the cache
    assert [c.clip_id for c in straight.train_clips] == ["ar_001", "sw_001"]
    assert [c.clip_id for c in straight.val_clips] == ["zh_001"] and straight.batch_size == 1
    losses_a = [straight.train_step() for _ in range(3)]
    first = Trainer(cfg, tmp_path / "b")
    losses_b = [first.train_step() for _ in range(2)]
    ckpt = first.save()
    resumed = Trainer(cfg, tmp_path / "b")
    resumed.load(ckpt)
    losses_b.append(resumed.train_step())
    assert losses_a == losses_b and losses_a[0]["mouth"] > 0  # regions were prepared and used
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert straight.evaluate()["eval_l1"] == resumed.evaluate()["eval_l1"] > 0  # fixed pairs of the val clip


def _torchrun(module: str, args: list[str]) -> dict:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", module, *args],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _log_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_two_processes_train_both_stages_from_a_built_dataset(built_dataset, tmp_path):
    from tests.vqtalker.test_speech import _loudness_tokenizer

    from talkbench.vqtalker.generator import load_generator_config
    from talkbench.vqtalker.inference import load_checkpoint, load_generator_checkpoint

    splits = "data.splits={train: [train], val: [val]}"
    # stage 1: global batch 4 over 2 processes, eye/mouth losses on (regions prepared per clip)
    tok_out = tmp_path / "tokenizer"
    summary = _torchrun("talkbench.vqtalker.train", [
        "--config", "tiny", "--out", str(tok_out), "--steps", "2", "--save-replicas",
        "--set", f"data.source={built_dataset}", "--set", splits, "--set", "model.size=32",
        "--set", "train.global_batch=4", "--set", "train.loader_workers=1", "--set", "train.validate_every=2",
        "--set", "train.best_metric=ssim", "--set", "train.validate_frames=8", "--set", "train.eval_every=2",
    ])
    assert summary["world_size"] == 2 and summary["step"] == 2 and summary["batch_per_process"] == 2
    assert sorted(p.name for p in (built_dataset / "vqtalker" / "regions").glob("*.npz")) == \
        sorted(f"{c}.npz" for c in ("ar_001", "sw_001"))  # the training split's clips only
    r0 = torch.load(tok_out / "replica_rank0.pt", weights_only=True)
    r1 = torch.load(tok_out / "replica_rank1.pt", weights_only=True)
    assert all(torch.equal(r0["tokenizer"][k], r1["tokenizer"][k]) for k in r0["tokenizer"])
    rows = _log_rows(tok_out / "log.csv")
    assert rows[-1]["step"] == "2" and 0 < float(rows[-1]["val_ssim"]) <= 1 and float(rows[-1]["eval_l1"]) > 0
    best = json.loads((tok_out / "checkpoints" / "best.json").read_text())
    assert best["step"] == 2 and load_checkpoint(tok_out / "checkpoints" / "best.pt")["step"] == 2

    # stage 2 on the stage-1 checkpoint: tokens prepared sharded over the 2 ranks, val clip held out
    cfg = load_generator_config("tiny")
    cfg["model"].update(speech_vocab=4096, dropout=0.0)
    cfg["speech"] = {"backend": "cosyvoice-s3", "onnx_path": str(_loudness_tokenizer(tmp_path / "s3-tiny.onnx"))}
    cfg["data"] = {"source": str(built_dataset), "splits": {"train": ["train"], "val": ["val"]}, "fps": 25}
    cfg["train"].update(global_batch=4, window=24, log_every=1, checkpoint_every=100, validate_every=2,
                        best_metric="ssim", validate_frames=8)
    cfg["train"].pop("batch_size", None)
    (tmp_path / "generator.yaml").write_text(yaml.safe_dump(cfg))
    gen_out = tmp_path / "generator"
    summary = _torchrun("talkbench.vqtalker.generator_train", [
        "--config", str(tmp_path / "generator.yaml"), "--tokenizer", str(tok_out / "checkpoints" / "latest.pt"),
        "--out", str(gen_out), "--steps", "2", "--cache-dir", str(tmp_path / "cache"),
    ])
    assert summary["world_size"] == 2 and summary["step"] == 2 and summary["batch_per_process"] == 2
    assert math.isfinite(summary["last"]["nll"]) and math.isfinite(summary["last"]["eval"])
    saved = load_generator_checkpoint(gen_out / "checkpoints" / "latest.pt")
    assert saved["step"] == 2
    assert saved["meta"]["train_clips"] == ["ar_001", "sw_001"] and saved["meta"]["holdout_clips"] == ["zh_001"]
    rows = _log_rows(gen_out / "log.csv")
    assert rows[0]["step"] == "0" and rows[-1]["step"] == "2" and rows[-1]["val_ssim"] != ""
    assert (gen_out / "checkpoints" / "best.pt").is_file()
