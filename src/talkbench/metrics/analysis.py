"""Face analysis of a video for the metrics: the main face's box and 68 landmarks in every
frame (a ``FaceTrack``), and identity embeddings of every ``stride``-th frame with a face.

Analysis streams: ``VideoAnalyser.update`` takes consecutive runs of frames and returns their
slice of the track, so a 10-minute clip never sits in memory. Each frame is analysed once: a
frame equal to one analysed before in this process (a still portrait, a frozen video, frames
a method copied from the ground truth) reuses that result, found by its content digest.
Whole-video analyses are stored in the on-disk cache (``talkbench.metrics.cache``) keyed by
the video's content sha256, the models' sha256 and the frame sampling, so a ground truth is
analysed once across processes, runs and methods.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from talkbench import weights
from talkbench.face.types import FaceBox, pick_main_face

ANALYSIS_VERSION = "2"
MEMO_FRAMES = 50_000  # per process; a frame's analysis is ~1 kB


@dataclass
class FaceTrack:
    """Face analysis of consecutive frames."""

    landmarks: np.ndarray  # (T, 68, 2) float64, NaN where no face
    valid: np.ndarray  # (T,) bool
    sizes: np.ndarray  # (T,) face box side in pixels, NaN where no face
    boxes: np.ndarray  # (T, 5) left, top, right, bottom, score; NaN where no face

    @classmethod
    def concatenate(cls, parts: list[FaceTrack]) -> FaceTrack:
        if not parts:
            return cls(np.zeros((0, 68, 2)), np.zeros(0, bool), np.zeros(0), np.zeros((0, 5)))
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("landmarks", "valid", "sizes", "boxes")))

    def __getitem__(self, index: slice) -> FaceTrack:
        return FaceTrack(self.landmarks[index], self.valid[index], self.sizes[index], self.boxes[index])

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def missing(self) -> int:
        return int((~self.valid).sum())

    def box(self, i: int) -> FaceBox:
        return FaceBox(*(float(v) for v in self.boxes[i]))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"landmarks": self.landmarks, "valid": self.valid, "sizes": self.sizes, "boxes": self.boxes}


class IdentityModel(Protocol):
    """An identity embedder: ``key`` names it and its weights; None when it cannot be named
    (a caller-supplied network), which keeps its results out of the on-disk cache."""

    key: str | None

    def embed(self, image: np.ndarray, box: FaceBox, landmarks: np.ndarray) -> np.ndarray: ...


class DlibIdentity:
    def __init__(self, backend) -> None:
        from talkbench.face.dlib_backend import EMBEDDING_MODEL, model_dir  # imports dlib

        self.backend = backend
        self.key = f"dlib:{weights.file_sha256(model_dir() / EMBEDDING_MODEL)}"

    def embed(self, image: np.ndarray, box: FaceBox, landmarks: np.ndarray) -> np.ndarray:
        return self.backend.embedding(image, box, landmarks)


class ArcFaceIdentity:
    """An ArcFace network of ``talkbench.metrics.arcface`` (``ArcFace``: torch iresnet100, or
    ``InsightFaceONNX``: buffalo_l's w600k_r50), aligned on five points of the face backend's
    68 landmarks; the face box is not used."""

    def __init__(self, model, key: str | None) -> None:
        self.model, self.key = model, key

    def embed(self, image: np.ndarray, box: FaceBox, landmarks: np.ndarray) -> np.ndarray:
        return self.model.embed(image, landmarks)


def face_backend_key(backend) -> str | None:
    """The face backend and its model files, or None for a backend of unknown provenance."""
    hashes = getattr(backend, "model_sha256", None)
    if hashes is None:
        return None
    return f"{backend.name}:" + ",".join(f"{k}={v}" for k, v in sorted(hashes().items()))


def frame_digest(frame: np.ndarray) -> bytes:
    digest = hashlib.blake2b(str((frame.shape, frame.dtype.str)).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(frame).data)
    return digest.digest()


_FACE_MEMO: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
_IDENTITY_MEMO: OrderedDict[tuple, np.ndarray] = OrderedDict()


def _remember(memo: OrderedDict, key: tuple, value) -> None:
    memo[key] = value
    if len(memo) > MEMO_FRAMES:
        memo.popitem(last=False)


def clear_memo() -> None:
    _FACE_MEMO.clear()
    _IDENTITY_MEMO.clear()


@dataclass
class VideoAnalysis:
    """A whole video's face track and identity embeddings (NaN rows where not embedded)."""

    faces: FaceTrack | None
    identity: np.ndarray | None  # (T, D) float32


class VideoAnalyser:
    """Streams a video's frames through the face backend (and the identity model, every
    ``stride``-th frame with a face). ``memo_scope`` separates backends in the frame memo: the
    backend object itself when it has no key (its address is never reused while held)."""

    def __init__(self, backend, identity: IdentityModel | None = None, stride: int = 1) -> None:
        self.backend, self.identity, self.stride = backend, identity, stride
        self.face_scope = face_backend_key(backend) or backend
        # the landmarks an embedding is aligned on come from the face backend: both name it
        self.identity_scope = (self.face_scope, identity.key or identity) if identity is not None else None
        self.parts: list[FaceTrack] = []
        self.embeddings: list[np.ndarray] = []

    def update(self, frames: np.ndarray, start: int) -> tuple[FaceTrack, np.ndarray | None]:
        n = len(frames)
        landmarks, sizes, boxes = np.full((n, 68, 2), np.nan), np.full(n, np.nan), np.full((n, 5), np.nan)
        identity = None
        digests = [frame_digest(f) for f in frames]
        for i, (frame, digest) in enumerate(zip(frames, digests)):
            key = (self.face_scope, digest)
            if key not in _FACE_MEMO:
                box, _ = pick_main_face(self.backend.detect(frame))
                if box is None:
                    found = (np.full(5, np.nan), np.full((68, 2), np.nan))
                else:
                    row = np.array([box.left, box.top, box.right, box.bottom, box.score])
                    found = (row, np.asarray(self.backend.landmarks(frame, box), dtype=np.float64))
                _remember(_FACE_MEMO, key, found)
            else:
                _FACE_MEMO.move_to_end(key)
            boxes[i], landmarks[i] = _FACE_MEMO[key]
            if np.isfinite(boxes[i, 0]):
                sizes[i] = max(boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1])
        track = FaceTrack(landmarks, np.isfinite(sizes), sizes, boxes)
        if self.identity is not None:
            identity = self._embed(frames, digests, track, start)
            self.embeddings.append(identity)
        self.parts.append(track)
        return track, identity

    def _embed(self, frames, digests, track: FaceTrack, start: int) -> np.ndarray:
        rows: list[np.ndarray | None] = [None] * len(frames)
        for i in range(len(frames)):
            if (start + i) % self.stride or not track.valid[i]:
                continue
            key = (self.identity_scope, digests[i])
            if key not in _IDENTITY_MEMO:
                vector = self.identity.embed(frames[i], track.box(i), track.landmarks[i].astype(np.float32))
                _remember(_IDENTITY_MEMO, key, np.asarray(vector, dtype=np.float32))
            rows[i] = _IDENTITY_MEMO[key]
        dims = next((len(r) for r in rows if r is not None), 0)
        out = np.full((len(frames), dims or 1), np.nan, dtype=np.float32)
        for i, row in enumerate(rows):
            if row is not None:
                out[i] = row
        return out

    def finish(self) -> VideoAnalysis:
        identity = None
        if self.identity is not None:
            dims = max((e.shape[1] for e in self.embeddings), default=1)
            identity = np.concatenate([_widen(e, dims) for e in self.embeddings]) if self.embeddings else np.zeros((0, dims), np.float32)
        return VideoAnalysis(FaceTrack.concatenate(self.parts), identity)


def _widen(rows: np.ndarray, dims: int) -> np.ndarray:
    """A batch without any embedded frame has a 1-wide NaN block; give it the real width."""
    if rows.shape[1] == dims:
        return rows
    return np.full((len(rows), dims), np.nan, dtype=np.float32)


def analyse_frames(frames: np.ndarray, backend) -> FaceTrack:
    """The face track of frames held in memory (one batch)."""
    return VideoAnalyser(backend).update(frames, 0)[0]
