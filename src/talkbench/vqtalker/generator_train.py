"""Training of the stage-2 generator (generation with it: ``talkbench.vqtalker.inference``).

Data: the clips of ``data.source`` (a built dataset's ``data.splits.train``, held out:
``data.splits.val``; or the sample corpus / a folder / files with ``data.holdout`` stems). For
every clip, computed once by ``prepare.prepare_generator_samples`` on the trainer's device,
each rank encoding its shard, and cached (VQTalker cache dir, keyed by clip and by the
tokenizer checkpoint's sha256 / the speech backend's description):
  * targets — the stage-1 tokenizer's GRFSQ indices (G, R, T) of f_t - f_0 (``codec.encode_frames``)
    or, for the ``vector`` ablations, the motion f_t - f_0 itself (T, 120);
  * f_g — the tokenizer's global feature of frame 0 (the portrait at generation time);
  * speech — ``speech.clip_speech`` (25 fps); controls — ``controls.clip_controls``.

Training windows of ``train.window`` frames are drawn from a generator seeded by (seed, step,
rank), so a resumed run sees the same batches; DDP under torchrun (gloo on CPU, NCCL on GPUs),
bf16 autocast on CUDA only, checkpoints that load with ``weights_only=True``, ``log.csv``: the
loop and its logging, checkpoints and validation are ``training``'s, shared with stage 1.

    torchrun --nproc_per_node 2 -m talkbench.vqtalker.generator_train --config tiny \\
        --tokenizer runs/tok/checkpoints/latest.pt --out runs/gen
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from talkbench import media, util
from talkbench.vqtalker.data import GeneratorSample, TrainingClip, clips_from_source, dataset_splits, is_built_dataset
from talkbench.vqtalker.generator import GeneratorConfig, MotionGenerator, load_generator_config
from talkbench.vqtalker.inference import (
    GENERATOR_FORMAT,
    autocast,
    load_tokenizer,
    speech_backend_from,
)
from talkbench.vqtalker.prepare import prepare_generator_samples
from talkbench.vqtalker.training import (
    DistInfo,
    Stage,
    TrainingError,
    apply_overrides,
    finish_distributed,
    default_device,
    init_distributed,
    mean_over_ranks,
    per_process_batch,
    prepare_timeout,
    unwrap,
    wrap_ddp,
)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = GENERATOR_FORMAT
__all__ = ["CHECKPOINT_FORMAT", "GeneratorSample", "GeneratorTrainer", "build_trainer", "collate", "main"]


# ----------------------------------------------------------------------------- data


def collate(samples: list[GeneratorSample], picks: list[tuple[int, int, int]], motion: str, device) -> dict:
    """Windows (clip, start, length) -> padded batch tensors and the padding mask."""
    t = max(n for _, _, n in picks)
    b = len(picks)
    first = samples[picks[0][0]]
    speech = np.zeros((b, t, first.speech.shape[1]), first.speech.dtype)
    controls = np.zeros((b, t, first.controls.shape[1]), np.float32)
    if motion == "grfsq":
        targets = np.zeros((b,) + first.targets.shape[:2] + (t,), np.int64)
    else:
        targets = np.zeros((b, t, first.targets.shape[1]), np.float32)
    padding = np.ones((b, t), bool)
    f_g = np.stack([samples[c].global_feature for c, _, _ in picks])
    for i, (c, s, n) in enumerate(picks):
        smp = samples[c]
        speech[i, :n] = smp.speech[s : s + n]
        controls[i, :n] = smp.controls[s : s + n]
        if motion == "grfsq":
            targets[i, ..., :n] = smp.targets[..., s : s + n]
        else:
            targets[i, :n] = smp.targets[s : s + n]
        padding[i, :n] = False
    as_t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return {"speech": as_t(speech), "controls": as_t(controls), "global_feature": as_t(f_g),
            "targets": as_t(targets), "padding": as_t(padding)}


class WindowSampler:
    def __init__(self, samples: list[GeneratorSample], batch_size: int, window: int, seed: int):
        self.samples, self.batch_size, self.window, self.seed = samples, batch_size, window, seed

    def picks(self, step: int, rank: int = 0) -> list[tuple[int, int, int]]:
        rng = np.random.default_rng([self.seed, step, rank])
        out = []
        for _ in range(self.batch_size):
            c = int(rng.integers(len(self.samples)))
            n = min(self.window, self.samples[c].frames)
            out.append((c, int(rng.integers(self.samples[c].frames - n + 1)), n))
        return out


# ----------------------------------------------------------------------------- trainer


@dataclass
class ValidationInputs:
    """What held-out validation of the generator needs besides the generator itself."""

    tokenizer: object  # MotionTokenizer, eval mode, on the trainer's device
    speech_backend: object
    clips: list  # TrainingClip or Path
    cache_dir: Path | None = None  # the controls cache


def trained_window(config: dict, samples: list[GeneratorSample]) -> int:
    """The positions training reaches, saved with the model: windows of ``train.window`` frames
    start at position 0, and one is never longer than the longest training clip."""
    window = int(config["train"].get("window", 64))
    longest = max((s.frames for s in samples), default=window)
    reached = min(window, longest)
    asked = config["model"].get("trained_window")
    if asked is not None and int(asked) > reached:
        raise TrainingError(f"model.trained_window={asked}: training reaches only {reached} positions "
                            f"(train.window {window}, longest training clip {longest} frames)")
    return int(asked) if asked is not None else reached


class GeneratorTrainer(Stage):
    """Stage 2: the coarse-to-fine generator on prepared samples (``build_trainer`` makes them),
    AdamW with linear warm-up, windows of ``train.window`` frames; ``holdout`` gives the ``eval``
    loss and ``validation`` the held-out metrics."""

    checkpoint_format = CHECKPOINT_FORMAT
    defaults = {"log_every": 10, "checkpoint_every": 1000}

    def __init__(self, config: dict, out_dir: str | Path, samples: list[GeneratorSample],
                 holdout: list[GeneratorSample] | None = None, device=None, dist_info: DistInfo | None = None,
                 meta: dict | None = None, validation: ValidationInputs | None = None):
        tc = config["train"]
        config = {**config, "model": {**config["model"], "trained_window": trained_window(config, samples)}}
        super().__init__(config, out_dir, dist_info, device)
        self.model_config = GeneratorConfig.from_dict(config["model"])
        self.seed = int(tc.get("seed", 0))
        if int(tc.get("grad_accum", 1)) != 1:
            raise TrainingError(f"train.grad_accum={tc['grad_accum']}: stage 2 does not accumulate gradients; set 1")
        self.batch_size = per_process_batch(tc, self.dist.world_size)
        self.use_amp = bool(tc.get("bf16", True)) and self.device.type == "cuda"
        torch.manual_seed(self.seed)
        self.gen = MotionGenerator(self.model_config).to(self.device)
        self.optim = torch.optim.AdamW(self.gen.parameters(), lr=float(tc["lr"]),
                                       weight_decay=float(tc.get("weight_decay", 0.0)))
        warmup = int(tc.get("warmup", 0))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.optim, lambda s: min(1.0, (s + 1) / max(warmup, 1)))
        self.gen = wrap_ddp(self.gen, self.dist, self.device)
        self.samples, self.holdout = samples, holdout or []
        self.sampler = WindowSampler(samples, self.batch_size, int(tc.get("window", 64)), self.seed)
        self.meta = meta or {}
        self.validation = validation
        layers = [f"{k}_r{r}" for k in ("nll", "acc") for r in range(1, self.model_config.residuals + 1)]
        self.fields = ["nll", "mse", *layers, "eval"]

    @property
    def model(self) -> MotionGenerator:
        return unwrap(self.gen)

    def default_eval_every(self, log_every: int) -> int | None:
        return log_every if self.holdout else None  # the held-out loss on every logged row

    def train_step(self) -> dict[str, float]:
        self.gen.train()
        torch.manual_seed(hash((self.seed, self.step, self.dist.rank)) % (2**63))  # dropout: exact resume
        batch = collate(self.samples, self.sampler.picks(self.step, self.dist.rank), self.model_config.motion, self.device)
        with autocast(self.device, self.use_amp):
            loss, terms = self.model.loss(**batch, forward=self.gen)  # through DDP when distributed
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        self.sched.step()
        self.step += 1
        return mean_over_ranks(terms, self.dist, self.device)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """``eval``: teacher-forced loss (per-token NLL, or MSE) on the held-out clips, whole
        clips, scored in overlapping windows of the trained length (``windowed_loss``); each
        rank scores its share of the clips (i % world_size == rank), the mean is over all."""
        if not self.holdout:
            return {}
        model = self.model
        was = model.training
        model.eval()
        total, count = 0.0, 0
        for i, s in enumerate(self.holdout):
            if i % self.dist.world_size != self.dist.rank:
                continue
            batch = collate(self.holdout, [(i, 0, s.frames)], model.config.motion, self.device)
            with autocast(self.device, self.use_amp):
                total += model.windowed_loss(**batch)[0].item()
            count += 1
        model.train(was)
        shares = mean_over_ranks({"total": total, "count": count}, self.dist, self.device)
        return {"eval": shares["total"] / shares["count"]}  # a ratio of means: the ratio of the sums

    def validate(self, out_dir: Path):
        if self.validation is None or not self.validation.clips:
            return None
        # here, not at the top: validation loads the metrics engine (cv2, scipy, skimage; seconds)
        from talkbench.vqtalker.validation import validate_generator

        tc = self.config["train"]
        model = self.model
        was = model.training
        model.eval()
        try:
            return validate_generator(model, self.validation.tokenizer, self.validation.speech_backend,
                                      self.validation.clips, out_dir, self.device,
                                      metrics=tc.get("validate_metrics"), max_frames=int(tc.get("validate_frames", 50)),
                                      controls_cache_dir=self.validation.cache_dir,
                                      run_dir=self.validation_dir)  # references once, latest and best renders only
        finally:
            model.train(was)

    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "step": self.step, "config": self.config, "meta": self.meta,
                "model": self.model.state_dict(), "optim": self.optim.state_dict(), "sched": self.sched.state_dict()}

    def load_state(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optim.load_state_dict(ckpt["optim"])
        self.sched.load_state_dict(ckpt["sched"])
        self.step = int(ckpt["step"])


# ----------------------------------------------------------------------------- end to end


def split_videos(config: dict) -> tuple[list, list]:
    """(training, held-out) clips of ``data.source``: a built dataset's ``data.splits.train`` /
    ``data.splits.val`` clips (``TrainingClip``s), or else its videos with ``data.holdout``
    listing the held-out clip stems."""
    dc = config.get("data", {})
    source = dc.get("source", "sample")
    if is_built_dataset(source):
        return dataset_splits(source, dc.get("splits"))
    if dc.get("splits"):
        log.warning("data.source %s is not a built dataset: data.splits does not apply, data.holdout names the "
                    "held-out clips", source)
    videos = [c.path for c in clips_from_source(source, fps=float(dc.get("fps", media.DEFAULT_FPS)))]
    hold = set(dc.get("holdout") or [])
    train = [v for v in videos if v.stem not in hold]
    held = [v for v in videos if v.stem in hold]
    if not train:
        raise TrainingError("every clip is held out: nothing to train on")
    return train, held


def _clip_name(clip) -> str:
    return clip.clip_id if isinstance(clip, TrainingClip) else Path(clip).stem


def build_trainer(config: dict, out_dir: str | Path, tokenizer_checkpoint: str | Path, dist_info: DistInfo | None = None,
                  cache_dir: Path | None = None, threads: int = 2, device=None) -> GeneratorTrainer:
    """A generator trainer on the stage-1 checkpoint: its tokens, speech features and controls
    of every clip prepared on this rank's device, each rank encoding its shard."""
    info = dist_info or DistInfo()
    device = default_device(info, device)
    tokenizer = load_tokenizer(tokenizer_checkpoint, device)
    sha = util.sha256_file(tokenizer_checkpoint)
    backend = speech_backend_from(config, threads)  # Whisper where speech.device says, not on the rank's device
    # before the hours of preparation, not after
    if config["model"].get("speech_discrete", True) and backend.vocab_size != config["model"]["speech_vocab"]:
        raise TrainingError(f"speech backend has {backend.vocab_size} codes but model.speech_vocab is "
                            f"{config['model']['speech_vocab']}: set --set model.speech_vocab={backend.vocab_size}")
    motion = config["model"].get("motion", "grfsq")
    fps = float(config.get("data", {}).get("fps", media.DEFAULT_FPS))
    train, held = split_videos(config)
    prepare = dict(tokenizer=tokenizer, tokenizer_sha=sha, speech_backend=backend, motion=motion, fps=fps,
                   cache_dir=cache_dir, device=device, dist_info=info,
                   timeout_s=prepare_timeout(config.get("train", {})),
                   engine=config.get("data", {}).get("engine", "local"),  # controls in parallel, as stage 1's regions
                   workers=int(config.get("data", {}).get("prepare_workers", 2)),
                   ray_address=config.get("data", {}).get("ray_address"))
    samples = prepare_generator_samples(train, **prepare)
    holdout = prepare_generator_samples(held, **prepare) if held else []
    meta = {"tokenizer_checkpoint": str(tokenizer_checkpoint), "tokenizer_sha256": sha, "speech": backend.describe(),
            "train_clips": [_clip_name(v) for v in train], "holdout_clips": [_clip_name(v) for v in held]}
    if getattr(backend, "centroids", None) is not None:  # Whisper units travel with the model
        meta["speech_units"] = torch.from_numpy(backend.centroids)
        meta["speech_units_meta"] = json.dumps(backend.meta)
    validation = ValidationInputs(tokenizer, backend, held, cache_dir)
    return GeneratorTrainer(config, out_dir, samples, holdout, device=device, dist_info=info, meta=meta,
                            validation=validation)


def main(argv: list[str] | None = None) -> None:
    """``torchrun -m talkbench.vqtalker.generator_train --config C --tokenizer CKPT --out DIR``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not torch.cuda.is_available():  # CPU ranks share the cores
        torch.set_num_threads(int(os.environ.get("TALKBENCH_TORCH_THREADS", "1")))
    config = apply_overrides(load_generator_config(args.config), args.overrides)
    # the config first: the long preparation group is made with its timeout, right at joining
    info = init_distributed(prepare_timeout(config.get("train", {})))
    trainer = build_trainer(config, args.out, args.tokenizer, info, Path(args.cache_dir) if args.cache_dir else None)
    if args.resume:
        trainer.load(args.resume)
    rows = trainer.fit(steps=args.steps)
    if info.is_main:
        print(json.dumps({"step": trainer.step, "world_size": info.world_size, "batch_per_process": trainer.batch_size,
                          "last": rows[-1] if rows else None}))
    finish_distributed(info)


if __name__ == "__main__":
    main()
