"""Forward and backward FLOPs of one VQTalker training step, both stages, at paper size.

    python benchmarks/vqtalker_flops.py [--batch 1] [--threads 1] [--device cpu] [--json]

Measured with torch's ``FlopCounterMode`` (2 x multiply-accumulates of every convolution,
matmul and attention op; element-wise ops, norms and the optimiser update are not counted:
they are well under 1 % here) while a real step runs on random inputs:

- stage 1 (paper-256, paper-512): the G update as the tokenizer trainer does it, encoder ->
  GRFSQ -> renderer, the frozen discriminator on the fake, the loss with L1, eye/mouth L1, the
  VGG19 image-pyramid perceptual loss on fake and real at every scale, then backward; and the
  D update, discriminator on fake (detached) and real, then backward. The VGG19 is random-init
  (same FLOPs as the pretrained one, no weight file needed).
- stage 2 (generator-paper): the teacher-forced loss of ``MotionGenerator.loss`` on one
  ``train.window``-frame window per sample; it repeats each sample once per residual layer (4x),
  so a sample is 4 sequences of window + 2 tokens.

Every op is linear in the batch, so the step is measured at ``--batch`` samples (default 1: a
paper-size step at batch 32-64 is too slow on a CPU) and scaled linearly to the config's
``train.global_batch``; the table says so. torch's own count of a grouped convolution's weight
gradient is ``groups`` times too high (the renderer's modulated convolutions are grouped by
sample), so ``convolution_backward`` is counted with a corrected formula. Stage 2 also shows 6 x parameters x tokens, the usual
transformer estimate, as a cross-check.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one optimisation step: everything run before ``backward()`` and in it."""

    forward: int
    backward: int

    @property
    def total(self) -> int:
        return self.forward + self.backward

    def __add__(self, other: "StepFlops") -> "StepFlops":
        return StepFlops(self.forward + other.forward, self.backward + other.backward)

    def scaled(self, factor: float) -> "StepFlops":
        return StepFlops(round(self.forward * factor), round(self.backward * factor))


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    """torch's formula for ``aten.convolution_backward`` with the weight gradient of a grouped
    convolution divided by ``groups``: torch (2.x) counts it as if the convolution were dense,
    so a StyleGAN2 modulated convolution (groups = batch) would count batch x too many."""
    from torch.utils.flop_counter import conv_flop_count

    t = lambda shape: [shape[1], shape[0], *shape[2:]]  # noqa: E731
    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(list(grad_out_shape), list(w_shape), list(out_shape[0]), not transposed)
    if output_mask[1]:
        a, b = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(t(a), t(b), t(out_shape[1]), transposed=False) // groups
    return flops


def count_flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop})
    with counter:
        fn()
    return int(counter.get_total_flops())


def loss_flops(forward: Callable[[], torch.Tensor]) -> StepFlops:
    """FLOPs of ``forward()`` (which returns a scalar loss) and of the loss's ``backward()``,
    counted separately."""
    holder: list[torch.Tensor] = []
    fwd = count_flops(lambda: holder.append(forward()))
    bwd = count_flops(lambda: holder[0].backward())
    return StepFlops(fwd, bwd)


@dataclass(frozen=True)
class StageRow:
    stage: str
    config: str
    params: int
    measured_batch: int
    global_batch: int
    per_sample: StepFlops
    per_step: StepFlops  # at global_batch
    tokens_per_sample: int | None  # stage 2 only
    seconds: float  # wall time of the measured step on this machine

    def as_dict(self) -> dict:
        d = asdict(self)
        d["per_sample"] = {**asdict(self.per_sample), "total": self.per_sample.total}
        d["per_step"] = {**asdict(self.per_step), "total": self.per_step.total}
        return d


class TokenizerStep:
    """The pieces of one stage-1 step on fixed random inputs, as the tokenizer trainer runs it:
    ``g_loss()`` (the tokenizer's G update: the discriminator is frozen and only passes gradients to
    the image) then ``d_loss()`` (discriminator update on the detached fake and the real)."""

    def __init__(self, config: dict, batch: int = 1, device: str | torch.device = "cpu"):
        from talkbench.vqtalker.losses import Discriminator, GeneratorLoss, LossWeights, PerceptualLoss, region_masks
        from talkbench.vqtalker.tokenizer import MotionTokenizer, TokenizerConfig

        torch.manual_seed(0)
        mc = TokenizerConfig.from_dict(config["model"])
        lc = config["loss"]
        weights = LossWeights.from_dict(lc)
        self.tokenizer = MotionTokenizer(mc).to(device).train()
        self.disc = Discriminator(mc.size, mc.channel_multiplier, mc.max_channels).to(device) if weights.adversarial else None
        self.disc_module = self.disc  # the unwrapped discriminator when self.disc is a DDP wrapper
        perceptual = None
        if weights.perceptual:
            scales = tuple(lc.get("perceptual_scales", (1, 0.5, 0.25, 0.125)))
            perceptual = PerceptualLoss(scales, weights="random").to(device)  # same FLOPs as the pretrained file
        self.loss = GeneratorLoss(weights, perceptual)
        s = mc.size
        self.src = torch.rand(batch, 3, s, s, device=device) * 2 - 1
        self.tgt = torch.rand(batch, 3, s, s, device=device) * 2 - 1
        # eyes and mouth where they sit in an aligned face crop
        box = torch.tensor([[0.30, 0.35, 0.45, 0.45], [0.55, 0.35, 0.70, 0.45], [0.35, 0.65, 0.65, 0.80]]) * s
        self.eye, self.mouth = region_masks(box.expand(batch, 3, 4).to(device), s)
        self.fake: torch.Tensor | None = None

    def g_loss(self) -> torch.Tensor:
        if self.disc_module is not None:
            self.disc_module.requires_grad_(False)
        out = self.tokenizer(self.src, self.tgt)
        fake_pred = self.disc_module(out.image) if self.disc_module is not None else None
        total, _ = self.loss(out.image.float(), self.tgt, self.eye, self.mouth, fake_pred, out.aux_loss)
        self.fake = out.image.detach()
        return total

    def d_loss(self) -> torch.Tensor:
        from talkbench.vqtalker.losses import d_nonsaturating_loss

        self.disc_module.requires_grad_(True)
        return d_nonsaturating_loss(self.disc(self.fake), self.disc(self.tgt))


class GeneratorStep:
    """One stage-2 step's teacher-forced loss on fixed random inputs (``train.window`` frames)."""

    def __init__(self, config: dict, batch: int = 1, window: int | None = None, device: str | torch.device = "cpu"):
        from talkbench.vqtalker.generator import GeneratorConfig, MotionGenerator

        torch.manual_seed(0)
        cfg = GeneratorConfig.from_dict(config["model"])
        self.model = MotionGenerator(cfg).to(device).train()
        self.forward = self.model  # a DDP wrapper when distributed
        t = int(window or config["train"].get("window", 64))
        if cfg.speech_discrete:
            self.speech = torch.randint(cfg.speech_vocab, (batch, t, cfg.speech_per_frame), device=device)
        else:
            self.speech = torch.randn(batch, t, cfg.speech_dim, device=device)
        self.controls = torch.randn(batch, t, 7, device=device)
        self.f_g = torch.randn(batch, cfg.style_dim, device=device)
        if cfg.motion == "grfsq":
            self.targets = torch.randint(cfg.codes, (batch, cfg.groups, cfg.residuals, t), device=device)
            sequences = cfg.residuals  # MotionGenerator.loss repeats the batch once per residual layer
        else:
            self.targets = torch.randn(batch, t, cfg.motion_dim, device=device)
            sequences = 1
        self.tokens_per_sample = sequences * (t + 2)  # + f_g and the layer indicator

    def loss(self) -> torch.Tensor:
        return self.model.loss(self.speech, self.controls, self.f_g, self.targets, forward=self.forward)[0]


def tokenizer_step_flops(config: dict, batch: int = 1, device: str = "cpu") -> tuple[StepFlops, int]:
    """(FLOPs of one stage-1 step at ``batch`` samples, trainable tokenizer parameters)."""
    from talkbench.vqtalker.tokenizer import count_parameters

    step = TokenizerStep(config, batch, device)
    flops = loss_flops(step.g_loss)
    if step.disc is not None:
        flops = flops + loss_flops(step.d_loss)
    return flops, count_parameters(step.tokenizer)


def generator_step_flops(config: dict, batch: int = 1, window: int | None = None,
                         device: str = "cpu") -> tuple[StepFlops, int, int]:
    """(FLOPs of one stage-2 step at ``batch`` windows, parameters, tokens per sample)."""
    from talkbench.vqtalker.generator import count_parameters

    step = GeneratorStep(config, batch, window, device)
    return loss_flops(step.loss), count_parameters(step.model), step.tokens_per_sample


def measure(batch: int = 1, device: str = "cpu", stages: tuple[str, ...] = ("paper-256", "paper-512", "generator-paper")
            ) -> list[StageRow]:
    from talkbench.vqtalker.generator import load_generator_config
    from talkbench.vqtalker.tokenizer import load_config
    from talkbench.vqtalker.training import per_process_batch

    rows = []
    for name in stages:
        start = time.perf_counter()
        if name.startswith("generator"):
            config = load_generator_config(name)
            flops, params, tokens = generator_step_flops(config, batch, device=device)
            stage = "2 generator"
        else:
            config = load_config(name)
            flops, params = tokenizer_step_flops(config, batch, device=device)
            tokens, stage = None, "1 tokenizer"
        seconds = time.perf_counter() - start
        per_sample = flops.scaled(1 / batch)
        gb = per_process_batch(config["train"], world_size=1)  # one process: the whole job's batch
        rows.append(StageRow(stage, name, params, batch, gb, per_sample, per_sample.scaled(gb), tokens, seconds))
    return rows


def format_table(rows: list[StageRow]) -> str:
    head = (f"{'stage':<12} {'config':<16} {'params':>8} {'fwd GF/sample':>13} {'bwd GF/sample':>13} "
            f"{'global batch':>12} {'TFLOP/step':>10} {'6*N*tokens TF/step':>18} {'measured at':>11}")
    lines = [head, "-" * len(head)]
    for r in rows:
        analytic = f"{6 * r.params * r.tokens_per_sample * r.global_batch / 1e12:.2f}" if r.tokens_per_sample else "-"
        lines.append(f"{r.stage:<12} {r.config:<16} {r.params / 1e6:>7.1f}M {r.per_sample.forward / 1e9:>13.1f} "
                     f"{r.per_sample.backward / 1e9:>13.1f} {r.global_batch:>12} {r.per_step.total / 1e12:>10.2f} "
                     f"{analytic:>18} {'batch ' + str(r.measured_batch):>11}")
    lines.append(f"(FlopCounterMode, {rows[0].measured_batch} sample(s) measured and scaled linearly to the global batch; "
                 "stage 1 = G update + D update incl. VGG19 perceptual pyramid and discriminator; "
                 "stage 2 = teacher-forced loss over 4 residual layers; optimiser updates not counted)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1, help="samples in the measured step (scaled to the global batch)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the counts do not depend on it)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stages", nargs="+", default=["paper-256", "paper-512", "generator-paper"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = measure(args.batch, args.device, tuple(args.stages))
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(format_table(rows))


if __name__ == "__main__":
    main()
