"""Inference with trained VQTalker checkpoints: loading them, choosing the device, and
generating talking-head videos from a portrait and speech.

Training (``train.py``, ``generator_train.py``) imports from here, never the other way round:
checkpoint formats and loaders are shared, and this module must stay importable without the
training code.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from talkbench import media
from talkbench.errors import TalkbenchError
from talkbench.util import sha256_file
from talkbench.vqtalker.codec import render_tokens, upscaled
from talkbench.vqtalker.controls import Controls, clip_controls, image_controls
from talkbench.vqtalker.generator import GeneratorConfig, MotionGenerator
from talkbench.vqtalker.speech import (
    SpeechBackend,
    SpeechFeatures,
    WhisperUnits,
    default_units_path,
    frame_count,
    get_speech_backend,
    recorded_engine,
)
from talkbench.vqtalker.tokenizer import MotionTokenizer, TokenizerConfig, from_model, to_model

TOKENIZER_FORMAT = "talkbench-vqtalker-tokenizer/2"
TOKENIZER_KEY = "tokenizer"  # a stage-1 checkpoint's MotionTokenizer weights
# Format 1 stage-1 checkpoints (the shipped tiny-tokenizer.pt, users' runs) hold those weights
# under LIA's name for a GAN's G, "generator", which stage 2's network also bears;
# load_checkpoint reads them as format 2. A talkbench that knows only format 1 refuses a
# format-2 file by its format, instead of failing on the missing key.
LEGACY_TOKENIZER_FORMAT = "talkbench-vqtalker-tokenizer/1"
LEGACY_TOKENIZER_KEY = "generator"
GENERATOR_FORMAT = "talkbench-vqtalker-generator/1"
DEVICES = ("auto", "cpu", "cuda", "mps")

log = logging.getLogger(__name__)


class InferenceError(TalkbenchError):
    """A checkpoint that cannot be loaded, a device that is not there, a missing input."""


# ----------------------------------------------------------------------------- devices


def resolve_device(name: str | torch.device | None = None, option: str = "--device") -> torch.device:
    """``auto``/None -> cuda if available, else mps if available, else cpu; ``cpu``, ``cuda``,
    ``cuda:N`` and ``mps`` are checked, and one this machine lacks is an error naming ``option``
    (the CLI flag, or the method option that asked for it)."""
    name = (str(name) if name is not None else "auto").strip().lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto":
        return torch.device("cuda" if cuda_count else "mps" if mps_ok else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in DEVICES:
        raise InferenceError(f"{option} {name!r}: not a device; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not cuda_count:
        raise InferenceError(f"{option} {name!r}: CUDA is not available on this machine; use cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= cuda_count:
        raise InferenceError(f"{option} {name!r}: this machine has {cuda_count} CUDA device(s), cuda:0 .. cuda:{cuda_count - 1}")
    if device.type == "mps" and not mps_ok:
        raise InferenceError(f"{option} {name!r}: Apple MPS is not available on this machine; use cpu or auto")
    return device


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two torch devices are one: ``cuda`` is the current CUDA device (cuda:0 without
    CUDA), and a CPU or MPS device without an index is its first."""
    def key(device: torch.device) -> tuple[str, int]:
        if device.index is not None:
            return device.type, device.index
        if device.type == "cuda" and torch.cuda.is_available():
            return "cuda", torch.cuda.current_device()
        return device.type, 0

    return key(torch.device(a)) == key(torch.device(b))


def autocast(device: str | torch.device, enabled: bool = True):
    """bf16 autocast on ``device``'s type (cuda, cpu, mps), or a no-op when not ``enabled``."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


# ----------------------------------------------------------------------------- checkpoints


def load_checkpoint(path: str | Path, fmt: str = TOKENIZER_FORMAT) -> dict:
    """A checkpoint dict loaded with ``weights_only=True`` whose ``format`` field is ``fmt``."""
    path = Path(path)
    if not path.is_file():
        raise InferenceError(f"{path}: checkpoint not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if fmt == TOKENIZER_FORMAT and isinstance(ckpt, dict) and ckpt.get("format") == LEGACY_TOKENIZER_FORMAT:
        ckpt["format"] = TOKENIZER_FORMAT
        if LEGACY_TOKENIZER_KEY in ckpt:
            ckpt[TOKENIZER_KEY] = ckpt.pop(LEGACY_TOKENIZER_KEY)
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise InferenceError(f"{path}: not a {fmt} checkpoint (its format is {found!r})")
    return ckpt


def load_tokenizer(path: str | Path, device="cpu") -> MotionTokenizer:
    """The motion tokenizer of a stage-1 checkpoint, in eval mode."""
    ckpt = load_checkpoint(path)
    model = MotionTokenizer(TokenizerConfig.from_dict(ckpt["config"]["model"]))
    model.load_state_dict(ckpt[TOKENIZER_KEY])
    return model.to(device).eval()


def load_generator_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InferenceError(f"{path}: generator checkpoint not found")
    return load_checkpoint(path, GENERATOR_FORMAT)


def generator_config(checkpoint: dict) -> GeneratorConfig:
    """The model config of a generator checkpoint. Checkpoints from before ``trained_window``
    was recorded trained on windows of ``train.window`` frames starting at position 0, so that
    is how many positions they learned."""
    model = dict(checkpoint["config"]["model"])
    if model.get("trained_window") is None:
        window = (checkpoint["config"].get("train") or {}).get("window")
        model["trained_window"] = int(window) if window else None
    return GeneratorConfig.from_dict(model)


def load_generator(path: str | Path, device="cpu") -> tuple[MotionGenerator, dict]:
    ckpt = load_generator_checkpoint(path)
    model = MotionGenerator(generator_config(ckpt))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def speech_backend_from(config: dict, threads: int = 2, meta: dict | None = None):
    """The config's speech backend; Whisper units embedded in a checkpoint's ``meta`` win.
    The Whisper backends run where the config's ``speech.device`` says (default cpu), whatever
    torch device the models are on: CTranslate2 needs its own CUDA libraries, and CPU and GPU
    features differ slightly. The CosyVoice backends run on the CPU."""
    sc = dict(config.get("speech") or {})
    name = sc.pop("backend", "whisper-units")
    if name == "whisper-units" and meta and meta.get("speech_units") is not None:
        whisper = {key: sc[key] for key in ("device", "compute_type") if sc.get(key) is not None}
        return WhisperUnits(threads=threads, centroids=np.asarray(meta["speech_units"]),
                            meta=json.loads(meta["speech_units_meta"]), **whisper)
    if name == "whisper-units":
        k = int(sc.pop("k", 64))
        metric = sc.pop("metric", "euclidean")
        units = sc.pop("units", None) or default_units_path(k, metric=metric)
        options = {key: sc[key] for key in ("device", "compute_type") if sc.get(key) is not None}
        return get_speech_backend(name, units=units, threads=threads, **options)
    options = {k: v for k, v in sc.items() if v is not None}
    return get_speech_backend(name, **options)


# ----------------------------------------------------------------------------- generation


@dataclass
class Talker:
    """A generator checkpoint and the stage-1 tokenizer it was trained with, loaded once on one
    device with the speech backend its config names (``load_talker``), so that many clips are
    generated without reloading anything."""

    generator: MotionGenerator  # eval mode, on ``device``
    tokenizer: MotionTokenizer  # eval mode, on ``device``
    speech: SpeechBackend  # where the config's ``speech.device`` says (default cpu), not on ``device``
    device: torch.device
    generator_checkpoint: Path
    tokenizer_checkpoint: Path
    generator_sha256: str
    tokenizer_sha256: str
    config: dict  # the generator checkpoint's training config
    meta: dict  # the generator checkpoint's meta


def load_talker(generator_checkpoint: str | Path, tokenizer_checkpoint: str | Path | None = None,
                device: str | torch.device | None = "cpu", tokenizer_option: str = "--tokenizer") -> Talker:
    """The generator of ``generator_checkpoint`` with its tokenizer (``tokenizer_checkpoint``, or
    the one the generator recorded, found beside it when the path is relative) on ``device``
    (see ``resolve_device``). ``tokenizer_option``: how the error for a generator that recorded
    no tokenizer names the way to give one."""
    device = resolve_device(device)
    generator_checkpoint = Path(generator_checkpoint)
    model, ckpt = load_generator(generator_checkpoint, device)
    meta = ckpt.get("meta", {})
    tok_path = tokenizer_checkpoint or meta.get("tokenizer_checkpoint")
    if not tok_path:
        raise InferenceError(f"{generator_checkpoint}: no tokenizer checkpoint recorded: pass {tokenizer_option} "
                             "(the stage-1 checkpoint the generator was trained with)")
    tok_path = Path(tok_path)
    if not tok_path.is_absolute() and not tok_path.is_file():
        tok_path = generator_checkpoint.parent / tok_path  # stripped checkpoints name a sibling file
    tokenizer = load_tokenizer(tok_path, device)
    speech = speech_backend_from(ckpt["config"], meta=meta)
    trained, now = recorded_engine(speech, meta.get("speech")), getattr(speech, "engine", None)
    if trained is not None and trained != now:
        log.warning("%s: trained on speech features from %s, generating with %s (speech.device / speech.compute_type "
                    "in its config): the generator sees slightly different input", generator_checkpoint, trained, now)
    return Talker(generator=model, tokenizer=tokenizer, speech=speech, device=device,
                  generator_checkpoint=generator_checkpoint, tokenizer_checkpoint=tok_path,
                  generator_sha256=sha256_file(generator_checkpoint), tokenizer_sha256=sha256_file(tok_path),
                  config=ckpt["config"], meta=meta)


@torch.no_grad()
def generate_video(generator: Talker | str | Path, portrait: str | Path | np.ndarray, audio: str | Path | np.ndarray,
                   out: str | Path,
                   controls_from: str | Path | None = None, tokenizer_checkpoint: str | Path | None = None,
                   window: int | None = None, output_size: int | None = None,
                   device: str | torch.device | None = None) -> dict:
    """portrait image + speech -> talking-head mp4 at 25 fps with the audio muxed in, at the
    tokenizer's resolution or upscaled to ``output_size``.

    ``generator``: a loaded ``Talker`` (reused as is: ``tokenizer_checkpoint`` and ``device``
    are its own), or a generator checkpoint loaded for this call with ``tokenizer_checkpoint``
    on ``device`` (default cpu; see ``resolve_device``). Frames = ``frame_count(len(audio))``.
    Controls come from ``controls_from`` (a video; cut or held at its last frame to the audio
    length) or, without it, the portrait's own pose, gaze and openness held still. ``window``
    defaults to the generator's trained window (longer audio is generated in overlapping
    windows).
    """
    if isinstance(generator, Talker):
        talker = generator
        if tokenizer_checkpoint is not None or (device is not None and not same_device(resolve_device(device),
                                                                                          talker.device)):
            raise InferenceError(f"{talker.generator_checkpoint}: already loaded with {talker.tokenizer_checkpoint} "
                                 f"on {talker.device}; load another Talker for another tokenizer or device")
    else:
        talker = load_talker(generator, tokenizer_checkpoint, device or "cpu")
    model, tokenizer, device = talker.generator, talker.tokenizer, talker.device
    size = tokenizer.config.size
    image = portrait if isinstance(portrait, np.ndarray) else np.asarray(Image.open(portrait).convert("RGB"))
    wave = np.asarray(audio, np.float32) if isinstance(audio, np.ndarray) else media.read_audio(audio)
    frames = frame_count(len(wave))
    speech: SpeechFeatures = talker.speech(wave)
    if controls_from:
        controls: Controls = clip_controls(controls_from).resized(frames)
    else:
        controls = image_controls(image, frames)
    source = np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BOX))
    f_g = tokenizer.encode_source(to_model(source[None], device))[0][0]
    tokens = model.generate(torch.from_numpy(speech.values).to(device),
                            torch.from_numpy(controls.stacked()).to(device), f_g, window=window).cpu()
    if model.config.motion == "grfsq":
        video_frames = render_tokens(tokenizer, source, tokens.numpy())
    else:
        video_frames = render_motion_vectors(tokenizer, source, tokens)
    path = media.write_video(out, upscaled(video_frames, output_size), fps=media.DEFAULT_FPS, audio=wave)
    return {"out": str(path), "frames": frames, "audio_seconds": len(wave) / media.AUDIO_RATE,
            "size": max(size, output_size or 0), "rendered_size": size,
            "speech": speech.meta, "controls_from": str(controls_from) if controls_from else "portrait",
            "tokens": list(tokens.shape), "device": str(device),
            "generator_sha256": talker.generator_sha256, "tokenizer_sha256": talker.tokenizer_sha256}


@torch.no_grad()
def render_motion_vectors(tokenizer: MotionTokenizer, source: np.ndarray, motion: torch.Tensor,
                          batch: int = 16) -> Iterator[np.ndarray]:
    """Yield uint8 frames rendered from one source frame and (T, motion_dim) motion vectors
    (the ``motion: vector`` generators)."""
    device = next(tokenizer.parameters()).device
    f_g, feats, _ = tokenizer.encode_source(to_model(source[None], device))
    for i in range(0, motion.shape[0], batch):
        q = motion[i : i + batch].to(device)
        n = q.shape[0]
        image = tokenizer.render(f_g.expand(n, -1), [f.expand(n, -1, -1, -1) for f in feats], q)
        yield from from_model(image)
