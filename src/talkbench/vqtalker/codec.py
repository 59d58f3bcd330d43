"""A trained tokenizer as a video codec: frames -> motion tokens -> frames.

``encode_video`` keeps the first frame as the source and turns every frame t into the GRFSQ
indices of f_t - f_0, shape (G, R, T); ``reconstruct_video`` renders the first frame driven by
those tokens (the video-reconstruction task of Table 1). Tokens pass through their integer
form, so what is rendered is exactly what a token file holds. Everything runs on the model's
device (``device=`` moves the model there first; ``inference.resolve_device`` picks one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image

from talkbench import media, util
from talkbench.vqtalker.tokenizer import MotionTokenizer, from_model, to_model

TOKEN_FORMAT = "talkbench-vqtalker-tokens/1"


@dataclass
class Tokens:
    indices: np.ndarray  # (G, R, T) integer
    source: np.ndarray  # (size, size, 3) uint8 first frame at the model's resolution
    fps: float
    meta: dict

    @property
    def frames(self) -> int:
        return int(self.indices.shape[-1])


def _dtype_for(codebook_size: int):
    return np.uint8 if codebook_size <= 256 else np.uint16 if codebook_size <= 65536 else np.uint32


@torch.no_grad()
def encode_frames(model: MotionTokenizer, frames: Iterable[np.ndarray], batch: int = 16) -> np.ndarray:
    """(G, R, T) indices of the motion of every frame relative to the first one. ``frames`` is a
    (T, H, W, 3) uint8 array or any iterable of (H, W, 3) frames (streamed ``batch`` at a time)."""
    device = next(model.parameters()).device
    f_s, out, chunk = None, [], []

    def flush():
        f_t = model.motion_feature(to_model(np.stack(chunk), device))
        out.append(model.quantizer(f_t - f_s).indices)
        chunk.clear()

    for frame in frames:
        if f_s is None:
            f_s = model.motion_feature(to_model(frame[None], device))
        chunk.append(frame)
        if len(chunk) == batch:
            flush()
    if chunk:
        flush()
    if not out:
        raise ValueError("no frames to encode")
    return torch.cat(out, -1).cpu().numpy()


@torch.no_grad()
def render_tokens(model: MotionTokenizer, source: np.ndarray, indices: np.ndarray, batch: int = 16):
    """Yield uint8 frames rendered from one source frame and (G, R, T) indices."""
    device = next(model.parameters()).device
    f_g, feats, _ = model.encode_source(to_model(source[None], device))
    idx = torch.from_numpy(indices.astype(np.int64)).to(device)
    for i in range(0, idx.shape[-1], batch):
        chunk = idx[..., i : i + batch]
        n = chunk.shape[-1]
        q = model.quantizer.decode(chunk)
        image = model.render(f_g.expand(n, -1), [f.expand(n, -1, -1, -1) for f in feats], q)
        yield from from_model(image)


def encode_video(model: MotionTokenizer, video: str | Path, fps: float = media.DEFAULT_FPS, checkpoint: str | Path | None = None,
                 device: str | torch.device | None = None) -> Tokens:
    if device is not None:
        model.to(device)
    cfg = model.config
    first: list[np.ndarray] = []

    def frames():
        for frame in media.iter_frames(video, fps=fps, size=cfg.size):
            if not first:
                first.append(frame)
            yield frame

    indices = encode_frames(model, frames())
    q = cfg.quantizer
    meta = {
        "format": TOKEN_FORMAT,
        "video": str(video),
        "size": cfg.size,
        "fps": fps,
        "source_frame": 0,
        "quantizer": q.to_dict(),
        "codebook_size": q.codes_per_codebook,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_sha256": util.sha256_file(checkpoint) if checkpoint else None,
    }
    return Tokens(indices.astype(_dtype_for(q.codes_per_codebook)), first[0], fps, meta)


def save_tokens(tokens: Tokens, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, indices=tokens.indices, source=tokens.source, meta=json.dumps(tokens.meta))
    return path


def load_tokens(path: str | Path) -> Tokens:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        return Tokens(data["indices"], data["source"], float(meta["fps"]), meta)


def upscaled(frames: Iterable[np.ndarray], size: int | None) -> Iterable[np.ndarray]:
    """``frames`` resized to ``size``² (Lanczos) when they are smaller: a small model's renders
    (the tiny config draws 64 px) must still meet the leaderboard's 256 px minimum."""
    for frame in frames:
        if size and frame.shape[0] < size:
            frame = np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.LANCZOS))
        yield frame


def reconstruct_video(model: MotionTokenizer, video: str | Path, out: str | Path, fps: float = media.DEFAULT_FPS,
                      keep_audio: bool = True, output_size: int | None = None,
                      device: str | torch.device | None = None) -> tuple[Path, Tokens]:
    """First frame + tokens of ``video`` -> ``out`` (mp4 at the model's resolution, or upscaled
    to ``output_size``)."""
    tokens = encode_video(model, video, fps, device=device)
    audio = None
    if keep_audio and media.probe(video).has_audio:
        audio = media.read_audio(video)
    frames = upscaled(render_tokens(model, tokens.source, tokens.indices), output_size)
    return media.write_video(out, frames, fps=fps, audio=audio), tokens
