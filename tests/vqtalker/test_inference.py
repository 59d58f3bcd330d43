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


# --------------------------------------------------------------------- the speech device of a Talker


def _tiny_generator_with(tmp_path, speech: dict | None = None, engine: str | None = None):
    """A copy of the tiny generator whose config's ``speech`` has ``speech`` added and whose
    recorded speech description names ``engine``."""
    from talkbench.vqtalker.pretrained import TINY_GENERATOR

    ckpt = torch.load(TINY_GENERATOR, map_location="cpu", weights_only=True)
    ckpt["config"]["speech"].update(speech or {})
    if engine is not None:
        ckpt["meta"]["speech"]["engine"] = engine
    path = tmp_path / "generator.pt"
    torch.save(ckpt, path)
    return path


@pytest.mark.skipif(__import__("importlib").util.find_spec("ctranslate2") is None
                    or __import__("ctranslate2").get_cuda_device_count() > 0,
                    reason="checks the error on a machine where CTranslate2 sees no GPU")
def test_the_config_speech_device_wins_over_the_torch_device(tmp_path):
    from talkbench.vqtalker.inference import load_talker
    from talkbench.vqtalker.pretrained import TINY_TOKENIZER
    from talkbench.vqtalker.speech import SpeechError

    # The generator on the CPU does not pull Whisper off the GPU its config names.
    with pytest.raises(SpeechError, match=r"^speech.device 'cuda': CTranslate2 \(faster-whisper\) sees no CUDA"):
        load_talker(_tiny_generator_with(tmp_path, {"device": "cuda"}), TINY_TOKENIZER, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for torch")
def test_a_cuda_talker_keeps_whisper_on_the_cpu_its_config_names(tmp_path):
    from talkbench.vqtalker.inference import load_talker
    from talkbench.vqtalker.pretrained import TINY_TOKENIZER
    from talkbench.vqtalker.speech import WhisperDevice

    talker = load_talker(_tiny_generator_with(tmp_path, {"device": "cpu"}), TINY_TOKENIZER, "cuda")
    assert talker.device.type == "cuda" and talker.speech.device == WhisperDevice("cpu")
    assert talker.speech.engine == "ctranslate2 int8"


def test_a_talker_warns_when_its_speech_engine_is_not_the_trained_one(tmp_path, caplog):
    from talkbench.vqtalker.inference import load_talker
    from talkbench.vqtalker.pretrained import TINY_TOKENIZER

    talker = load_talker(_tiny_generator_with(tmp_path), TINY_TOKENIZER, "cpu")  # no engine recorded: fitted int8
    assert talker.speech.engine == "ctranslate2 int8" and "speech features" not in caplog.text
    path = _tiny_generator_with(tmp_path, engine="ctranslate2 float16 on cuda")
    load_talker(path, TINY_TOKENIZER, "cpu")
    assert (f"{path}: trained on speech features from ctranslate2 float16 on cuda, generating with "
            "ctranslate2 int8") in caplog.text


def test_same_device_reads_cuda_as_the_current_cuda_device():
    from talkbench.vqtalker.inference import same_device

    current = torch.cuda.current_device() if torch.cuda.is_available() else 0
    assert same_device(torch.device("cuda"), torch.device(f"cuda:{current}"))
    assert not same_device(torch.device("cuda"), torch.device(f"cuda:{current + 1}"))
    assert same_device(torch.device("cpu"), torch.device("cpu:0"))
    assert not same_device(torch.device("cpu"), torch.device("cuda:0"))


def test_a_talker_generates_on_its_device_however_it_is_named(sample_clips, tmp_path):
    from talkbench import media
    from talkbench.vqtalker.inference import generate_video, load_talker
    from talkbench.vqtalker.pretrained import TINY_GENERATOR

    talker = load_talker(TINY_GENERATOR, device="cpu")
    clip = sample_clips[0]
    audio = media.read_audio(clip.video)[: media.AUDIO_RATE * 2 // 5]  # 0.4 s: 10 frames
    summary = generate_video(talker, next(media.iter_frames(clip.video)), audio, tmp_path / "g.mp4",
                             device="cpu:0")  # "cpu:0" is the Talker's "cpu"
    assert summary["frames"] == 10 and summary["device"] == "cpu"
    assert media.frame_count_at(media.probe(summary["out"])) == 10
    with pytest.raises(InferenceError, match="already loaded with .* on cpu; load another Talker"):
        generate_video(talker, tmp_path / "p.png", audio, tmp_path / "h.mp4", tokenizer_checkpoint=TINY_GENERATOR)
