"""Training of the stage-2 generator, and generation of talking-head videos with it.

Data: for every clip, computed once and cached (VQTalker cache dir, keyed by clip and by the
tokenizer checkpoint's sha256 / the speech backend's description):
  * targets — the stage-1 tokenizer's GRFSQ indices (G, R, T) of f_t - f_0 (``codec.encode_frames``)
    or, for the ``vector`` ablations, the motion f_t - f_0 itself (T, 120);
  * f_g — the tokenizer's global feature of frame 0 (the portrait at generation time);
  * speech — ``speech.clip_speech`` (25 fps); controls — ``controls.clip_controls``.

Training windows of ``train.window`` frames are drawn from a generator seeded by (seed, step,
rank), so a resumed run sees the same batches; DDP under torchrun (gloo on CPU, NCCL on GPUs),
bf16 autocast on CUDA only, checkpoints that load with ``weights_only=True``, ``log.csv``.

    torchrun --nproc_per_node 2 -m talkbench.vqtalker.generator_train --config tiny \\
        --tokenizer runs/tok/checkpoints/latest.pt --out runs/gen
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from talkbench import media
from talkbench.vqtalker.controls import Controls, clip_controls, image_controls
from talkbench.vqtalker.generator import GeneratorConfig, MotionGenerator
from talkbench.vqtalker.speech import SpeechFeatures, clip_speech, frame_count, get_speech_backend
from talkbench.vqtalker.train import (
    DistInfo,
    ScalarLog,
    TrainingError,
    clip_key,
    _unwrap,
    clip_frames,
    default_cache_dir,
    init_distributed,
    resolve_videos,
)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "talkbench-vqtalker-generator/1"


def file_sha256(path: str | Path) -> str:
    from talkbench.weights import file_sha256 as _sha

    return _sha(Path(path))


# ----------------------------------------------------------------------------- data


@dataclass
class GeneratorSample:
    clip: str
    speech: np.ndarray  # (T, per_frame) int64 or (T, dim) float32
    controls: np.ndarray  # (T, 7) float32
    targets: np.ndarray  # (G, R, T) int64, or (T, motion_dim) float32 for motion: vector
    global_feature: np.ndarray  # (style_dim,) float32

    @property
    def frames(self) -> int:
        return int(self.speech.shape[0])


def speech_backend_from(config: dict, threads: int = 2, meta: dict | None = None):
    """The config's speech backend; Whisper units embedded in a checkpoint's ``meta`` win."""
    sc = dict(config.get("speech") or {})
    name = sc.pop("backend", "whisper-units")
    if name == "whisper-units" and meta and meta.get("speech_units") is not None:
        from talkbench.vqtalker.speech import WhisperUnits

        return WhisperUnits(threads=threads, centroids=np.asarray(meta["speech_units"]),
                            meta=json.loads(meta["speech_units_meta"]))
    if name == "whisper-units":
        from talkbench.vqtalker.speech import default_units_path

        k = int(sc.pop("k", 64))
        metric = sc.pop("metric", "euclidean")
        units = sc.pop("units", None) or default_units_path(k, metric=metric)
        return get_speech_backend(name, units=units, threads=threads)
    options = {k: v for k, v in sc.items() if v is not None}
    return get_speech_backend(name, **options)


@torch.no_grad()
def tokenizer_targets(tokenizer, video: Path, tokenizer_sha: str, fps: float, cache_dir: Path) -> dict[str, np.ndarray]:
    """Stage-1 indices (G, R, T), motion f_t - f_0 (T, d) and f_g (style_dim,) of a clip, cached."""
    from talkbench.vqtalker.codec import encode_frames
    from talkbench.vqtalker.tokenizer import to_model

    target = cache_dir / clip_key(video) / f"stage1_{tokenizer_sha[:16]}_{fps:g}fps.npz"
    if target.is_file():
        with np.load(target) as data:
            return {k: data[k] for k in data.files}
    frames = np.array(clip_frames(video, tokenizer.config.size, fps, cache_dir))  # a writable copy of the memmap
    device = next(tokenizer.parameters()).device
    indices = encode_frames(tokenizer, frames)
    f_g, _, f_s = tokenizer.encode_source(to_model(frames[:1], device))
    motion = [tokenizer.motion_feature(to_model(frames[i : i + 16], device)) - f_s for i in range(0, len(frames), 16)]
    out = {"indices": indices.astype(np.int64), "motion": torch.cat(motion).cpu().numpy().astype(np.float32),
           "global_feature": f_g[0].cpu().numpy().astype(np.float32)}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, target)
    return out


def prepare_samples(videos: list[Path], tokenizer, tokenizer_sha: str, speech_backend, motion: str = "grfsq",
                    fps: float = media.DEFAULT_FPS, cache_dir: Path | None = None) -> list[GeneratorSample]:
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    samples = []
    for video in videos:
        video = Path(video)
        stage1 = tokenizer_targets(tokenizer, video, tokenizer_sha, fps, cache_dir)
        speech = clip_speech(speech_backend, video, cache_dir)
        controls = clip_controls(video, fps, cache_dir)
        t = min(speech.frames, len(controls), stage1["indices"].shape[-1])
        if t < 2:
            raise TrainingError(f"{video}: fewer than 2 aligned frames")
        targets = stage1["indices"][..., :t] if motion == "grfsq" else stage1["motion"][:t]
        samples.append(GeneratorSample(video.stem, speech.values[:t], controls.stacked()[:t], targets,
                                       stage1["global_feature"]))
    return samples


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


class GeneratorTrainer:
    def __init__(self, config: dict, out_dir: str | Path, samples: list[GeneratorSample],
                 holdout: list[GeneratorSample] | None = None, device=None, dist_info: DistInfo | None = None,
                 meta: dict | None = None):
        self.config, self.out_dir = config, Path(out_dir)
        self.dist = dist_info or DistInfo()
        if device is None:
            device = f"cuda:{self.dist.local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        tc = config["train"]
        self.model_config = GeneratorConfig.from_dict(config["model"])
        self.seed = int(tc.get("seed", 0))
        self.autocast = bool(tc.get("bf16", True)) and self.device.type == "cuda"
        torch.manual_seed(self.seed)
        self.gen = MotionGenerator(self.model_config).to(self.device)
        self.optim = torch.optim.AdamW(self.gen.parameters(), lr=float(tc["lr"]),
                                       weight_decay=float(tc.get("weight_decay", 0.0)))
        warmup = int(tc.get("warmup", 0))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.optim, lambda s: min(1.0, (s + 1) / max(warmup, 1)))
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.gen = nn.parallel.DistributedDataParallel(self.gen, device_ids=ids)
        self.samples, self.holdout = samples, holdout or []
        self.sampler = WindowSampler(samples, int(tc["batch_size"]), int(tc.get("window", 64)), self.seed)
        self.meta = meta or {}
        self.step = 0
        layers = [f"{k}_r{r}" for k in ("nll", "acc") for r in range(1, self.model_config.residuals + 1)]
        self._scalars = ScalarLog(self.out_dir, ["step", "time", "nll", "mse", *layers, "eval"])

    @property
    def model(self) -> MotionGenerator:
        return _unwrap(self.gen)

    def _amp(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()

    def train_step(self) -> dict[str, float]:
        self.gen.train()
        torch.manual_seed(hash((self.seed, self.step, self.dist.rank)) % (2**63))  # dropout: exact resume
        batch = collate(self.samples, self.sampler.picks(self.step, self.dist.rank), self.model_config.motion, self.device)
        with self._amp():
            loss, terms = self.model.loss(**batch, forward=self.gen)  # through DDP when distributed
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        self.sched.step()
        self.step += 1
        names = sorted(terms)
        values = torch.tensor([terms[k] for k in names], dtype=torch.float64)
        if self.dist.enabled:
            dist.all_reduce(values)
            values /= self.dist.world_size
        return dict(zip(names, values.tolist()))

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Teacher-forced loss (per-token NLL, or MSE) on the held-out clips, whole clips."""
        if not self.holdout:
            return None
        model = self.model
        was = model.training
        model.eval()
        values = []
        for i, s in enumerate(self.holdout):
            n = min(s.frames, model.config.max_len)
            batch = collate(self.holdout, [(i, 0, n)], model.config.motion, self.device)
            values.append(model.loss(**batch)[0].item())
        model.train(was)
        return float(np.mean(values))

    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "step": self.step, "config": self.config, "meta": self.meta,
                "model": self.model.state_dict(), "optim": self.optim.state_dict(), "sched": self.sched.state_dict()}

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path else self.out_dir / "checkpoints" / f"step_{self.step:07d}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        for target in (path, path.parent / "latest.pt"):
            tmp = target.with_suffix(".tmp")
            torch.save(state, tmp)
            os.replace(tmp, target)
        return path

    def load(self, path: str | Path) -> None:
        ckpt = load_generator_checkpoint(path)
        self.model.load_state_dict(ckpt["model"])
        self.optim.load_state_dict(ckpt["optim"])
        self.sched.load_state_dict(ckpt["sched"])
        self.step = int(ckpt["step"])

    def _log(self, row: dict) -> None:
        if self.dist.is_main:
            self._scalars.write(row)

    def fit(self, steps: int | None = None, on_step: Callable[[int, dict], None] | None = None) -> list[dict]:
        tc = self.config["train"]
        steps = int(steps if steps is not None else tc["steps"])
        log_every = int(tc.get("log_every", 10))
        checkpoint_every = int(tc.get("checkpoint_every", 1000))
        rows, start = [], time.time()
        if self.step == 0 and self.holdout:
            row = {"step": 0, "time": 0.0, "eval": self.evaluate()}
            self._log(row)
            rows.append(row)
        while self.step < steps:
            terms = self.train_step()
            if on_step:
                on_step(self.step, terms)
            if self.step % log_every == 0 or self.step == steps:
                row = {"step": self.step, "time": round(time.time() - start, 3), **terms, "eval": self.evaluate()}
                self._log(row)
                rows.append(row)
            if self.dist.is_main and (self.step % checkpoint_every == 0 or self.step == steps):
                self.save()
        self._scalars.close()
        return rows


def load_generator_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: generator checkpoint not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not a talkbench generator checkpoint ({CHECKPOINT_FORMAT})")
    return ckpt


def load_generator(path: str | Path, device="cpu") -> tuple[MotionGenerator, dict]:
    ckpt = load_generator_checkpoint(path)
    model = MotionGenerator(GeneratorConfig.from_dict(ckpt["config"]["model"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


# ----------------------------------------------------------------------------- end to end


def split_videos(config: dict) -> tuple[list[Path], list[Path]]:
    """(training, held-out) videos of ``data.source``; ``data.holdout`` lists clip stems."""
    dc = config.get("data", {})
    videos = resolve_videos(dc.get("source", "sample"))
    hold = set(dc.get("holdout") or [])
    train = [v for v in videos if v.stem not in hold]
    held = [v for v in videos if v.stem in hold]
    if not train:
        raise TrainingError("every clip is held out: nothing to train on")
    return train, held


def build_trainer(config: dict, out_dir: str | Path, tokenizer_checkpoint: str | Path, dist_info: DistInfo | None = None,
                  cache_dir: Path | None = None, threads: int = 2) -> GeneratorTrainer:
    from talkbench.vqtalker.train import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_checkpoint)
    sha = file_sha256(tokenizer_checkpoint)
    backend = speech_backend_from(config, threads)
    motion = config["model"].get("motion", "grfsq")
    fps = float(config.get("data", {}).get("fps", media.DEFAULT_FPS))
    train, held = split_videos(config)
    samples = prepare_samples(train, tokenizer, sha, backend, motion, fps, cache_dir)
    holdout = prepare_samples(held, tokenizer, sha, backend, motion, fps, cache_dir)
    if config["model"].get("speech_discrete", True) and backend.vocab_size != config["model"]["speech_vocab"]:
        raise TrainingError(f"speech backend has {backend.vocab_size} codes but model.speech_vocab is "
                            f"{config['model']['speech_vocab']}: set --set model.speech_vocab={backend.vocab_size}")
    meta = {"tokenizer_checkpoint": str(tokenizer_checkpoint), "tokenizer_sha256": sha, "speech": backend.describe(),
            "train_clips": [v.stem for v in train], "holdout_clips": [v.stem for v in held]}
    if getattr(backend, "centroids", None) is not None:  # Whisper units travel with the model
        meta["speech_units"] = torch.from_numpy(backend.centroids)
        meta["speech_units_meta"] = json.dumps(backend.meta)
    return GeneratorTrainer(config, out_dir, samples, holdout, dist_info=dist_info, meta=meta)


@torch.no_grad()
def generate_video(generator_checkpoint: str | Path, portrait: str | Path | np.ndarray, audio: str | Path | np.ndarray,
                   out: str | Path,
                   controls_from: str | Path | None = None, tokenizer_checkpoint: str | Path | None = None,
                   window: int | None = None, output_size: int | None = None) -> dict:
    """portrait image + speech -> talking-head mp4 at 25 fps with the audio muxed in, at the
    tokenizer's resolution or upscaled to ``output_size``.

    Frames = ``frame_count(len(audio))``. Controls come from ``controls_from`` (a video; cut or
    held at its last frame to the audio length) or, without it, the portrait's own pose, gaze
    and openness held still.
    """
    from PIL import Image

    from talkbench.vqtalker.codec import render_tokens, upscaled
    from talkbench.vqtalker.tokenizer import to_model
    from talkbench.vqtalker.train import load_tokenizer

    model, ckpt = load_generator(generator_checkpoint)
    meta = ckpt.get("meta", {})
    tok_path = tokenizer_checkpoint or meta.get("tokenizer_checkpoint")
    if not tok_path:
        raise TrainingError("no tokenizer checkpoint: pass --tokenizer (the stage-1 checkpoint the generator was trained with)")
    tokenizer = load_tokenizer(tok_path)
    size = tokenizer.config.size
    image = portrait if isinstance(portrait, np.ndarray) else np.asarray(Image.open(portrait).convert("RGB"))
    wave = np.asarray(audio, np.float32) if isinstance(audio, np.ndarray) else media.read_audio(audio)
    frames = frame_count(len(wave))
    backend = speech_backend_from(ckpt["config"], meta=meta)
    speech: SpeechFeatures = backend(wave)
    if controls_from:
        controls: Controls = clip_controls(controls_from).resized(frames)
    else:
        controls = image_controls(image, frames)
    source = np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BOX))
    f_g = tokenizer.encode_source(to_model(source[None]))[0][0]
    tokens = model.generate(torch.from_numpy(speech.values), torch.from_numpy(controls.stacked()), f_g, window=window)
    if model.config.motion == "grfsq":
        indices = tokens.numpy()
        video_frames = render_tokens(tokenizer, source, indices)
    else:
        video_frames = _render_vector(tokenizer, source, tokens)
    path = media.write_video(out, upscaled(video_frames, output_size), fps=media.DEFAULT_FPS, audio=wave)
    return {"out": str(path), "frames": frames, "audio_seconds": len(wave) / media.AUDIO_RATE,
            "size": max(size, output_size or 0), "rendered_size": size,
            "speech": speech.meta, "controls_from": str(controls_from) if controls_from else "portrait",
            "tokens": list(tokens.shape)}


def _render_vector(tokenizer, source: np.ndarray, motion: torch.Tensor, batch: int = 16):
    from talkbench.vqtalker.tokenizer import from_model, to_model

    f_g, feats, _ = tokenizer.encode_source(to_model(source[None]))
    for i in range(0, motion.shape[0], batch):
        q = motion[i : i + batch]
        n = q.shape[0]
        image = tokenizer.render(f_g.expand(n, -1), [f.expand(n, -1, -1, -1) for f in feats], q)
        yield from from_model(image)


def main(argv: list[str] | None = None) -> None:
    """``torchrun -m talkbench.vqtalker.generator_train --config C --tokenizer CKPT --out DIR``."""
    import argparse

    from talkbench.vqtalker.generator import load_generator_config
    from talkbench.vqtalker.train import apply_overrides

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
    torch.set_num_threads(int(os.environ.get("TALKBENCH_TORCH_THREADS", "1")))
    info = init_distributed()
    config = apply_overrides(load_generator_config(args.config), args.overrides)
    trainer = build_trainer(config, args.out, args.tokenizer, info, Path(args.cache_dir) if args.cache_dir else None)
    if args.resume:
        trainer.load(args.resume)
    rows = trainer.fit(steps=args.steps)
    if info.is_main:
        print(json.dumps({"step": trainer.step, "world_size": info.world_size, "last": rows[-1] if rows else None}))
    if info.enabled:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()


def mouth_opening(video: str | Path, upscale_to: int = 256) -> np.ndarray:
    """Per-frame mouth opening: mean inner-lip gap (dlib points 61-67, 62-66, 63-65) over the
    outer-eye-corner distance (36-45); NaN where no face is found. Frames smaller than
    ``upscale_to`` are upscaled first, so small renders (64 px) are measured too."""
    from PIL import Image

    from talkbench.face import analyse_image, get_backend

    backend = get_backend("dlib")
    opening = []
    for frame in media.iter_frames(video):
        if frame.shape[0] < upscale_to:
            frame = np.asarray(Image.fromarray(frame).resize((upscale_to, upscale_to), Image.Resampling.LANCZOS))
        face = analyse_image(frame, backend, landmarks=True)
        if not face.found:
            opening.append(np.nan)
            continue
        lm = face.landmarks
        gap = np.mean([np.linalg.norm(lm[a] - lm[b]) for a, b in ((61, 67), (62, 66), (63, 65))])
        opening.append(gap / max(np.linalg.norm(lm[36] - lm[45]), 1e-6))
    return np.array(opening)


def speech_envelope(wave: np.ndarray, frames: int) -> np.ndarray:
    """RMS of each 25 fps frame's 640 samples (0 past the end of the audio)."""
    wave = np.asarray(wave, np.float32)
    return np.array([np.sqrt(np.mean(wave[i * 640 : (i + 1) * 640] ** 2)) if i * 640 < len(wave) else 0.0
                     for i in range(frames)])


def correlate(opening: np.ndarray, envelope: np.ndarray) -> float:
    """Pearson r over the frames where a face was found (NaN when undefined)."""
    n = min(len(opening), len(envelope))
    ok = np.isfinite(opening[:n])
    if ok.sum() < 3 or opening[:n][ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(opening[:n][ok], envelope[:n][ok])[0, 1])


def mouth_envelope_correlation(video: str | Path, audio: np.ndarray | None = None) -> dict:
    """Pearson correlation between a video's mouth opening and its speech envelope (the
    video's own audio unless ``audio`` is given): the lip-sync check of generated videos."""
    wave = media.read_audio(video) if audio is None else np.asarray(audio, np.float32)
    opening = mouth_opening(video)
    n = min(len(opening), frame_count(len(wave)))
    return {"video": str(video), "frames": int(n), "faces": int(np.isfinite(opening[:n]).sum()),
            "correlation": correlate(opening[:n], speech_envelope(wave, n)),
            "opening_std": float(np.nanstd(opening[:n])) if np.isfinite(opening).any() else float("nan")}
