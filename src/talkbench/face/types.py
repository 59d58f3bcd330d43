"""The records a face backend returns, the interface it implements, and the one rule for
choosing among several faces."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

log = logging.getLogger(__name__)

# iBUG 300-W 68-point layout (the one dlib and FAN share).
RIGHT_EYE = slice(36, 42)  # the subject's right eye: image left
LEFT_EYE = slice(42, 48)
MOUTH = slice(48, 68)


@dataclass(frozen=True)
class FaceBox:
    left: float
    top: float
    right: float
    bottom: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def size(self) -> float:
        """The side of the face, in pixels: the larger of width and height."""
        return max(self.width, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return (self.left + self.right) / 2, (self.top + self.bottom) / 2


@dataclass
class FaceAnalysis:
    """What was found in one image. ``box`` is None when no face was found."""

    backend: str
    box: FaceBox | None
    landmarks: np.ndarray | None = None  # (68, 2) float32, x/y in image pixels
    embedding: np.ndarray | None = None  # identity vector, backend-specific length
    faces_found: int = 0
    note: str = ""  # e.g. "3 faces found; kept the largest"
    model_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.box is not None


@runtime_checkable
class FaceBackend(Protocol):
    """A face backend: detector, 68-point landmark model and identity embedder."""

    name: str

    def model_sha256(self) -> dict[str, str]:
        """sha256 of every model file the backend loaded, by file name."""

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """All faces in a uint8 RGB image, best first."""

    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        """(68, 2) float32 landmarks of the face in ``box``."""

    def embedding(self, image: np.ndarray, box: FaceBox, landmarks: np.ndarray) -> np.ndarray:
        """An identity vector for the face (L2-normalised by the caller if needed)."""


def pick_main_face(boxes: list[FaceBox]) -> tuple[FaceBox | None, str]:
    """The largest face (ties broken by detector score), and a note when there were several."""
    if not boxes:
        return None, ""
    best = max(boxes, key=lambda b: (b.size, b.score))
    note = f"{len(boxes)} faces found; kept the largest" if len(boxes) > 1 else ""
    return best, note


def analyse_image(
    image: np.ndarray,
    backend: FaceBackend,
    landmarks: bool = True,
    embedding: bool = False,
) -> FaceAnalysis:
    """Detect, keep the main face, and optionally add its landmarks and identity embedding."""
    boxes = backend.detect(image)
    box, note = pick_main_face(boxes)
    result = FaceAnalysis(
        backend=backend.name,
        box=box,
        faces_found=len(boxes),
        note=note,
    )
    if note:
        log.info(note)
    if box is not None and (landmarks or embedding):
        result.landmarks = backend.landmarks(image, box)
    if box is not None and embedding:
        result.embedding = backend.embedding(image, box, result.landmarks)
    result.model_sha256 = backend.model_sha256()  # after use: lazily loaded models count too
    return result
