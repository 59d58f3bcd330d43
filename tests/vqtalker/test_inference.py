"""The inference module: device choice (CLI flag and leaderboard method option), and its
independence from the training code."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from talkbench.baselines.method import MethodError
from talkbench.baselines.registry import get_method
from talkbench.vqtalker.inference import InferenceError, resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


def test_resolve_device_names_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device(None).type == resolve_device("auto").type == expected
    with pytest.raises(InferenceError, match=r"--device 'tpu': not a device; use auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")


@no_cuda
def test_unavailable_cuda_is_an_error_naming_the_option():
    with pytest.raises(InferenceError, match=r"^--device 'cuda': CUDA is not available on this machine"):
        resolve_device("cuda")
    with pytest.raises(InferenceError, match=r"^--device 'cuda:1': CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(MethodError, match=r"method 'vqtalker-tiny' option device 'cuda': CUDA is not available"):
        get_method("vqtalker-tiny", device="cuda")


@no_cuda
@pytest.mark.parametrize("command", ["encode", "reconstruct", "generate"])
def test_cli_device_flag_fails_in_one_line(command, sample_clips, tmp_path, capsys):
    from talkbench.cli import app
    from talkbench.cli.common import run_guarded
    from talkbench.vqtalker.pretrained import TINY_GENERATOR, TINY_TOKENIZER

    video = str(sample_clips[0].video)
    args = {"encode": ["encode", video, "--checkpoint", str(TINY_TOKENIZER), "--out", str(tmp_path / "t.npz")],
            "reconstruct": ["reconstruct", video, "--checkpoint", str(TINY_TOKENIZER), "--out", str(tmp_path / "r.mp4")],
            "generate": ["generate", "--portrait", video, "--audio", video, "--checkpoint", str(TINY_GENERATOR),
                         "--out", str(tmp_path / "g.mp4")]}[command]
    with pytest.raises(SystemExit) as exit_info:
        run_guarded(app, ["vqtalker", *args, "--device", "cuda"])  # as the talkbench command runs
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--device 'cuda': CUDA is not available" in lines[0], err
    assert not list(tmp_path.iterdir())


def test_leaderboard_methods_take_a_device():
    method = get_method("vqtalker-tokenizer-tiny", device="cpu")
    assert method.device == torch.device("cpu") and next(method.model.parameters()).device.type == "cpu"
    assert get_method("vqtalker-tiny").device == torch.device("cpu")  # the default: outputs independent of the machine


def test_inference_does_not_import_the_training_code():
    code = ("import sys, talkbench.vqtalker.inference, talkbench.vqtalker.lipsync; "
            "print(sorted(m for m in sys.modules if m.startswith('talkbench.vqtalker.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for training in ("talkbench.vqtalker.train'", "talkbench.vqtalker.generator_train", "talkbench.vqtalker.training"):
        assert training not in loaded, loaded
