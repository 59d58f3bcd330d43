"""VQTalker as leaderboard methods:

- ``vqtalker-tokenizer`` (reconstruction, VQTalker Table 1): the stage-1 motion tokenizer
  encodes the driving video into GRFSQ tokens and renders them from the first frame.
- ``vqtalker`` (speech-driven, Table 2): speech → motion tokens (coarse-to-fine generator) →
  rendered from the portrait; head pose, gaze and blinks follow the ground truth, as the paper's
  controls do (``uses_ground_truth_controls``).

Each takes checkpoints (``tokenizer=`` / ``generator=``). The ``-tiny`` names run the tiny
checkpoints the project trained itself on the sample corpus (``talkbench.vqtalker.pretrained``):
they show the pipeline works end to end, not the paper's quality. All four take ``device=``
(``cpu`` by default, so a method's outputs do not depend on the machine; ``auto``, ``cuda``,
``cuda:N`` or ``mps`` to run elsewhere).
"""

from __future__ import annotations

from pathlib import Path

from talkbench.baselines.method import MethodError, MethodInfo, Task
from talkbench.util import sha256_file
from talkbench.vqtalker.pretrained import TINY_GENERATOR, TINY_TOKENIZER

# talkbench.vqtalker's inference, codec and quantize import torch: they are imported inside the
# functions, so that listing or registering the methods does not load it.

PAPER = "VQTalker (Liu et al., AAAI 2025)"
MIN_OUTPUT = 256  # the leaderboard's minimum side; small models' renders are upscaled to it


def _tokenizer_bitrate(model) -> float:
    from talkbench.vqtalker.quantize import bitrate

    return bitrate(model.config.quantizer) / 1000.0


def _info(name: str, what: str, tiny: bool, model, checkpoints: dict[Path, str], **fields) -> MethodInfo:
    """Metadata that names the exact weights (``checkpoints``: path -> sha256): a method's numbers
    are only as good as its checkpoint."""
    made = " (tiny model trained by talkbench on its sample corpus)" if tiny else ""
    hashes = ", ".join(f"{c.name} sha256 {sha[:12]}" for c, sha in checkpoints.items())
    return MethodInfo(name=name + ("-tiny" if tiny else ""), kind="builtin", description=f"{what}{made}; {hashes}",
                      paper=PAPER, year=2025, resolution=model.config.size, bitrate_kbps=_tokenizer_bitrate(model),
                      **fields)


def _required(path: str | Path | None, name: str, option: str) -> Path:
    if path is None:
        raise MethodError(f"method {name!r} needs a checkpoint ({option}=PATH); "
                          f"'{name}-tiny' runs the tiny model shipped with talkbench")
    return Path(path)


def _device(device: str | None, name: str):
    from talkbench.vqtalker.inference import InferenceError, resolve_device

    try:
        return resolve_device(device or "cpu", option=f"method {name!r} option device")
    except InferenceError as exc:
        raise MethodError(str(exc)) from None


class VQTalkerTokenizer:
    def __init__(self, tokenizer: str | Path | None = None, tiny: bool = False, device: str | None = "cpu"):
        from talkbench.vqtalker.inference import load_tokenizer

        self.device = _device(device, "vqtalker-tokenizer" + ("-tiny" if tiny else ""))
        self.checkpoint = Path(TINY_TOKENIZER) if tiny else _required(tokenizer, "vqtalker-tokenizer", "tokenizer")
        self.model = load_tokenizer(self.checkpoint, self.device)
        self.info = _info("vqtalker-tokenizer", "VQTalker stage 1: GRFSQ motion tokens of the driving video "
                          "rendered from the first frame", tiny, self.model,
                          {self.checkpoint: sha256_file(self.checkpoint)}, tasks=["reconstruction"])

    def generate(self, task: Task, out: Path) -> Path:
        from talkbench.vqtalker.codec import reconstruct_video

        path, _ = reconstruct_video(self.model, task.driving_video(), out, fps=task.fps, output_size=MIN_OUTPUT)
        return path


class VQTalker:
    """Both checkpoints are loaded once, on ``device``, into ``talker`` (an
    ``inference.Talker``), which every ``generate`` reuses."""

    def __init__(self, generator: str | Path | None = None, tokenizer: str | Path | None = None, tiny: bool = False,
                 device: str | None = "cpu"):
        from talkbench.vqtalker.inference import load_talker

        self.device = _device(device, "vqtalker" + ("-tiny" if tiny else ""))
        if tiny:
            generator, tokenizer = TINY_GENERATOR, TINY_TOKENIZER
        else:
            generator = _required(generator, "vqtalker", "generator")
        self.talker = load_talker(generator, tokenizer, self.device,
                                  tokenizer_option="the method option tokenizer=PATH")
        self.generator, self.tokenizer = self.talker.generator_checkpoint, self.talker.tokenizer_checkpoint
        self.info = _info("vqtalker", "VQTalker: speech tokens -> coarse-to-fine GRFSQ motion tokens -> rendered "
                          "portrait", tiny, self.talker.tokenizer,
                          {self.generator: self.talker.generator_sha256, self.tokenizer: self.talker.tokenizer_sha256},
                          tasks=["speech-driven"], uses_ground_truth_controls=True)

    def generate(self, task: Task, out: Path) -> Path:
        from talkbench.vqtalker.inference import generate_video

        summary = generate_video(self.talker, task.portrait(), task.audio(), out, controls_from=task.reference,
                                 output_size=MIN_OUTPUT)
        return Path(summary["out"])


def tiny_tokenizer(device: str | None = "cpu") -> VQTalkerTokenizer:
    """``vqtalker-tokenizer-tiny``: the stage-1 tokenizer trained on the sample corpus."""
    return VQTalkerTokenizer(tiny=True, device=device)


def tiny_vqtalker(device: str | None = "cpu") -> VQTalker:
    """``vqtalker-tiny``: both tiny checkpoints trained on the sample corpus."""
    return VQTalker(tiny=True, device=device)
