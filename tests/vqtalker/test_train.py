"""Training: exact resume, weights-only checkpoints, the tiny overfit (slow) and a 2-process
torchrun/gloo run whose replicas stay identical (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from talkbench.vqtalker.data import clip_boxes, default_regions_root, file_clip, pair_loader, regions_path
from talkbench.vqtalker.inference import (
    LEGACY_TOKENIZER_FORMAT, LEGACY_TOKENIZER_KEY, TOKENIZER_FORMAT, TOKENIZER_KEY, InferenceError, load_checkpoint,
    load_tokenizer,
)
from talkbench.vqtalker.prepare import prepare_regions
from talkbench.vqtalker.pretrained import TINY_TOKENIZER
from talkbench.vqtalker.tokenizer import load_config
from talkbench.vqtalker.train import Trainer, apply_overrides


def _clips(one_clip, cache_dir):
    """The clip as training reads it, its eye/mouth regions prepared once (in this process) in
    the session cache, where the trainers of these tests (``data.cache_dir``) find them."""
    clips = [file_clip(one_clip)]
    prepare_regions(clips, default_regions_root(None, cache_dir), workers=0, progress=False)
    return clips


def _config(cache_dir, overrides):
    return apply_overrides(load_config("tiny"), [*overrides, f"data.cache_dir={cache_dir}"])


# Every loss term on: L1, eye/mouth (1000), perceptual (random-init VGG19, NOT pretrained), GAN.
FULL_LOSS = [
    "model.size=32", "train.batch_size=2", "train.grad_accum=2",
    "loss.perceptual=0.01", "loss.vgg_weights=random", "loss.perceptual_scales=[1, 0.5]",
    "loss.adversarial=1.0", "loss.eye=1000", "loss.mouth=1000",
]


def test_clip_regions_and_region_boxes(one_clip, cache_dir):
    (clip,) = _clips(one_clip, cache_dir)
    root = default_regions_root(None, cache_dir)
    src, tgt, boxes = next(iter(pair_loader([clip], 32, 2, seed=0, workers=0, regions_root=root)))
    assert src.dtype == tgt.dtype == torch.uint8 and src.shape == (2, 32, 32, 3)
    all_boxes = clip_boxes(root, clip, 32, 0.25)
    assert all_boxes.shape == (clip.frames, 3, 4) and torch.isfinite(boxes).all()
    right_eye, left_eye, mouth = all_boxes[0]
    # image left eye is left of the other eye, both above the mouth, all inside the frame
    assert right_eye[2] <= left_eye[2] and right_eye[0] < left_eye[0]
    assert max(right_eye[3], left_eye[3]) < mouth[3]
    assert (all_boxes[0] >= -4).all() and (all_boxes[0] <= 36).all()
    assert regions_path(root, clip).is_file()
    assert prepare_regions([clip], root, workers=0, progress=False) == []  # computed once per clip, cached


def test_resume_equals_uninterrupted_run(one_clip, cache_dir, tmp_path):
    clips = _clips(one_clip, cache_dir)
    cfg = _config(cache_dir, FULL_LOSS)

    straight = Trainer(cfg, tmp_path / "a", clips=clips)
    losses_a = [straight.train_step() for _ in range(3)]

    first = Trainer(cfg, tmp_path / "b", clips=clips)
    losses_b = [first.train_step() for _ in range(2)]
    ckpt = first.save()
    del first
    resumed = Trainer(cfg, tmp_path / "b", clips=clips)
    resumed.load(ckpt)
    assert resumed.step == 2
    losses_b.append(resumed.train_step())

    assert set(losses_a[0]) >= {"l1", "eye", "mouth", "perceptual", "gan_g", "gan_d", "total"}
    assert losses_a == losses_b  # exactly, every term of every step
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    da, db = straight.disc.state_dict(), resumed.disc.state_dict()
    assert all(torch.equal(da[k], db[k]) for k in da)


def test_checkpoint_loads_weights_only_and_restores_the_tokenizer(one_clip, cache_dir, tmp_path):
    clips = _clips(one_clip, cache_dir)
    cfg = _config(cache_dir, ["model.size=32", "train.batch_size=2"])
    trainer = Trainer(cfg, tmp_path, clips=clips)
    trainer.train_step()
    path = trainer.save()
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code
    assert raw["step"] == 1 and raw["config"]["model"]["size"] == 32
    assert TOKENIZER_KEY in raw and LEGACY_TOKENIZER_KEY not in raw and raw["format"] == TOKENIZER_FORMAT
    with pytest.raises(InferenceError, match="its format is 'talkbench-vqtalker-tokenizer/2'"):
        load_checkpoint(path, LEGACY_TOKENIZER_FORMAT)  # what a format-1 reader sees: its format, not a KeyError
    assert (path.parent / "latest.pt").is_file()
    model = load_tokenizer(path)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])
    assert load_checkpoint(path)["format"].startswith("talkbench-vqtalker-tokenizer")


def test_checkpoints_with_the_legacy_key_load():
    """Stage-1 checkpoints written before the rename (the shipped tiny one, users' runs) keep
    their weights under "generator"; they load as the new ones do."""
    raw = torch.load(TINY_TOKENIZER, map_location="cpu", weights_only=True)
    assert LEGACY_TOKENIZER_KEY in raw and TOKENIZER_KEY not in raw  # the shipped file is not rewritten
    assert raw["format"] == LEGACY_TOKENIZER_FORMAT
    ckpt = load_checkpoint(TINY_TOKENIZER)
    assert LEGACY_TOKENIZER_KEY not in ckpt and ckpt["format"] == TOKENIZER_FORMAT
    model = load_tokenizer(TINY_TOKENIZER)
    for name, value in raw[LEGACY_TOKENIZER_KEY].items():
        assert torch.equal(model.state_dict()[name], value), name


def test_training_log_csv(one_clip, cache_dir, tmp_path):
    clips = _clips(one_clip, cache_dir)
    cfg = _config(cache_dir, ["model.size=32", "train.batch_size=2"])
    trainer = Trainer(cfg, tmp_path, clips=clips)
    rows = trainer.fit(steps=2, log_every=1, checkpoint_every=10, eval_every=2)
    text = (tmp_path / "log.csv").read_text().splitlines()
    assert text[0].startswith("step,time,l1")
    assert len(text) == 1 + 3  # step 0 eval + steps 1, 2
    assert rows[-1]["step"] == 2 and rows[-1]["eval_l1"] > 0
    assert (tmp_path / "checkpoints" / "step_0000002.pt").is_file()


@pytest.mark.slow
def test_tiny_config_overfits_one_sample_clip(one_clip, cache_dir, tmp_path):
    """Reconstruction L1 on fixed frame pairs of one clip falls by at least half."""
    cfg = _config(cache_dir, [])
    clips = _clips(one_clip, cache_dir)
    trainer = Trainer(cfg, tmp_path, clips=clips)
    rows = trainer.fit(steps=cfg["train"]["steps"], log_every=10, eval_every=20, checkpoint_every=10**9)
    curve = [(r["step"], round(r["eval_l1"], 4)) for r in rows if r.get("eval_l1") is not None]
    print("\noverfit curve (step, eval L1):", curve)
    print("train L1:", [(r["step"], round(r["l1"], 4)) for r in rows if "l1" in r])
    assert curve[-1][1] <= 0.5 * curve[0][1]


@pytest.mark.slow
def test_torchrun_two_processes_keep_identical_replicas(one_clip, cache_dir, tmp_path):
    _clips(one_clip, cache_dir)  # prepare the regions once so the two ranks only read them
    out = tmp_path / "run"
    cmd = [
        str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
        "-m", "talkbench.vqtalker.train", "--config", "tiny", "--out", str(out), "--steps", "2",
        "--save-replicas", "--set", f"data.source=[{one_clip}]", "--set", f"data.cache_dir={cache_dir}",
    ] + [a for kv in FULL_LOSS for a in ("--set", kv)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["step"] == 2
    r0 = torch.load(out / "replica_rank0.pt", weights_only=True)
    r1 = torch.load(out / "replica_rank1.pt", weights_only=True)
    for part in (TOKENIZER_KEY, "discriminator"):
        assert r0[part].keys() == r1[part].keys()
        for k in r0[part]:
            assert torch.equal(r0[part][k], r1[part][k]), f"{part}.{k} differs between ranks"
    # and training moved the weights (the two ranks saw different pairs, gradients were averaged)
    init = Trainer(_config(cache_dir, FULL_LOSS), tmp_path / "init", clips=_clips(one_clip, cache_dir))
    moved = [k for k, v in init.model.state_dict().items() if not torch.equal(v, r0[TOKENIZER_KEY][k])]
    assert len(moved) > 10


def test_larger_model_initialised_from_smaller_checkpoint(one_clip, cache_dir, tmp_path):
    """train.init_from: the paper's 512-from-256 step, at 32 -> 64 px."""
    small_cfg = _config(cache_dir, ["model.size=32", "train.batch_size=2"])
    small = Trainer(small_cfg, tmp_path / "small", clips=_clips(one_clip, cache_dir))
    small.train_step()
    ckpt = small.save()
    big_cfg = _config(cache_dir, ["model.size=64", "train.batch_size=2", f"train.init_from={ckpt}"])
    big = Trainer(big_cfg, tmp_path / "big", clips=_clips(one_clip, cache_dir))
    sb, ss = big.model.state_dict(), small.model.state_dict()
    for name in ("renderer.convs.32.conv.weight", "renderer.to_flows.8.conv.weight", "encoder.blocks.16.conv1.0.weight",
                 "quantizer.project_in.weight", "motion.fc.0.weight"):
        assert torch.equal(sb[name], ss[name]), name
    assert "renderer.convs.64.conv.weight" in sb and "renderer.convs.64.conv.weight" not in ss
    assert big.step == 0  # initialised, not resumed


def test_table3_codebook_variant_trains_with_its_commitment_loss(one_clip, cache_dir, tmp_path):
    cfg = _config(cache_dir, ["model.size=32", "train.batch_size=2", "model.quantizer={variant: grvq}"])
    trainer = Trainer(cfg, tmp_path, clips=_clips(one_clip, cache_dir))
    before = trainer.model.quantizer.embed.clone()
    terms = trainer.train_step()
    assert terms["quantizer"] > 0  # commitment loss is part of the objective
    assert not torch.equal(before, trainer.model.quantizer.embed)  # EMA codebook update
    assert trainer.model.quantizer.config.codebook_size == 1024
