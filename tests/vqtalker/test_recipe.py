"""The paper recipe (configs with sources), the FLOPs benchmark behind docs/vqtalker-compute.md,
and the GPU check's clean skip on a machine without a GPU."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from talkbench.metrics.registry import available_metrics
from talkbench.vqtalker.generator import load_generator_config
from talkbench.vqtalker.tokenizer import load_config

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import vqtalker_flops as vf  # noqa: E402

PAPER_GPUS = 4  # "four A100 (40G) GPUs" (paper supplement, Training and Inference)
STAGE1_RECIPE = ["model.size", "loss.perceptual", "loss.adversarial", "loss.eye", "loss.mouth", "train.steps",
                 "train.global_batch", "train.grad_accum", "train.lr", "train.g_reg_every", "train.d_reg_every",
                 "train.validate_every", "train.best_metric", "train.init_from", "data.splits", "data.fps"]
STAGE2_RECIPE = ["train.steps", "train.global_batch", "train.grad_accum", "train.window", "train.lr",
                 "train.weight_decay", "train.warmup", "train.validate_every", "train.best_metric", "data.splits",
                 "data.fps"]


def _config_text(name: str) -> str:
    return (resources.files("talkbench.vqtalker") / "configs" / f"{name}.yaml").read_text()


def _commented_keys(text: str) -> dict[str, str]:
    """{'section.key': comment} for the two-level YAML of the configs."""
    out, section = {}, None
    for line in text.splitlines():
        m = re.match(r"^(\w+):", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^  (\w+):[^#]*(?:#\s*(.*))?$", line)
        if m and section:
            out[f"{section}.{m.group(1)}"] = m.group(2) or ""
    return out


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name, recipe", [("paper-256", STAGE1_RECIPE), ("paper-512", STAGE1_RECIPE),
                                          ("generator-paper", STAGE2_RECIPE)])
def test_paper_configs_state_global_batch_with_a_source_on_every_recipe_value(name, recipe):
    config = load_generator_config(name) if name.startswith("generator") else load_config(name)
    tc = config["train"]
    assert "batch_size" not in tc, "paper configs give the whole job's batch, not a per-process one"
    assert tc["global_batch"] % (PAPER_GPUS * tc["grad_accum"]) == 0
    comments = _commented_keys(_config_text(name))
    missing = [k for k in recipe if not re.match(r"source: \S", comments.get(k, ""))]
    assert not missing, f"{name}: recipe values without a '# source:' comment: {missing}"
    assert tc["best_metric"] in available_metrics()
    assert config["data"]["splits"] == {"train": None, "val_persons": 0.02}


def test_stage1_recipe_is_lias_and_the_resolution_schedule_is_the_papers():
    c256, c512 = load_config("paper-256"), load_config("paper-512")
    for c in (c256, c512):
        # LIA train.py (wyhsirius/LIA @ 2a5bbfa): --iter 800000, --batch_size 64 (global), --lr 0.002
        assert (c["train"]["steps"], c["train"]["global_batch"], c["train"]["lr"]) == (800000, 64, 0.002)
        assert c["loss"]["eye"] == c["loss"]["mouth"] == 1000.0  # lambda1 = lambda2 = 1000
    assert (c256["model"]["size"], c512["model"]["size"]) == (256, 512)
    assert "256" in _commented_keys(_config_text("paper-512"))["train.init_from"]
    # the ablations inherit the recipe from generator-paper
    assert load_generator_config("generator-d-c")["train"] == load_generator_config("generator-paper")["train"]


def test_tiny_configs_carry_the_new_keys_and_stay_per_process():
    for config in (load_config("tiny"), load_generator_config("generator-tiny")):
        tc = config["train"]
        assert tc["validate_every"] == tc["steps"] and tc["best_metric"] in available_metrics()
        assert isinstance(tc["batch_size"], int)
    assert yaml.safe_load(_config_text("tiny"))["train"]["best_metric"] == "ssim"


# ----------------------------------------------------------------------------- FLOPs


def test_flops_of_a_linear_model_are_the_analytic_count():
    b, d0, d1, d2 = 3, 8, 16, 4
    mlp = nn.Sequential(nn.Linear(d0, d1, bias=False), nn.Linear(d1, d2, bias=False))
    x = torch.randn(b, d0)  # no input gradient
    flops = vf.loss_flops(lambda: (mlp(x) ** 2).sum())
    assert flops.forward == 2 * b * (d0 * d1 + d1 * d2)
    # weight gradients of both layers + the gradient into the hidden activation
    assert flops.backward == 2 * b * (d0 * d1 + d1 * d2) + 2 * b * d1 * d2
    assert flops.scaled(2).total == 2 * flops.total


def test_stage2_flops_are_six_times_params_times_tokens():
    config = load_generator_config("generator-paper")
    config["model"] = {**config["model"], "layers": 1}  # paper width, one layer: fast on a CPU
    window = 16
    flops, params, tokens = vf.generator_step_flops(config, batch=1, window=window)
    assert tokens == 4 * (window + 2)  # one sequence per residual layer, + f_g and the layer indicator
    assert 1.9 * flops.forward < flops.backward <= 2 * flops.forward  # no input gradient at the data
    model = vf.GeneratorStep(config, 1, window).model
    tables = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    ratio = flops.total / (6 * (params - tables) * tokens)
    assert 0.85 < ratio < 1.15, ratio  # the heads skip the 2 prefix tokens; attention adds 4*T*width per token


@pytest.mark.parametrize("groups", [1, 4])
def test_grouped_convolution_backward_is_counted_once(groups):
    # weight and input gradients each cost one forward: torch's own formula counts the weight
    # gradient `groups` times (the renderer's modulated convolutions are grouped by sample)
    x = torch.randn(1, groups * 8, 16, 16, requires_grad=True)
    w = torch.randn(groups * 8, 8, 3, 3, requires_grad=True)
    flops = vf.loss_flops(lambda: torch.nn.functional.conv2d(x, w, padding=1, groups=groups).sum())
    assert flops.forward == 2 * (groups * 8) * 8 * 9 * 16 * 16
    assert flops.backward == 2 * flops.forward


def _stage1_flops(step: vf.TokenizerStep) -> vf.StepFlops:
    return vf.loss_flops(step.g_loss) + vf.loss_flops(step.d_loss)


def test_stage1_step_counts_generator_discriminator_and_perceptual_terms():
    config = load_config("tiny")
    config["model"] = {**config["model"], "size": 32}
    plain, params = vf.tokenizer_step_flops(config, batch=1)  # L1 and eye/mouth terms only
    config["loss"] = {**config["loss"], "perceptual": 0.01, "adversarial": 1.0}
    step = vf.TokenizerStep(config, batch=2)  # one build (VGG19 is slow to initialise)
    two = _stage1_flops(step)
    step.src, step.tgt, step.eye, step.mouth = step.src[:1], step.tgt[:1], step.eye[:1], step.mouth[:1]
    one = _stage1_flops(step)
    assert params > 0 and plain.total > 0
    assert one.total > 2 * plain.total  # VGG19 on fake and real at every scale, D on fake and real
    assert two.total == 2 * one.total  # linear in the batch: scaling a batch-1 count is exact
    assert (two.forward, two.backward) == (2 * one.forward, 2 * one.backward)


# ----------------------------------------------------------------------------- GPU check


def _run_check(env_extra: dict) -> subprocess.CompletedProcess:
    code = ("import runpy, sys\n"
            "sys.argv = ['vqtalker_gpu_check.py']\n"
            "try:\n"
            f"    runpy.run_path({str(BENCH / 'vqtalker_gpu_check.py')!r}, run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    print('exit', e.code)\n"
            "print('torch imported:', 'torch' in sys.modules)\n")
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_gpu_check_skips_cleanly_when_cuda_is_hidden():
    proc = _run_check({"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines == ["VQTalker GPU check skipped: CUDA_VISIBLE_DEVICES='' hides every GPU.", "exit 0",
                     "torch imported: False"]


@pytest.mark.skipif(Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None,
                    reason="this machine has an NVIDIA driver")
def test_gpu_check_skips_cleanly_on_a_machine_without_a_gpu():
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    proc = subprocess.run([sys.executable, str(BENCH / "vqtalker_gpu_check.py")], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("VQTalker GPU check skipped: no NVIDIA GPU on this machine "
                                   "(no /dev/nvidia* device, no nvidia-smi).")
