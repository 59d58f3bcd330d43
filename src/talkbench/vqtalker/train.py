"""Training of the stage-1 tokenizer: source/target frame pairs from clips, G and D updates as
in LIA, gradient accumulation, DDP under ``torchrun`` (NCCL on GPUs, gloo on CPU), bf16
autocast on CUDA only, checkpoints that load with ``weights_only=True`` and resume exactly.

Exact resume: the only randomness is the choice of training pairs, drawn from a generator
seeded by (seed, step, rank, micro-batch), and the model, discriminator and (random-init) VGG
are built in a fixed order after ``torch.manual_seed(seed)``. So step k of a resumed run sees
the same data and the same weights as step k of an uninterrupted one.

    trainer = Trainer(load_config("tiny"), out_dir)
    trainer.fit(steps=200)
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import platformdirs
import torch
import torch.distributed as dist
from torch import nn

from talkbench import media
from talkbench.errors import TalkbenchError
from talkbench.vqtalker.losses import (
    Discriminator,
    GeneratorLoss,
    LossWeights,
    PerceptualLoss,
    d_nonsaturating_loss,
    region_boxes,
    region_masks,
)
from talkbench.vqtalker.tokenizer import MotionTokenizer, TokenizerConfig, load_matching, to_model

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "talkbench-vqtalker-tokenizer/1"


class TrainingError(TalkbenchError):
    """A training run that cannot start or continue (no clips, bad checkpoint, …)."""


# ----------------------------------------------------------------------------- data


def default_cache_dir() -> Path:
    override = os.environ.get("TALKBENCH_CACHE_DIR")
    root = Path(override) if override else Path(platformdirs.user_cache_dir("talkbench"))
    return root / "vqtalker"


def clip_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def clip_landmarks(path: Path, fps: float, cache_dir: Path) -> np.ndarray:
    """(T, 68, 2) float32 dlib landmarks of every frame at ``fps`` in source pixels, computed once
    per clip and cached; frames without a face take the nearest frame's landmarks (NaN when
    the clip has no face at all)."""
    target = cache_dir / clip_key(path) / f"landmarks_{fps:g}fps.npy"
    if target.is_file():
        return np.load(target)
    from talkbench.face import analyse_image, get_backend

    backend = get_backend("dlib")
    found = []
    for frame in media.iter_frames(path, fps=fps):
        a = analyse_image(frame, backend, landmarks=True)
        found.append(a.landmarks if a.found else None)
    valid = [i for i, lm in enumerate(found) if lm is not None]
    out = np.full((len(found), 68, 2), np.nan, dtype=np.float32)
    if valid:
        for i in range(len(found)):
            nearest = min(valid, key=lambda j: abs(j - i))
            out[i] = found[nearest]
    else:
        log.warning("%s: no face found in any frame; eye/mouth losses are zero for this clip", path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, out)
    os.replace(tmp, target)
    return out


def clip_frames(path: Path, size: int, fps: float, cache_dir: Path) -> np.ndarray:
    """(T, size, size, 3) uint8 frames, decoded once per clip and size into a memory-mapped cache."""
    target = cache_dir / clip_key(path) / f"frames_{size}_{fps:g}fps.npy"
    if not target.is_file():
        frames = media.read_frames(path, fps=fps, size=size)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, frames)
        os.replace(tmp, target)
    return np.load(target, mmap_mode="r")


@dataclass
class ClipData:
    path: Path
    frames: np.ndarray  # (T, S, S, 3) uint8
    boxes: np.ndarray  # (T, 3, 4) eye/eye/mouth boxes in training pixels (NaN: none)


def resolve_videos(source) -> list[Path]:
    """``sample`` (the sample corpus), a directory of .mp4 files, a file, or a list of files."""
    if source == "sample":
        from talkbench.samples import load_sample_corpus

        return [Path(c.video) for c in load_sample_corpus()]
    if isinstance(source, (list, tuple)):
        return [Path(p) for p in source]
    path = Path(source)
    if path.is_dir():
        videos = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".mp4", ".mov", ".mkv", ".webm"))
        if not videos:
            raise TrainingError(f"{path}: no .mp4/.mov/.mkv/.webm clips found")
        return videos
    if path.is_file():
        return [path]
    raise TrainingError(f"{source}: data.source must be 'sample', a directory of clips, or a list of files")


def load_clips(
    videos: Iterable[Path], size: int, fps: float, margin: float, cache_dir: Path | None = None, landmarks: bool = True
) -> list[ClipData]:
    """Frames and eye/mouth boxes of every clip (``landmarks=False``: no face analysis, NaN boxes,
    for runs whose eye and mouth weights are zero)."""
    cache_dir = cache_dir or default_cache_dir()
    clips = []
    for path in videos:
        path = Path(path)
        frames = clip_frames(path, size, fps, cache_dir)
        lm = clip_landmarks(path, fps, cache_dir) if landmarks else np.full((len(frames), 68, 2), np.nan, np.float32)
        info = media.probe(path)
        scale = np.array([size / info.width, size / info.height], dtype=np.float32)
        n = min(len(frames), len(lm))
        if n < 2:
            raise TrainingError(f"{path}: needs at least 2 frames, has {n}")
        clips.append(ClipData(path, frames[:n], region_boxes(lm[:n] * scale, margin)))
    if not clips:
        raise TrainingError("no training clips")
    return clips


class PairSampler:
    """Source/target frame pairs from one clip, drawn deterministically from (seed, step, rank, micro)."""

    def __init__(self, clips: list[ClipData], batch_size: int, seed: int):
        self.clips, self.batch_size, self.seed = clips, batch_size, seed

    def indices(self, step: int, rank: int = 0, micro: int = 0) -> list[tuple[int, int, int]]:
        rng = np.random.default_rng([self.seed, step, rank, micro])
        out = []
        for _ in range(self.batch_size):
            c = int(rng.integers(len(self.clips)))
            s, t = rng.choice(len(self.clips[c].frames), size=2, replace=False)
            out.append((c, int(s), int(t)))
        return out

    def batch(self, picks: list[tuple[int, int, int]], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = np.stack([self.clips[c].frames[s] for c, s, _ in picks])
        tgt = np.stack([self.clips[c].frames[t] for c, _, t in picks])
        boxes = torch.from_numpy(np.stack([self.clips[c].boxes[t] for c, _, t in picks]))
        return to_model(src, device), to_model(tgt, device), boxes.to(device)


# ----------------------------------------------------------------------------- distributed


class ScalarLog:
    """A run's scalars, a row per logged step: ``OUT/log.csv`` (fixed columns, appended across
    resumes) and TensorBoard under ``OUT/tensorboard`` when tensorboard is installed."""

    def __init__(self, out_dir: Path, fields: list[str]):
        self.out_dir, self.fields = Path(out_dir), fields
        self._tb = None  # None: not opened yet; False: tensorboard is not installed

    def write(self, row: dict) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))
            except ImportError:
                self._tb = False
        if self._tb:
            for k, v in row.items():
                if k in self.fields and k not in ("step", "time") and v is not None and v != "":
                    self._tb.add_scalar(k, v, row["step"])
            self._tb.flush()

    def close(self) -> None:
        if self._tb:
            self._tb.close()
        self._tb = None


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m


def _set_requires_grad(m: nn.Module, flag: bool) -> None:
    for p in m.parameters():
        p.requires_grad_(flag)


# ----------------------------------------------------------------------------- trainer


class Trainer:
    def __init__(
        self,
        config: dict,
        out_dir: str | Path,
        device: str | torch.device | None = None,
        dist_info: DistInfo | None = None,
        clips: list[ClipData] | None = None,
    ):
        self.config = config
        self.out_dir = Path(out_dir)
        self.dist = dist_info or DistInfo()
        if device is None:
            device = f"cuda:{self.dist.local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        tc, lc, dc = config["train"], config["loss"], config.get("data", {})
        self.model_config = TokenizerConfig.from_dict(config["model"])
        self.size = self.model_config.size
        self.batch_size = int(tc["batch_size"])
        self.grad_accum = int(tc.get("grad_accum", 1))
        self.seed = int(tc.get("seed", 0))
        self.autocast = bool(tc.get("bf16", True)) and self.device.type == "cuda"
        self.weights = LossWeights.from_dict(lc)

        torch.manual_seed(self.seed)  # fixed build order: generator, discriminator, VGG
        self.gen = MotionTokenizer(self.model_config).to(self.device)
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
        self.g_optim = torch.optim.Adam(self.gen.parameters(), lr=lr * g_ratio, betas=(0.0, 0.99**g_ratio))
        self.d_optim = (
            torch.optim.Adam(self.disc.parameters(), lr=lr * d_ratio, betas=(0.0, 0.99**d_ratio)) if self.disc else None
        )
        if tc.get("init_from"):
            self.init_from(tc["init_from"])
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.gen = nn.parallel.DistributedDataParallel(self.gen, device_ids=ids, broadcast_buffers=False)
            if self.disc is not None:
                self.disc = nn.parallel.DistributedDataParallel(self.disc, device_ids=ids, broadcast_buffers=False)
        self.step = 0

        if clips is None:
            videos = resolve_videos(dc.get("source", "sample"))
            if self.dist.enabled and not self.dist.is_main:
                dist.barrier()  # rank 0 fills the frame/landmark cache first, the others then read it
            clips = load_clips(videos, self.size, float(dc.get("fps", media.DEFAULT_FPS)), float(lc.get("region_margin", 0.25)),
                               Path(dc["cache_dir"]) if dc.get("cache_dir") else None,
                               landmarks=bool(self.weights.eye or self.weights.mouth))
            if self.dist.enabled and self.dist.is_main:
                dist.barrier()
        self.sampler = PairSampler(clips, self.batch_size, self.seed)
        self._scalars = ScalarLog(self.out_dir, ["step", "time", "l1", "eye", "mouth", "perceptual", "gan_g", "gan_d",
                                                 "quantizer", "total", "eval_l1"])

    @property
    def model(self) -> MotionTokenizer:
        return _unwrap(self.gen)

    # -- one optimisation step (G then D, as LIA)

    def _amp(self):
        if self.autocast:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self) -> dict[str, float]:
        gen, disc = self.gen, self.disc
        gen.train()
        disc_module = _unwrap(disc) if disc is not None else None
        if disc_module is not None:
            _set_requires_grad(disc_module, False)
        self.g_optim.zero_grad(set_to_none=True)
        sums: dict[str, torch.Tensor] = {}
        fakes, reals = [], []
        for micro in range(self.grad_accum):
            src, tgt, boxes = self.sampler.batch(self.sampler.indices(self.step, self.dist.rank, micro), self.device)
            eye, mouth = region_masks(boxes, self.size)
            sync = self.dist.enabled and micro < self.grad_accum - 1
            with (gen.no_sync() if sync else contextlib.nullcontext()):
                with self._amp():
                    out = gen(src, tgt)
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
                    with self._amp():
                        d_loss = d_nonsaturating_loss(disc(fake), disc(real))
                    (d_loss / self.grad_accum).backward()
                sums["gan_d"] = sums.get("gan_d", 0.0) + d_loss.detach().float() / self.grad_accum
            self.d_optim.step()

        self.step += 1
        names = sorted(sums)
        values = torch.stack([sums[k] for k in names])
        if self.dist.enabled:
            dist.all_reduce(values)
            values /= self.dist.world_size
        return dict(zip(names, values.tolist()))

    @torch.no_grad()
    def evaluate(self, pairs: int = 16, seed: int = 12345) -> float:
        """Mean reconstruction L1 on fixed pairs (independent of the training step)."""
        model = self.model
        was_training = model.training
        model.eval()
        sampler = PairSampler(self.sampler.clips, pairs, seed)
        src, tgt, _ = sampler.batch(sampler.indices(0), self.device)
        with self._amp():
            out = model(src, tgt)
        model.train(was_training)
        return float((out.image.float() - tgt).abs().mean())

    # -- checkpoints

    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "config": self.config,
            "generator": self.model.state_dict(),
            "discriminator": _unwrap(self.disc).state_dict() if self.disc is not None else {},
            "g_optim": self.g_optim.state_dict(),
            "d_optim": self.d_optim.state_dict() if self.d_optim is not None else {},
        }

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path else self.out_dir / "checkpoints" / f"step_{self.step:07d}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        latest = path.parent / "latest.pt"
        if path != latest:
            tmp2 = latest.with_suffix(".tmp")
            torch.save(self.state_dict(), tmp2)
            os.replace(tmp2, latest)
        return path

    def load(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path)
        self.model.load_state_dict(ckpt["generator"])
        if self.disc is not None:
            _unwrap(self.disc).load_state_dict(ckpt["discriminator"])
            self.d_optim.load_state_dict(ckpt["d_optim"])
        self.g_optim.load_state_dict(ckpt["g_optim"])
        self.step = int(ckpt["step"])

    def init_from(self, path: str | Path) -> None:
        """Initialise from another resolution's checkpoint (512 from 256): matching tensors only."""
        ckpt = load_checkpoint(path)
        loaded, skipped = load_matching(self.model, ckpt["generator"])
        if self.disc is not None and ckpt.get("discriminator"):
            load_matching(_unwrap(self.disc), ckpt["discriminator"])
        log.info("init_from %s: %d tensors loaded, %d skipped (shape/name differ)", path, len(loaded), len(skipped))

    # -- loop

    def _log(self, row: dict) -> None:
        if self.dist.is_main:
            self._scalars.write(row)

    def fit(
        self,
        steps: int | None = None,
        log_every: int | None = None,
        checkpoint_every: int | None = None,
        eval_every: int | None = None,
        on_step: Callable[[int, dict], None] | None = None,
    ) -> list[dict]:
        """Train until ``self.step == steps``; returns the logged rows."""
        tc = self.config["train"]
        steps = int(steps if steps is not None else tc["steps"])
        log_every = int(log_every or tc.get("log_every", 100))
        checkpoint_every = int(checkpoint_every or tc.get("checkpoint_every", 5000))
        rows = []
        start = time.time()
        if eval_every and self.step == 0:
            row = {"step": 0, "time": 0.0, "eval_l1": self.evaluate()}
            self._log(row)
            rows.append(row)
        while self.step < steps:
            terms = self.train_step()
            if on_step:
                on_step(self.step, terms)
            if self.step % log_every == 0 or self.step == steps or (eval_every and self.step % eval_every == 0):
                row = {"step": self.step, "time": round(time.time() - start, 3), **terms}
                if eval_every and (self.step % eval_every == 0 or self.step == steps):
                    row["eval_l1"] = self.evaluate()
                self._log(row)
                rows.append(row)
            if self.dist.is_main and (self.step % checkpoint_every == 0 or self.step == steps):
                self.save()
        self._scalars.close()
        return rows


def load_checkpoint(path: str | Path, fmt: str = CHECKPOINT_FORMAT) -> dict:
    """A checkpoint dict loaded with ``weights_only=True`` whose ``format`` field is ``fmt``."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: checkpoint not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise TrainingError(f"{path}: not a {fmt} checkpoint (its format is {ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r})")
    return ckpt


def load_tokenizer(path: str | Path, device="cpu") -> MotionTokenizer:
    """The generator of a checkpoint, in eval mode."""
    ckpt = load_checkpoint(path)
    model = MotionTokenizer(TokenizerConfig.from_dict(ckpt["config"]["model"]))
    model.load_state_dict(ckpt["generator"])
    return model.to(device).eval()


def apply_overrides(config: dict, overrides: Iterable[str]) -> dict:
    """``section.key=value`` overrides (values parsed as YAML) on a copy of ``config``."""
    import copy

    import yaml

    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise TrainingError(f"override {item!r} is not KEY=VALUE (e.g. train.steps=100)")
        node = config
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return config


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``torchrun -m talkbench.vqtalker.train --config C --out DIR [--set k=v …]``."""
    import argparse
    import json

    from talkbench.vqtalker.tokenizer import load_config

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
    info = init_distributed()
    config = apply_overrides(load_config(args.config), args.overrides)
    trainer = Trainer(config, args.out, dist_info=info)
    if args.resume:
        trainer.load(args.resume)
    rows = trainer.fit(steps=args.steps)
    if args.save_replicas:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        torch.save(trainer.state_dict(), Path(args.out) / f"replica_rank{info.rank}.pt")
    if info.is_main and rows:
        print(json.dumps({"step": trainer.step, "world_size": info.world_size, "last": rows[-1]}))
    if info.enabled:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
