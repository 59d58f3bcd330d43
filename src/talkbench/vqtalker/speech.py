"""Speech features for the VQTalker generator: one interface, three backends, all on 25 fps.

A backend turns 16 kHz mono float32 audio into one row per video frame:

==================  ==========  =========  ==================  ==============================
backend             kind        native Hz  vocabulary / width  per 25 fps frame
==================  ==========  =========  ==================  ==============================
``whisper``         continuous  50         512-d (base)        mean of 2 encoder frames
``whisper-units``   discrete    50         k (k-means)         2 unit ids
``cosyvoice-s3``    discrete    50         4096                2 S3 token ids
``cosyvoice-s3-25`` discrete    25         4096                1 S3 token id
==================  ==========  =========  ==================  ==============================

The number of frames is always ``frame_count(len(audio)) = max(1, round(seconds * 25))``
(640 samples per frame, nearest), the same rounding as ``media.frame_count_at``. Native
sequences that come out a frame short or long (encoder padding, convolution strides) are cut or
extended by repeating their last row, never stretched: a token at time t stays at time t.
Discrete backends keep all their tokens (``per_frame`` of them per video frame): the
generator embeds each and concatenates them, which is the paper's "downsampling layer" from
50 Hz to 25 Hz.

* **Whisper encoder features** (Table 4, C-* rows): the encoder of the Whisper model the
  language-ID code uses (``talkbench.datasets.language.resolve_model``: the packaged base model,
  CTranslate2 format), run by CTranslate2 (``Whisper.encode``; int8 on the CPU like LID, float16
  with ``speech.device: cuda``, which is checked by one encode when the backend is built) on our
  log-mel (below), each 30 s window zero-padded to 30 s exactly as Whisper sees audio. The
  paper used Whisper large-v2 (1280-d); base (512-d) is what ships offline here.
* **Whisper units**: k-means centroids over those 50 Hz encoder features (raw for the default
  ``metric: euclidean``, L2-normalised for ``metric: cosine``),
  fitted by ``talkbench vqtalker fit-units`` and stored as a small ``.npz`` artifact; each
  encoder frame becomes the id of its nearest centroid. Fully offline; the tiny config's input.
* **CosyVoice S3 tokenizer** (the paper's choice): the official ONNX export
  (``speech_tokenizer_v1.onnx`` of CosyVoice-300M: 50 Hz, 4096 codes; the CosyVoice-300M-25Hz
  export: 25 Hz) through ``talkbench.weights`` and onnxruntime, on our own 128-bin log-mel
  that reproduces the reference's front end (Whisper's: Hann window 400, hop 160, Slaney mel
  filters, log10 clamped to max - 8, (x + 4) / 4) with torch only, so torchaudio is not needed.
  The weights cannot be downloaded on an offline machine: ``talkbench weights import``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from talkbench import media, util
from talkbench.datasets.language import resolve_model
from talkbench.errors import TalkbenchError
from talkbench.vqtalker.cache import clip_cache_dir, default_cache_dir
from talkbench.weights import WeightSpec, loading, read_verified, register_weight, weight_path

RATE = media.AUDIO_RATE
FPS = media.DEFAULT_FPS
SAMPLES_PER_FRAME = RATE // FPS  # 640
HOP = 160  # log-mel hop: 100 Hz
N_FFT = 400
WINDOW_SECONDS = 30
WINDOW_SAMPLES = WINDOW_SECONDS * RATE


class SpeechError(TalkbenchError):
    """A speech backend that cannot run (missing weights or unit artifact, bad audio)."""


def frame_count(samples: int) -> int:
    """Video frames at 25 fps for ``samples`` of 16 kHz audio: max(1, round(seconds * 25))."""
    return max(1, math.floor(samples / SAMPLES_PER_FRAME + 0.5))


def fit_length(values: np.ndarray, rows: int) -> np.ndarray:
    """Cut, or extend by repeating the last row, to exactly ``rows`` rows."""
    if len(values) >= rows:
        return values[:rows]
    if len(values) == 0:
        raise SpeechError("a speech backend produced no frames")
    return np.concatenate([values, np.repeat(values[-1:], rows - len(values), axis=0)])


@dataclass
class SpeechFeatures:
    """Speech aligned to 25 fps video frames.

    ``values`` is (T, per_frame) int64 token ids for a discrete backend, (T, dim) float32 for a
    continuous one.
    """

    values: np.ndarray
    backend: str
    discrete: bool
    vocab_size: int | None  # discrete only
    native_rate: float  # Hz of the backend's own sequence
    fps: float = FPS
    meta: dict = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def width(self) -> int:
        return int(self.values.shape[1])


@runtime_checkable
class SpeechBackend(Protocol):
    name: str
    discrete: bool
    native_rate: float
    vocab_size: int | None  # None for continuous features
    width: int  # tokens per frame (discrete) or feature dimension (continuous)

    def __call__(self, audio: np.ndarray) -> SpeechFeatures: ...

    def describe(self) -> dict: ...


# ----------------------------------------------------------------------------- log-mel front end


def _hz_to_mel(f):
    """Slaney mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mels = f / f_sp
    return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=4)
def mel_filters(n_mels: int, sr: int = RATE, n_fft: int = N_FFT) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) Slaney-normalised triangular filters (= librosa.filters.mel)."""
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def log_mel(audio: np.ndarray, n_mels: int = 128) -> np.ndarray:
    """Whisper's / S3Tokenizer's log-mel: (n_mels, len(audio) // 160) float32 at 100 Hz."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    stft = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = torch.from_numpy(mel_filters(n_mels)) @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).numpy()


def _windows(audio: np.ndarray) -> list[np.ndarray]:
    """Consecutive 30 s pieces (each a whole number of video frames: 750)."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size == 0:
        raise SpeechError("empty audio")
    return [audio[i : i + WINDOW_SAMPLES] for i in range(0, len(audio), WINDOW_SAMPLES)]


# ----------------------------------------------------------------------------- Whisper


WHISPER_DEVICES = ("auto", "cpu", "cuda", "cuda:N")
DEFAULT_COMPUTE_TYPES = {"cpu": "int8", "cuda": "float16"}  # int8 on CPU as language ID runs it


@dataclass(frozen=True)
class WhisperDevice:
    """Where CTranslate2 runs the Whisper encoder: ``kind`` cpu or cuda, ``index`` the GPU."""

    kind: str
    index: int = 0

    def __str__(self) -> str:
        return self.kind if self.kind == "cpu" else f"cuda:{self.index}"


def whisper_device(name: str | None = "cpu", option: str = "speech.device") -> WhisperDevice:
    """``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto`` (cuda:0 when CTranslate2 sees a GPU,
    else cpu), checked against the GPUs CTranslate2 sees; one this machine lacks is an error
    naming ``option``, before CTranslate2 is asked to load anything there."""
    text = (str(name) if name is not None else "cpu").strip().lower()
    if text == "cpu":
        return WhisperDevice("cpu")
    kind, _, index = text.partition(":")
    if text != "auto" and (kind != "cuda" or (index and not index.isdigit())):
        raise SpeechError(f"{option} {name!r}: not a Whisper device; use {', '.join(WHISPER_DEVICES)}")
    try:
        import ctranslate2
    except ImportError:
        raise SpeechError(f"{option} {name!r}: faster-whisper is not installed "
                          "(pip install 'talkbench[lid]')") from None
    gpus = ctranslate2.get_cuda_device_count()
    if text == "auto":
        return WhisperDevice("cuda" if gpus else "cpu")
    if not gpus:
        raise SpeechError(f"{option} {name!r}: CTranslate2 (faster-whisper) sees no CUDA device on this machine; "
                          "use cpu or auto")
    device = WhisperDevice("cuda", int(index or 0))
    if device.index >= gpus:
        raise SpeechError(f"{option} {name!r}: CTranslate2 sees {gpus} CUDA device(s), cuda:0 .. cuda:{gpus - 1}")
    return device


def whisper_engine(compute_type: str, device: WhisperDevice) -> str:
    """What a Whisper backend records its features under: the compute type, and the device type
    when not the CPU (CPU int8 and CUDA float16 encoders give different numbers)."""
    return f"ctranslate2 {compute_type}" + ("" if device.kind == "cpu" else f" on {device.kind}")


# CTranslate2 4.x wheels run CUDA on the CUDA 12 libraries, which a torch built for another CUDA
# does not bring: without them the model loads and the first encode fails.
CUDA_HINT = ("CTranslate2 runs Whisper on the CUDA 12 cuBLAS and cuDNN 9 libraries, which are likely missing "
             "(pip install nvidia-cublas-cu12 nvidia-cudnn-cu12, with their lib folders on LD_LIBRARY_PATH)")


def _failure(device: WhisperDevice) -> str:
    """What to add to a Whisper failure on ``device``."""
    return f"; {CUDA_HINT}, or set speech.device: cpu" if device.kind == "cuda" else ""


@lru_cache(maxsize=2)
def _whisper_model(model: str, compute_type: str, threads: int, device: WhisperDevice = WhisperDevice("cpu")):
    from faster_whisper import WhisperModel

    try:
        return WhisperModel(resolve_model(model, "faster-whisper"), device=device.kind, device_index=device.index,
                            compute_type=compute_type, cpu_threads=threads)
    except (RuntimeError, ValueError, OSError) as exc:
        raise SpeechError(f"Whisper {model} ({compute_type}) cannot load on {device}: {exc}{_failure(device)}") from None


def _encode(m, mel: np.ndarray, model: str, compute_type: str, device: WhisperDevice) -> np.ndarray:
    try:
        return np.array(m.encode(mel[None]))[0]  # (1500, d)
    except (RuntimeError, ValueError, OSError) as exc:
        raise SpeechError(f"Whisper {model} ({compute_type}) encoder failed on {device}: "
                          f"{type(exc).__name__}: {exc}{_failure(device)}") from None


def whisper_encoder_frames(audio: np.ndarray, model: str = "base", compute_type: str = "int8",
                           threads: int = 2, device: WhisperDevice = WhisperDevice("cpu")) -> np.ndarray:
    """(N, d) Whisper encoder output at 50 Hz for the whole audio (N = ceil(samples / 320))."""
    m = _whisper_model(model, compute_type, threads, device)
    n_mels = m.feature_extractor.mel_filters.shape[0]
    out = []
    for piece in _windows(audio):
        padded = np.zeros(WINDOW_SAMPLES, np.float32)
        padded[: len(piece)] = piece
        mel = log_mel(padded, n_mels)[:, : WINDOW_SAMPLES // HOP]
        enc = _encode(m, mel, model, compute_type, device)
        out.append(enc[: math.ceil(len(piece) / (2 * HOP))])
    return np.concatenate(out).astype(np.float32)


_checked: set[tuple] = set()  # (model, compute type, threads, device) whose probe encode succeeded


def check_whisper_device(model: str, compute_type: str, threads: int, device: WhisperDevice,
                         requested: str | None = None, option: str = "speech.device") -> None:
    """On a GPU, encode one silent 30 s window now, so that a device CTranslate2 cannot run on
    is an error naming ``option`` when the backend is built, not at the first clip hours into
    a preparation. Once per process and setting; nothing to check on the CPU."""
    key = (model, compute_type, threads, device)
    if device.kind != "cuda" or key in _checked:
        return
    try:
        whisper_encoder_frames(np.zeros(WINDOW_SAMPLES, np.float32), model, compute_type, threads, device)
    except SpeechError as exc:
        raise SpeechError(f"{option} {requested or str(device)!r}: Whisper cannot run on {device}: {exc}") from None
    _checked.add(key)


class WhisperFeatures:
    """Continuous Whisper encoder features, two 50 Hz frames averaged per video frame."""

    discrete = False
    native_rate = 50.0
    vocab_size = None

    def __init__(self, model: str = "base", compute_type: str | None = None, threads: int = 2, device: str = "cpu"):
        """``device`` (a config's ``speech.device``): cpu, cuda, cuda:N or auto (``whisper_device``;
        a GPU is checked by ``check_whisper_device``); ``compute_type``: by default int8 on the
        CPU, float16 on a GPU."""
        self.device = whisper_device(device)
        self.compute_type = compute_type or DEFAULT_COMPUTE_TYPES[self.device.kind]
        self.engine = whisper_engine(self.compute_type, self.device)
        self.model, self.threads = model, threads
        self.name = f"whisper-{model}"
        self.width = {"tiny": 384, "base": 512, "small": 768, "medium": 1024, "large-v2": 1280}.get(model, 512)
        check_whisper_device(model, self.compute_type, threads, self.device, device)

    def __call__(self, audio: np.ndarray) -> SpeechFeatures:
        frames = frame_count(len(audio))
        enc = whisper_encoder_frames(audio, self.model, self.compute_type, self.threads, self.device)
        values = fit_length(enc, 2 * frames).reshape(frames, 2, -1).mean(axis=1)
        self.width = values.shape[1]
        return SpeechFeatures(values.astype(np.float32), self.name, False, None, self.native_rate, meta=self.describe())

    def describe(self) -> dict:
        return {"backend": self.name, "kind": "continuous", "native_rate": 50.0, "width": self.width,
                "engine": self.engine}


# ----------------------------------------------------------------------------- Whisper units

UNITS_FORMAT = "talkbench-whisper-units/1"


def default_units_path(k: int = 64, model: str = "base", metric: str = "euclidean") -> Path:
    return default_cache_dir() / "speech" / f"whisper-{model}-units-k{k}-{metric}.npz"


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


def fit_units(audios: list[np.ndarray], k: int = 64, out: str | Path | None = None, model: str = "base",
              compute_type: str = "int8", seed: int = 0, sources: list[str] | None = None,
              metric: str = "euclidean") -> Path:
    """Fit k-means over the 50 Hz Whisper encoder frames of ``audios``; write the artifact.

    ``metric``: ``euclidean`` (default) keeps the frames' magnitude, which carries loudness;
    ``cosine`` clusters L2-normalised frames (direction only). On the sample corpus the tiny
    generator's held-out lip sync was positive with euclidean units and negative with cosine."""
    from sklearn.cluster import KMeans

    if metric not in ("cosine", "euclidean"):
        raise SpeechError(f"unknown unit metric {metric!r}; choose cosine or euclidean")
    feats = np.concatenate([whisper_encoder_frames(a, model, compute_type) for a in audios])
    feats = _normalise(feats) if metric == "cosine" else feats
    if len(feats) < k:
        raise SpeechError(f"{len(feats)} encoder frames are too few for {k} units; give more audio")
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(feats)
    centroids = (_normalise(km.cluster_centers_) if metric == "cosine" else km.cluster_centers_).astype(np.float32)
    meta = {"format": UNITS_FORMAT, "model": model, "compute_type": compute_type, "k": k, "seed": seed,
            "metric": metric, "frames": int(len(feats)), "inertia": float(km.inertia_), "sources": sources or []}
    path = Path(out) if out else default_units_path(k, model, metric)
    util.save_arrays(path, {"centroids": centroids, "meta": np.asarray(json.dumps(meta))}, compressed=True)
    return path


class WhisperUnits:
    """Discrete units: nearest k-means centroid (cosine) of each 50 Hz Whisper encoder frame."""

    discrete = True
    native_rate = 50.0
    width = 2

    def __init__(self, units: str | Path | None = None, threads: int = 2,
                 centroids: np.ndarray | None = None, meta: dict | None = None, device: str = "cpu",
                 compute_type: str | None = None):
        """From an artifact file, or from ``centroids`` + ``meta`` (as a generator checkpoint
        carries them, so a trained model needs no separate file). ``device`` as for
        ``WhisperFeatures``; ``compute_type`` by default the artifact's on the CPU (the encoder
        the centroids were fitted on), float16 on a GPU."""
        self.device = whisper_device(device)
        if centroids is None:
            path = Path(units) if units else default_units_path()
            if not path.is_file():
                raise SpeechError(
                    f"{path}: Whisper unit centroids not found; fit them with "
                    f"`talkbench vqtalker fit-units --out {path}` (k-means over Whisper encoder features)"
                )
            with np.load(path) as data:
                centroids = data["centroids"]
                meta = json.loads(str(data["meta"]))
        else:
            path = Path(units) if units else Path("<embedded>")
        if (meta or {}).get("format") != UNITS_FORMAT:
            raise SpeechError(f"{path}: not a Whisper unit artifact ({UNITS_FORMAT})")
        self.centroids = np.asarray(centroids, dtype=np.float32)
        self.meta, self.path, self.threads = meta, path, threads
        fitted = self.meta.get("compute_type", DEFAULT_COMPUTE_TYPES["cpu"])
        self.compute_type = compute_type or (fitted if self.device.kind == "cpu" else DEFAULT_COMPUTE_TYPES["cuda"])
        self.engine = whisper_engine(self.compute_type, self.device)
        # the encoder the centroids were fitted on: what a description without "engine" means
        self.fitted_engine = whisper_engine(fitted, WhisperDevice("cpu"))
        self.vocab_size = int(self.centroids.shape[0])
        self.name = f"whisper-{self.meta['model']}-units{self.vocab_size}"
        self.sha256 = hashlib.sha256(self.centroids.tobytes()).hexdigest()
        check_whisper_device(self.meta["model"], self.compute_type, threads, self.device, device)

    def units(self, frames50: np.ndarray) -> np.ndarray:
        """Nearest centroid of each frame (by cosine, or Euclidean distance as fitted)."""
        if self.meta.get("metric", "cosine") == "cosine":
            return np.argmax(_normalise(frames50) @ self.centroids.T, axis=1).astype(np.int64)
        d2 = (frames50**2).sum(1, keepdims=True) - 2 * frames50 @ self.centroids.T + (self.centroids**2).sum(1)
        return np.argmin(d2, axis=1).astype(np.int64)

    def __call__(self, audio: np.ndarray) -> SpeechFeatures:
        frames = frame_count(len(audio))
        enc = whisper_encoder_frames(audio, self.meta["model"], self.compute_type, self.threads, self.device)
        ids = fit_length(self.units(enc), 2 * frames).reshape(frames, 2)
        return SpeechFeatures(ids, self.name, True, self.vocab_size, self.native_rate, meta=self.describe())

    def describe(self) -> dict:
        """Names the speech cache files: on the fitted encoder (the default) it is what it was
        before engines were recorded, so those caches stay valid; any other engine is named."""
        description = {"backend": self.name, "kind": "discrete", "native_rate": 50.0, "per_frame": 2,
                       "vocab_size": self.vocab_size, "metric": self.meta.get("metric", "cosine"),
                       "artifact": str(self.path), "centroids_sha256": self.sha256}
        if self.engine != self.fitted_engine:
            description["engine"] = self.engine
        return description


# ----------------------------------------------------------------------------- CosyVoice S3

# backend name -> (weights name, native rate, model page, file name in the cache, description).
# URLs and sha256 as published by the S3Tokenizer project (xingchensong/S3Tokenizer,
# s3tokenizer/__init__.py) for CosyVoice's releases.
_S3_RELEASES = {
    "cosyvoice-s3": ("cosyvoice-s3-tokenizer-v1", 50.0, "cosyvoice-300m", "speech_tokenizer_v1.onnx",
                     "23b5a723ed9143aebfd9ffda14ac4c21231f31c35ef837b6a13bb9e5488abb1e",
                     "CosyVoice-300M supervised semantic speech tokenizer (S3, 50 Hz, 4096 codes), ONNX"),
    "cosyvoice-s3-25": ("cosyvoice-s3-tokenizer-v1-25hz", 25.0, "CosyVoice-300M-25Hz", "speech_tokenizer_v1_25hz.onnx",
                        "56285ddd4a83e883ee0cb9f8d69c1089b53a94b1f78ff7e4a0224a27eb4cb486",
                        "CosyVoice-300M-25Hz S3 speech tokenizer (25 Hz, 4096 codes), ONNX"),
}
S3_WEIGHTS = {name: (release[0], release[1]) for name, release in _S3_RELEASES.items()}
for _weights, _rate, _page, _file, _sha, _what in _S3_RELEASES.values():
    register_weight(
        WeightSpec(
            name=_weights,
            url=f"https://www.modelscope.cn/models/iic/{_page}/resolve/master/speech_tokenizer_v1.onnx",
            sha256=_sha,
            filename=_file,
            licence="Apache-2.0 (FunAudioLLM CosyVoice)",
            description=_what,
        )
    )


class CosyVoiceS3:
    """S3 tokens from the CosyVoice ONNX tokenizer on our 128-bin log-mel, 30 s at a time."""

    discrete = True
    vocab_size = 4096

    def __init__(self, variant: str = "cosyvoice-s3", onnx_path: str | Path | None = None, threads: int = 2):
        if variant not in S3_WEIGHTS:
            raise SpeechError(f"unknown S3 variant {variant!r}; choose {', '.join(S3_WEIGHTS)}")
        weights, self.native_rate = S3_WEIGHTS[variant]
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if onnx_path is None:
            onnx_path = weight_path(weights)
            model = read_verified(weights, onnx_path)  # the bytes checked are the bytes parsed
            with loading(weights, "CosyVoice's S3 speech tokenizer ONNX model", onnx_path):
                self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        else:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.name, self.path = variant, Path(onnx_path)
        self.width = int(round(self.native_rate / FPS))

    def tokens(self, audio: np.ndarray) -> np.ndarray:
        """Native-rate token ids of the whole audio."""
        per_window = int(round(WINDOW_SECONDS * self.native_rate))
        out = []
        for piece in _windows(audio):
            mel = log_mel(piece, 128)[None]  # (1, 128, frames)
            feeds = {self.inputs[0]: mel, self.inputs[1]: np.array([mel.shape[2]], dtype=np.int32)}
            ids = np.asarray(self.session.run(None, feeds)[0]).reshape(-1)
            expected = math.ceil(len(piece) / RATE * self.native_rate)
            out.append(fit_length(ids[:, None], expected)[:, 0][:per_window])
        return np.concatenate(out).astype(np.int64)

    def __call__(self, audio: np.ndarray) -> SpeechFeatures:
        frames = frame_count(len(audio))
        ids = fit_length(self.tokens(audio)[:, None], self.width * frames).reshape(frames, self.width)
        return SpeechFeatures(ids, self.name, True, self.vocab_size, self.native_rate, meta=self.describe())

    def describe(self) -> dict:
        return {"backend": self.name, "kind": "discrete", "native_rate": self.native_rate, "per_frame": self.width,
                "vocab_size": self.vocab_size, "onnx": str(self.path)}


# ----------------------------------------------------------------------------- registry

SPEECH_BACKENDS = util.Registry(kind="speech backend", error=SpeechError)  # name -> factory(**options)
SPEECH_BACKENDS.register("whisper", WhisperFeatures)
SPEECH_BACKENDS.register("whisper-units", WhisperUnits)
for _s3 in S3_WEIGHTS:
    SPEECH_BACKENDS.register(_s3, partial(CosyVoiceS3, _s3))
BACKENDS = tuple(SPEECH_BACKENDS.names())


def recorded_engine(backend: SpeechBackend, description: dict | None) -> str | None:
    """The Whisper engine ``description`` (a ``describe()`` of a backend like ``backend``, as a
    checkpoint records it) was computed with; for units without one, the encoder their
    centroids were fitted on. None: not a Whisper backend, or not recorded."""
    if not description or getattr(backend, "engine", None) is None:
        return None
    return description.get("engine") or getattr(backend, "fitted_engine", None)


def get_speech_backend(name: str, **options) -> SpeechBackend:
    """``whisper`` (model=…, device=…, compute_type=…), ``whisper-units`` (units=PATH, device=…,
    compute_type=…), ``cosyvoice-s3`` / ``cosyvoice-s3-25`` (onnx_path=…)."""
    return SPEECH_BACKENDS.get(name)(**options)


def clip_speech(backend: SpeechBackend, video: str | Path, cache_dir: Path | None = None) -> SpeechFeatures:
    """Speech features of a clip's audio, cached per (clip, backend description)."""
    video = Path(video)
    tag = hashlib.sha1(json.dumps(backend.describe(), sort_keys=True).encode()).hexdigest()[:12]
    target = clip_cache_dir(video, cache_dir) / f"speech_{tag}.npz"
    data = util.load_arrays(target) if target.is_file() else None
    if data is not None and {"values", "meta"} <= data.keys():
        meta = json.loads(str(data["meta"]))
        return SpeechFeatures(data["values"], meta["backend"], meta["kind"] == "discrete", meta.get("vocab_size"),
                              float(meta["native_rate"]), meta=meta)
    feats = backend(media.read_audio(video))
    util.save_arrays(target, {"values": feats.values, "meta": np.asarray(json.dumps(feats.meta))})
    return feats
