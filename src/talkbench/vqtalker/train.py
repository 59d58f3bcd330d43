"""Training of the stage-1 tokenizer: source/target frame pairs from clips, G and D updates as
in LIA, gradient accumulation, DDP under ``torchrun`` (NCCL on GPUs, gloo on CPU), bf16
autocast on CUDA only, checkpoints that load with ``weights_only=True`` and resume exactly.
The loop, logging, checkpoints and distributed set-up are ``training``'s, shared with stage 2.

Data: the clips of ``data.source`` (``data.clips_from_source``): a built dataset (holding
``catalog.duckdb``) trains on its ``data.splits.train`` clips and evaluates and validates on its
``data.splits.val`` clips; the sample corpus, a folder or files train on all their clips. Either
way a DataLoader decodes the sampled frames on the fly (``data.pair_loader``,
``train.loader_workers`` processes), with eye/mouth regions prepared once per clip
(``prepare.prepare_regions``: beside a built dataset, else in the VQTalker cache or
``data.cache_dir``).

Exact resume: the only randomness is the choice of training pairs, drawn from a generator
seeded by (seed, step, rank, micro-batch), and the model, discriminator and (random-init) VGG
are built in a fixed order after ``torch.manual_seed(seed)``. So step k of a resumed run sees
the same data and the same weights as step k of an uninterrupted one.

    trainer = Trainer(load_config("tiny"), out_dir)
    trainer.fit(steps=200)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from talkbench import media
from talkbench.vqtalker.data import (
    TrainingClip,
    batch_to_model,
    clips_from_source,
    dataset_splits,
    default_regions_root,
    is_built_dataset,
    pair_loader,
)
from talkbench.vqtalker.inference import TOKENIZER_FORMAT, TOKENIZER_KEY, autocast, load_checkpoint
from talkbench.vqtalker.losses import (
    Discriminator,
    GeneratorLoss,
    LossWeights,
    PerceptualLoss,
    d_nonsaturating_loss,
    region_masks,
)
from talkbench.vqtalker.prepare import check_regions, prepare_regions
from talkbench.vqtalker.tokenizer import MotionTokenizer, TokenizerConfig, load_config, load_matching
from talkbench.vqtalker.training import (
    DistInfo,
    Stage,
    TrainingError,
    apply_overrides,
    finish_distributed,
    init_distributed,
    mean_over_ranks,
    per_process_batch,
    prepare_timeout,
    preparing,
    unwrap,
    wrap_ddp,
)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = TOKENIZER_FORMAT

__all__ = ["CHECKPOINT_FORMAT", "Trainer", "TrainingError", "apply_overrides", "init_distributed", "main"]


# ----------------------------------------------------------------------------- trainer


def _set_requires_grad(m: nn.Module, flag: bool) -> None:
    for p in m.parameters():
        p.requires_grad_(flag)


class Trainer(Stage):
    """Stage 1: the tokenizer (LIA's G) and LIA's discriminator D. Pairs come from ``clips``
    when given (``data.TrainingClip``s, e.g. ``data.file_clip``), else from ``data.source``; a
    built dataset's ``data.splits.val`` clips are used for evaluation and validation."""

    checkpoint_format = CHECKPOINT_FORMAT
    defaults = {"log_every": 100, "checkpoint_every": 5000}
    fields = ["l1", "eye", "mouth", "perceptual", "gan_g", "gan_d", "quantizer", "total", "eval_l1"]

    def __init__(
        self,
        config: dict,
        out_dir: str | Path,
        device: str | torch.device | None = None,
        dist_info: DistInfo | None = None,
        clips: Sequence[TrainingClip] | None = None,
    ):
        super().__init__(config, out_dir, dist_info, device)
        tc, lc, dc = config["train"], config["loss"], config.get("data", {})
        self.model_config = TokenizerConfig.from_dict(config["model"])
        self.size = self.model_config.size
        self.grad_accum = int(tc.get("grad_accum", 1))
        self.batch_size = per_process_batch(tc, self.dist.world_size, self.grad_accum)
        self.seed = int(tc.get("seed", 0))
        self.use_amp = bool(tc.get("bf16", True)) and self.device.type == "cuda"
        self.weights = LossWeights.from_dict(lc)
        self.margin = float(lc.get("region_margin", 0.25))

        torch.manual_seed(self.seed)  # fixed build order: tokenizer, discriminator, VGG
        self.tokenizer = MotionTokenizer(self.model_config).to(self.device)
        self.disc = None
        if self.weights.adversarial:
            mc = self.model_config
            self.disc = Discriminator(mc.size, mc.channel_multiplier, mc.max_channels).to(self.device)
        perceptual = None
        if self.weights.perceptual:
            scales = tuple(lc.get("perceptual_scales", (1, 0.5, 0.25, 0.125)))
            perceptual = PerceptualLoss(scales, weights=lc.get("vgg_weights", "pretrained")).to(self.device)
            if perceptual.vgg.weights == "random":
                log.warning("perceptual loss uses a RANDOM-INIT VGG19 (vgg_weights: random): not a perceptual loss")
        self.loss = GeneratorLoss(self.weights, perceptual)

        lr = float(tc["lr"])
        g_ratio = tc.get("g_reg_every", 4) / (tc.get("g_reg_every", 4) + 1)
        d_ratio = tc.get("d_reg_every", 16) / (tc.get("d_reg_every", 16) + 1)
        self.g_optim = torch.optim.Adam(self.tokenizer.parameters(), lr=lr * g_ratio, betas=(0.0, 0.99**g_ratio))
        self.d_optim = (
            torch.optim.Adam(self.disc.parameters(), lr=lr * d_ratio, betas=(0.0, 0.99**d_ratio)) if self.disc else None
        )
        if tc.get("init_from"):
            self.init_from(tc["init_from"])
        self.tokenizer = wrap_ddp(self.tokenizer, self.dist, self.device, broadcast_buffers=False)
        if self.disc is not None:
            self.disc = wrap_ddp(self.disc, self.dist, self.device, broadcast_buffers=False)

        source = dc.get("source", "sample")
        self.val_clips: list[TrainingClip] = []
        if clips is not None:
            self.train_clips = list(clips)
        elif is_built_dataset(source):
            self.train_clips, self.val_clips = dataset_splits(source, dc.get("splits"))
        else:
            if dc.get("splits"):
                log.warning("data.source %s is not a built dataset: data.splits does not apply, every clip trains "
                            "and nothing is validated", source)
            self.train_clips = clips_from_source(source, fps=float(dc.get("fps", media.DEFAULT_FPS)))
        self.regions_root: Path | None = None
        if self.weights.eye or self.weights.mouth:
            self.regions_root = default_regions_root(source, dc.get("cache_dir"))
            timeout = prepare_timeout(tc)  # the long group's (init_distributed): the default group's is too short
            with preparing(self.dist, "eye/mouth regions preparation", timeout):
                if self.dist.is_main:  # in parallel on the dataset engines
                    prepare_regions(self.train_clips, self.regions_root, engine=dc.get("engine", "local"),
                                    workers=int(dc.get("prepare_workers", 2)), ray_address=dc.get("ray_address"),
                                    progress=True)
            with preparing(self.dist, "reading the eye/mouth regions", timeout):
                if not self.dist.is_main:
                    check_regions(self.train_clips, self.regions_root)
        self.loader_workers = int(tc.get("loader_workers", 2))
        self._batches = None
        self._eval_batch = None

    @property
    def model(self) -> MotionTokenizer:
        return unwrap(self.tokenizer)

    # -- data

    def _micro_batch(self, micro: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._batches is None:  # picks from (seed, step, rank, micro): a resumed run continues the stream
            self._batches = iter(pair_loader(self.train_clips, self.size, self.batch_size, self.seed, self.dist.rank,
                                             self.step, self.loader_workers, self.regions_root, self.margin,
                                             micro_batches=self.grad_accum))
        return batch_to_model(next(self._batches), self.device)

    def on_resume(self) -> None:
        self._batches = None

    def close(self) -> None:
        self._batches = None  # the loader's worker processes end with their iterator

    # -- one optimisation step (G then D, as LIA)

    def train_step(self) -> dict[str, float]:
        tokenizer, disc = self.tokenizer, self.disc
        tokenizer.train()
        # the library quantizers' dead-code restarts and k-means draw from torch's RNG: exact resume
        torch.manual_seed(hash((self.seed, self.step, self.dist.rank)) % (2**63))
        disc_module = unwrap(disc) if disc is not None else None
        if disc_module is not None:
            _set_requires_grad(disc_module, False)
        self.g_optim.zero_grad(set_to_none=True)
        sums: dict[str, torch.Tensor] = {}
        fakes, reals = [], []
        for micro in range(self.grad_accum):
            src, tgt, boxes = self._micro_batch(micro)
            eye, mouth = region_masks(boxes, self.size)
            sync = self.dist.enabled and micro < self.grad_accum - 1
            with (tokenizer.no_sync() if sync else contextlib.nullcontext()):
                with autocast(self.device, self.use_amp):
                    out = tokenizer(src, tgt)
                    fake_pred = disc_module(out.image) if disc_module is not None else None
                    total, terms = self.loss(out.image.float(), tgt, eye, mouth, fake_pred, out.aux_loss)
                (total / self.grad_accum).backward()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.float() / self.grad_accum
            fakes.append(out.image.detach())
            reals.append(tgt)
        self.g_optim.step()

        if disc is not None:
            _set_requires_grad(disc_module, True)
            self.d_optim.zero_grad(set_to_none=True)
            for micro, (fake, real) in enumerate(zip(fakes, reals)):
                sync = self.dist.enabled and micro < self.grad_accum - 1
                with (disc.no_sync() if sync else contextlib.nullcontext()):
                    with autocast(self.device, self.use_amp):
                        d_loss = d_nonsaturating_loss(disc(fake), disc(real))
                    (d_loss / self.grad_accum).backward()
                sums["gan_d"] = sums.get("gan_d", 0.0) + d_loss.detach().float() / self.grad_accum
            self.d_optim.step()

        self.step += 1
        return mean_over_ranks(sums, self.dist, self.device)

    # -- held-out

    def _fixed_pairs(self, pairs: int, seed: int):
        if self._eval_batch is None:  # the validation split's clips when there is one, no landmarks needed
            loader = pair_loader(self.val_clips or self.train_clips, self.size, pairs, seed, workers=0)
            self._eval_batch = batch_to_model(next(iter(loader)), self.device)
        return self._eval_batch

    @torch.no_grad()
    def evaluate(self, pairs: int = 16, seed: int = 12345) -> dict[str, float]:
        """``eval_l1``: mean reconstruction L1 on fixed pairs (independent of the training step)
        of the validation clips (a built dataset with ``data.splits.val``) or else the training clips."""
        model = self.model
        was_training = model.training
        model.eval()
        src, tgt, _ = self._fixed_pairs(pairs, seed)
        with autocast(self.device, self.use_amp):
            out = model(src, tgt)
        model.train(was_training)
        return {"eval_l1": float((out.image.float() - tgt).abs().mean())}

    def validate(self, out_dir: Path):
        if not self.val_clips:
            return None
        # here, not at the top: validation loads the metrics engine (cv2, scipy, skimage; seconds)
        from talkbench.vqtalker.validation import validate_tokenizer

        tc = self.config["train"]
        model = self.model
        was_training = model.training
        model.eval()
        try:
            return validate_tokenizer(model, self.val_clips, out_dir, self.device,
                                      metrics=tc.get("validate_metrics"), max_frames=int(tc.get("validate_frames", 50)),
                                      run_dir=self.validation_dir)  # references once, latest and best renders only
        finally:
            model.train(was_training)

    # -- checkpoints

    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "config": self.config,
            TOKENIZER_KEY: self.model.state_dict(),
            "discriminator": unwrap(self.disc).state_dict() if self.disc is not None else {},
            "g_optim": self.g_optim.state_dict(),
            "d_optim": self.d_optim.state_dict() if self.d_optim is not None else {},
        }

    def load_state(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt[TOKENIZER_KEY])
        if self.disc is not None:
            unwrap(self.disc).load_state_dict(ckpt["discriminator"])
            self.d_optim.load_state_dict(ckpt["d_optim"])
        self.g_optim.load_state_dict(ckpt["g_optim"])
        self.step = int(ckpt["step"])

    def init_from(self, path: str | Path) -> None:
        """Initialise from another resolution's checkpoint (512 from 256): matching tensors only."""
        ckpt = load_checkpoint(path)
        loaded, skipped = load_matching(self.model, ckpt[TOKENIZER_KEY])
        if self.disc is not None and ckpt.get("discriminator"):
            load_matching(unwrap(self.disc), ckpt["discriminator"])
        log.info("init_from %s: %d tensors loaded, %d skipped (shape/name differ)", path, len(loaded), len(skipped))


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``torchrun -m talkbench.vqtalker.train --config C --out DIR [--set k=v …]``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--save-replicas", action="store_true",
                        help="every rank also writes its final weights to OUT/replica_rank{R}.pt (replica checks)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    config = apply_overrides(load_config(args.config), args.overrides)
    # the config first: the long preparation group is made with its timeout, right at joining
    info = init_distributed(prepare_timeout(config["train"]))
    trainer = Trainer(config, args.out, dist_info=info)
    if args.resume:
        trainer.load(args.resume)
    rows = trainer.fit(steps=args.steps)
    if args.save_replicas:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        torch.save(trainer.state_dict(), Path(args.out) / f"replica_rank{info.rank}.pt")
    if info.is_main and rows:
        print(json.dumps({"step": trainer.step, "world_size": info.world_size, "batch_per_process": trainer.batch_size,
                          "last": rows[-1]}))
    finish_distributed(info)


if __name__ == "__main__":
    main()
