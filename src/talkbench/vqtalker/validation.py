"""Held-out validation during training: render the validation clips with the in-memory models
and score them with the metrics engine (``talkbench.metrics.engine``), the same code as
``talkbench eval``.

    result = validate_tokenizer(model, clips, out_dir, device)        # stage 1: reconstruction
    result = validate_generator(generator, tokenizer, backend, clips, out_dir, device)  # stage 2

(``best.BestCheckpoint`` keeps the checkpoint of the best validation run.)

Each clip is cut to its first ``max_frames`` frames at 25 fps and the model's resolution. Stage 1
reconstructs it from its first frame and its own motion tokens (``codec.encode_frames`` +
``codec.render_tokens``); stage 2 generates it from its first frame, its audio and its own
controls (pose, gaze, blink). ``out_dir`` receives ``renders/<clip>.mp4``,
``references/<clip>.mp4`` (the cut ground truth) and ``validation.json``, so
``talkbench eval -g OUT/renders -r OUT/references`` reproduces the numbers. Both are written
losslessly and upscaled (Lanczos, ``codec.upscaled``) to the evaluation resolution when the
model draws smaller, so that the face metrics see faces dlib can find.

In a training run (``run_dir``: the folder of its validations, ``OUT/validation``, with one
``out_dir`` per step) the disk does not grow with every validation: the cut ground truths are
written once, under ``run_dir/references/<stage>-<key>/`` (the key: model resolution, frames,
fps, evaluation resolution; ``sources.json`` there records each clip file's size and mtime, so
a changed clip is cut again), and every validation reuses them; each validation's renders
replace the previous ones: only the latest step and the step of the best checkpoint (the one
``OUT/checkpoints/best.json`` records) keep ``renders/``; every step keeps its
``validation.json``, and the training log its values. ``validation.json`` names the files each
clip was scored on. The renders of other steps are only removed when ``out_dir`` is a folder of
``run_dir`` (the training loop passes both, ``Stage.validation_dir``).

Nothing here stops training: a metric whose weights are missing (LPIPS without AlexNet, CSIM
with an ArcFace backend that is not installed) or that no clip could give is listed in
``ValidationResult.skipped`` with the reason, and a clip that fails to render or score is
listed in ``ValidationResult.errors``. Only settings that name nothing known raise, at once.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from talkbench import media, util
from talkbench.errors import TalkbenchError
from talkbench.metrics.engine import ClipJob, evaluate
from talkbench.metrics.registry import get_metric
from talkbench.metrics.settings import EvalSettings
from talkbench.protocol import Protocol
from talkbench.vqtalker.cache import clip_key
from talkbench.vqtalker.codec import encode_frames, render_tokens, upscaled
from talkbench.vqtalker.controls import Controls, frames_controls
from talkbench.vqtalker.inference import render_motion_vectors
from talkbench.vqtalker.lipsync import mouth_envelope_correlation
from talkbench.vqtalker.speech import SAMPLES_PER_FRAME, frame_count
from talkbench.vqtalker.tokenizer import to_model

log = logging.getLogger(__name__)

VALIDATION_METRICS = ("ssim", "lmd", "csim", "lpips")  # issue 17: LPIPS when its weights are present
DEFAULT_MAX_FRAMES = 50
LIP_SYNC = "lip_sync_r"  # stage 2: Pearson r of mouth opening and speech envelope (talkbench.vqtalker.lipsync)
RESULT_FILE = "validation.json"
RENDERS = "renders"
REFERENCES = "references"
SOURCES_FILE = "sources.json"  # in a run's reference folder: clip id -> the clip file's cache key
SCHEMA = "talkbench-vqtalker-validation/1"


class ValidationError(TalkbenchError):
    """A validation setting that names nothing known (a metric), or a best-checkpoint record
    that cannot be read."""


@dataclass
class ClipValidation:
    """One validation clip: where its render and cut ground truth are, and its values."""

    clip_id: str
    video: str  # the validation clip
    render: str | None = None
    reference: str | None = None
    frames: int = 0  # rendered (= cut ground-truth) frames
    values: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # metric → why this clip has no value
    error: str | None = None  # why the clip has no result at all


@dataclass
class ValidationResult:
    """Held-out metrics of one validation run.

    ``values`` holds the mean over clips of every value name the engine gave (``ssim``,
    ``lpips``, ``csim_dlib``, ``lmd``, ``m_lmd``, ``f_lmd``; stage 2 adds ``lip_sync_r``):
    the columns a training log records. ``skipped`` says why a selected metric has no value."""

    stage: str  # "tokenizer" or "generator"
    values: dict[str, float]
    clips: list[ClipValidation]
    skipped: dict[str, str]  # metric → why it has no value in this run
    errors: dict[str, str]  # clip id → why it failed
    metrics: tuple[str, ...]  # the metrics asked for
    metric_versions: dict[str, str]
    protocol_sha256: str | None
    protocol: dict[str, Any] | None
    max_frames: int
    frames: int  # frames rendered and scored, all clips together
    size: int  # the model's render resolution
    resolution: int  # the evaluation resolution
    fps: float
    out_dir: str
    seconds: float
    schema: str = SCHEMA

    @property
    def clip_ids(self) -> list[str]:
        return [c.clip_id for c in self.clips]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ValidationResult:
        fields = {**data, "clips": [ClipValidation(**c) for c in data["clips"]], "metrics": tuple(data["metrics"])}
        return cls(**fields)

    def write(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path else Path(self.out_dir) / RESULT_FILE
        util.atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path


# ----------------------------------------------------------------------------- settings and clips


def validation_settings(metrics: Sequence[str] | None = None, settings: EvalSettings | None = None) -> EvalSettings:
    """The engine settings of a validation run: ``settings`` (default: talkbench-v1 at 256 px,
    dlib faces and identity, no on-disk cache, no bootstrap intervals) with ``metrics``
    (names, or one comma-separated string; default ``VALIDATION_METRICS``). Raises
    ``ValidationError`` naming an unknown metric."""
    base = settings or EvalSettings(use_cache=False, bootstrap_replicates=0, distribution_bootstrap_replicates=0)
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    chosen = replace(base, metrics=tuple(metrics) if metrics else VALIDATION_METRICS)
    try:
        chosen.check()
    except TalkbenchError as exc:
        raise ValidationError(f"validation metrics {','.join(chosen.metrics)}: {exc}") from None
    return chosen


@dataclass(frozen=True)
class _Clip:
    clip_id: str
    path: Path


def _clip_list(clips: Iterable) -> list[_Clip]:
    """Paths, or records with ``path`` (and ``clip_id``: ``data.TrainingClip``), with ids safe
    as file names and unique."""
    out, seen = [], set()
    for clip in clips:
        path = Path(getattr(clip, "path", clip))
        raw = getattr(clip, "clip_id", None) or path.stem
        clip_id = re.sub(r"[^A-Za-z0-9._-]+", "_", str(raw)).strip("._") or "clip"
        base, n = clip_id, 1
        while clip_id in seen:
            n += 1
            clip_id = f"{base}-{n}"
        seen.add(clip_id)
        out.append(_Clip(clip_id, path))
    return out


def _cut(path: Path, size: int, max_frames: int, fps: float) -> list[np.ndarray]:
    """The clip's first ``max_frames`` frames at ``fps``, resized to the model's ``size``²."""
    return list(itertools.islice(media.iter_frames(path, fps=fps, size=size), max_frames))


def _write(path: Path, frames: Iterable[np.ndarray], resolution: int, fps: float, audio: np.ndarray | None = None) -> Path:
    return media.write_video(path, upscaled(frames, resolution), fps=fps, audio=audio, lossless=True)


class _References:
    """Where a validation's cut ground truths go: ``out_dir/references`` when it stands alone;
    in a training run, one folder per stage and cut setting under ``run_dir/references``, whose
    files are written once per clip file and reused by every later validation."""

    def __init__(self, stage: str, out_dir: Path, run_dir: Path | None, size: int, max_frames: int,
                 settings: EvalSettings):
        self.shared = run_dir is not None
        if run_dir is None:
            self.folder = out_dir / REFERENCES
        else:
            cut = {"stage": stage, "size": size, "max_frames": max_frames, "fps": settings.fps,
                   "resolution": settings.resolution}
            key = hashlib.sha256(json.dumps(cut, sort_keys=True).encode()).hexdigest()[:12]
            self.folder = Path(run_dir) / REFERENCES / f"{stage}-{key}"
        self.sources = self._read() if self.shared else {}
        self.changed = False

    def _read(self) -> dict[str, str]:
        try:
            return dict(json.loads((self.folder / SOURCES_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return {}  # none yet, or unreadable: every reference is cut again

    def path(self, clip: _Clip) -> Path:
        return self.folder / f"{clip.clip_id}.mp4"

    def reusable(self, clip: _Clip) -> Path | None:
        """The reference an earlier validation wrote for this very clip file, if any."""
        path = self.path(clip)
        if self.shared and self.sources.get(clip.clip_id) == clip_key(clip.path) and path.is_file():
            return path
        return None

    def write(self, clip: _Clip, frames: Sequence[np.ndarray], settings: EvalSettings,
              audio: np.ndarray | None = None) -> Path:
        path = _write(self.path(clip), frames, settings.resolution, settings.fps, audio)
        if self.shared:
            self.sources[clip.clip_id] = clip_key(clip.path)
            self.changed = True
        return path

    def save(self) -> None:
        if self.changed:
            text = json.dumps(self.sources, indent=2, sort_keys=True) + "\n"
            util.atomic_write_text(self.folder / SOURCES_FILE, text)


def _best_step(run_dir: Path) -> str | None:
    """The name of the step folder whose validation made the best checkpoint, as
    ``OUT/checkpoints/best.json`` (OUT: ``run_dir``'s parent) records it; None when there is
    none yet. An unreadable record raises ``ValidationError``."""
    from talkbench.vqtalker.best import BEST_RECORD  # here: best imports this module

    record = run_dir.parent / "checkpoints" / BEST_RECORD
    if not record.is_file():
        return None
    try:
        return Path(json.loads(record.read_text())["validation"]).parent.name
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValidationError(f"{record}: no validation recorded ({type(exc).__name__}: {exc})") from None


def _drop_earlier_renders(run_dir: Path | None, out_dir: Path, rows: Sequence[ClipValidation]) -> None:
    """In a training run, the renders of every other validation under ``run_dir`` but the best
    checkpoint's, once this one rendered something (a validation that rendered nothing leaves
    the last renders there). Nothing is removed unless ``out_dir`` is a folder of ``run_dir``,
    nor when best.json cannot be read."""
    if run_dir is None or not any(r.render for r in rows):
        return
    run_dir = Path(run_dir)
    if out_dir.resolve().parent != run_dir.resolve():
        log.warning("validation: %s is not a folder of the run's validations %s: earlier renders kept", out_dir, run_dir)
        return
    try:
        keep = {out_dir.name, _best_step(run_dir)}
    except ValidationError as exc:
        log.warning("validation: earlier renders kept: %s", exc)
        return
    for step in run_dir.iterdir():
        renders = step / RENDERS
        if step.is_dir() and step.name not in keep and (step / RESULT_FILE).is_file() and renders.is_dir():
            shutil.rmtree(renders, ignore_errors=True)


def _model_device(model):
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _on(model, device):
    """``model`` unwrapped from DDP, on ``device`` (a copy when it lives elsewhere: the
    training model stays where it is)."""
    model = getattr(model, "module", model)
    here = _model_device(model)
    wanted = torch.device(device) if device is not None else here
    if wanted.type == here.type and (wanted.index is None or here.index is None or wanted.index == here.index):
        return model  # "cuda" is the current CUDA device: no copy of a model on cuda:0
    return copy.deepcopy(model).to(device)


class _EvalMode:
    """Models in eval mode for the block, each back in its own mode after."""

    def __init__(self, *models):
        self.models = models

    def __enter__(self):
        self.modes = [m.training for m in self.models]
        self.grad = torch.no_grad()
        self.grad.__enter__()
        for m in self.models:
            m.eval()

    def __exit__(self, *exc):
        for m, mode in zip(self.models, self.modes):
            m.train(mode)
        self.grad.__exit__(*exc)


# ----------------------------------------------------------------------------- the two stages


def validate_tokenizer(model, clips: Sequence, out_dir: str | Path, device=None, metrics: Sequence[str] | None = None,
                       max_frames: int = DEFAULT_MAX_FRAMES, settings: EvalSettings | None = None,
                       workers: int = 1, run_dir: str | Path | None = None) -> ValidationResult:
    """Stage 1: every clip reconstructed from its first frame and its own motion tokens by the
    in-memory ``model`` (a ``MotionTokenizer``, or DDP around one), then scored against the cut
    ground truth. ``device``: where to run (default: where the model is). ``run_dir``: the
    training run's validation folder (see the module doc: references reused, renders replaced)."""
    settings = validation_settings(metrics, settings)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    model = _on(model, device)
    size = int(model.config.size)
    references = _References("tokenizer", out_dir, Path(run_dir) if run_dir else None, size, max_frames, settings)
    rendered: list[ClipValidation] = []
    with _EvalMode(model):
        for clip in _clip_list(clips):
            row = ClipValidation(clip.clip_id, str(clip.path))
            rendered.append(row)
            try:
                frames = _cut(clip.path, size, max_frames, settings.fps)
                if not frames:
                    raise ValidationError(f"{clip.path}: no frames")
                reference = references.reusable(clip) or references.write(clip, frames, settings)
                indices = encode_frames(model, frames)
                render = _write(out_dir / RENDERS / f"{clip.clip_id}.mp4", render_tokens(model, frames[0], indices),
                                settings.resolution, settings.fps)  # fmt: skip
                row.reference, row.render, row.frames = str(reference), str(render), len(frames)
            except Exception as exc:  # noqa: BLE001 - one bad clip must not stop training
                row.error = f"{type(exc).__name__}: {exc}"
                log.warning("validation: %s not rendered: %s", clip.path, row.error)
    references.save()
    result = _score("tokenizer", rendered, settings, out_dir, size, max_frames, started, workers)
    _drop_earlier_renders(Path(run_dir) if run_dir else None, out_dir, rendered)
    return result


def validate_generator(generator, tokenizer, speech_backend: Callable, clips: Sequence, out_dir: str | Path, device=None,
                       metrics: Sequence[str] | None = None, max_frames: int = DEFAULT_MAX_FRAMES,
                       settings: EvalSettings | None = None, window: int | None = None, lip_sync: bool = True,
                       controls_cache_dir: str | Path | None = None, workers: int = 1,
                       run_dir: str | Path | None = None) -> ValidationResult:
    """Stage 2: every clip generated by the in-memory ``generator`` from its first frame, its
    first ``max_frames`` frames' audio (featurised by ``speech_backend``) and those frames' own
    controls (``controls.frames_controls``: only the cut is analysed, however long the clip;
    kept in ``controls_cache_dir`` when given), rendered by ``tokenizer``, then scored like
    stage 1; with ``lip_sync`` also the mouth-opening / speech-envelope correlation
    (``lip_sync_r``). ``window``: the generator's default window; ``device``: where to run
    (default: where the generator is); ``run_dir``: as for ``validate_tokenizer``."""
    settings = validation_settings(metrics, settings)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    generator = _on(generator, device)
    device = _model_device(generator)
    tokenizer = _on(tokenizer, device)
    size = int(tokenizer.config.size)
    references = _References("generator", out_dir, Path(run_dir) if run_dir else None, size, max_frames, settings)
    rendered: list[ClipValidation] = []
    with _EvalMode(generator, tokenizer):
        for clip in _clip_list(clips):
            row = ClipValidation(clip.clip_id, str(clip.path))
            rendered.append(row)
            try:
                frames = _cut(clip.path, size, max_frames, settings.fps)
                if not frames:
                    raise ValidationError(f"{clip.path}: no frames")
                wave = media.read_audio(clip.path)[: len(frames) * SAMPLES_PER_FRAME]
                if not len(wave):
                    raise ValidationError(f"{clip.path}: no audio to drive the generator")
                n = min(len(frames), frame_count(len(wave)))
                frames = frames[:n]
                speech = speech_backend(wave)
                controls = cut_controls(clip.path, n, settings.fps, controls_cache_dir)
                f_g = tokenizer.encode_source(to_model(frames[0][None], device))[0][0]
                motion = generator.generate(torch.from_numpy(speech.values[:n]).to(device),
                                            torch.from_numpy(controls.stacked()).to(device), f_g, window=window).cpu()
                video = (render_tokens(tokenizer, frames[0], motion.numpy()) if generator.config.motion == "grfsq"
                         else render_motion_vectors(tokenizer, frames[0], motion))  # fmt: skip
                reference = references.reusable(clip) or references.write(clip, frames, settings, wave)
                render = _write(out_dir / RENDERS / f"{clip.clip_id}.mp4", video, settings.resolution, settings.fps, wave)
                row.reference, row.render, row.frames = str(reference), str(render), n
            except Exception as exc:  # noqa: BLE001 - one bad clip must not stop training
                row.error = f"{type(exc).__name__}: {exc}"
                log.warning("validation: %s not generated: %s", clip.path, row.error)
    references.save()
    result = _score("generator", rendered, settings, out_dir, size, max_frames, started, workers, write=False)
    if lip_sync:
        _add_lip_sync(result, mouth_envelope_correlation)
    result.seconds = round(time.perf_counter() - started, 3)
    result.write()
    _drop_earlier_renders(Path(run_dir) if run_dir else None, out_dir, rendered)
    return result


def cut_controls(path: Path, frames: int, fps: float, cache_dir: str | Path | None = None):
    """Controls of a clip's first ``frames`` frames (``controls.frames_controls`` on the frames
    at their own resolution), computed once per clip file when ``cache_dir`` is given."""
    target = None
    if cache_dir is not None:
        target = Path(cache_dir) / "validation-controls" / f"{clip_key(path)}-{frames}-{fps:g}.npz"
        cached = Controls.load(target) if target.is_file() else None
        if cached is not None:
            return cached
    originals = itertools.islice(media.iter_frames(path, fps=fps), frames)
    controls = frames_controls(originals, fps=fps).resized(frames)
    if target is not None:
        controls.save(target)
    return controls


def _add_lip_sync(result: ValidationResult, correlation: Callable) -> None:
    got = []
    for row in result.clips:
        if row.render is None:
            continue
        try:
            r = float(correlation(row.render)["correlation"])
        except Exception as exc:  # noqa: BLE001 - the check is a crude extra: never fatal
            row.skipped[LIP_SYNC] = f"{type(exc).__name__}: {exc}"
            continue
        if math.isfinite(r):
            row.values[LIP_SYNC] = r
            got.append(r)
        else:
            row.skipped[LIP_SYNC] = "fewer than 3 frames with a face, or a mouth that never moves"
    if got:
        result.values[LIP_SYNC] = float(np.mean(got))
    elif any(r.render for r in result.clips):
        result.skipped[LIP_SYNC] = "no clip gave a correlation (no face found in enough frames)"


def _score(stage: str, rows: list[ClipValidation], settings: EvalSettings, out_dir: Path, size: int, max_frames: int,
           started: float, workers: int, write: bool = True) -> ValidationResult:
    """The rendered clips through the metrics engine, in this process (``workers=1``)."""
    jobs = [ClipJob(stage, r.clip_id, Path(r.render), Path(r.reference)) for r in rows if r.render]
    values: dict[str, float] = {}
    skipped: dict[str, str] = {}
    protocol = None
    if jobs:
        try:
            evaluation = evaluate(jobs, settings, workers=workers).evaluations[0]
        except Exception as exc:  # noqa: BLE001 - an engine failure is a skipped validation, not a stopped run
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("validation: the metrics engine failed: %s", reason)
            skipped = {m: reason for m in settings.metrics}
        else:
            values = {name: s.mean for name, s in evaluation.summary.items()}
            skipped = dict(evaluation.unavailable)
            protocol = evaluation.protocol.to_dict()
            by_id = {r.clip_id: r for r in rows}
            for clip in evaluation.clips:
                by_id[clip.id].values = dict(clip.values)
                by_id[clip.id].skipped = dict(clip.unavailable)
            for error in evaluation.errors:
                by_id[error.id].error = error.error
    else:
        skipped = {m: "no validation clip was rendered" for m in settings.metrics}
    for name in settings.metrics:  # a metric no clip gave a value for, for reasons the clips know
        if name not in skipped and not set(get_metric(name).values) & set(values):
            reasons = sorted({r.skipped[name] for r in rows if name in r.skipped}) or ["no clip gave a value"]
            skipped[name] = "; ".join(reasons[:3])
    result = ValidationResult(
        stage=stage, values=values, clips=rows, skipped=skipped,
        errors={r.clip_id: r.error for r in rows if r.error}, metrics=tuple(settings.metrics),
        metric_versions={m: get_metric(m).version for m in settings.metrics},
        protocol_sha256=_protocol_sha256(protocol), protocol=protocol, max_frames=max_frames,
        frames=sum(r.frames for r in rows if r.render), size=size, resolution=settings.resolution, fps=settings.fps,
        out_dir=str(out_dir), seconds=round(time.perf_counter() - started, 3),
    )  # fmt: skip
    if write:
        result.write()
    return result


def _protocol_sha256(protocol: dict | None) -> str | None:
    if protocol is None:
        return None
    return Protocol.from_dict(protocol).sha256()
