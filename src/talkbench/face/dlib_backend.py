"""dlib backend: HOG face detector, the 68-point shape predictor and the ResNet identity
embedding, with the model files shipped in the ``face-recognition-models`` package (offline)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import dlib
import numpy as np

from talkbench.errors import FaceModelError
from talkbench.face.types import FaceBox
from talkbench.util import sha256_file

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
EMBEDDING_MODEL = "dlib_face_recognition_resnet_model_v1.dat"

# Faces in talking-head frames are large; HOG finds faces down to ~80 px without upsampling.
# Small images are retried with one 2x upsampling so faces down to ~40 px are still found.
RETRY_UPSAMPLED_BELOW = 1000


def model_dir() -> Path:
    """Where ``face-recognition-models`` keeps its files.

    Located with ``find_spec`` rather than imported: the package's ``__init__`` imports
    ``pkg_resources``, which current setuptools no longer provides.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelError(
            "the dlib face models are missing: pip install face-recognition-models==0.3.0"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


@lru_cache(maxsize=None)
def file_sha256(path: Path) -> str:
    """sha256 of a model file, computed once per process (the files are ~100 MB and never change)."""
    return sha256_file(path)


def _model_path(name: str) -> Path:
    path = model_dir() / name
    if not path.is_file():
        raise FaceModelError(f"{path}: dlib model file missing; reinstall face-recognition-models")
    return path


class DlibBackend:
    name = "dlib"

    def __init__(self) -> None:
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(_model_path(LANDMARK_MODEL)))
        self._embedder = None  # the ResNet is loaded on first use: most callers never need it

    def model_sha256(self) -> dict[str, str]:
        # both files always: what a result depends on must not change with what was loaded first
        return {name: file_sha256(_model_path(name)) for name in (LANDMARK_MODEL, EMBEDDING_MODEL)}

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        image = np.ascontiguousarray(image)
        rects, scores, _ = self._detector.run(image, 0, 0.0)
        if not rects and max(image.shape[:2]) < RETRY_UPSAMPLED_BELOW:
            rects, scores, _ = self._detector.run(image, 1, 0.0)
        boxes = [
            FaceBox(float(r.left()), float(r.top()), float(r.right()), float(r.bottom()), float(s))
            for r, s in zip(rects, scores)
        ]
        return sorted(boxes, key=lambda b: b.score, reverse=True)

    def _shape(self, image: np.ndarray, box: FaceBox) -> dlib.full_object_detection:
        rect = dlib.rectangle(int(round(box.left)), int(round(box.top)), int(round(box.right)), int(round(box.bottom)))
        return self._predictor(np.ascontiguousarray(image), rect)

    @staticmethod
    def _shape_from(box: FaceBox, landmarks: np.ndarray) -> dlib.full_object_detection:
        """dlib's shape object from our landmarks (its integer points, so the aligner sees
        exactly what the predictor returned), without running the predictor a second time."""
        rect = dlib.rectangle(int(round(box.left)), int(round(box.top)), int(round(box.right)), int(round(box.bottom)))
        return dlib.full_object_detection(rect, dlib.points([dlib.point(int(x), int(y)) for x, y in landmarks]))

    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        shape = self._shape(image, box)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)

    def embedding(self, image: np.ndarray, box: FaceBox, landmarks: np.ndarray | None = None) -> np.ndarray:
        if self._embedder is None:
            self._embedder = dlib.face_recognition_model_v1(str(_model_path(EMBEDDING_MODEL)))
        # dlib's own landmarks (whole pixels) are reused; others (FAN's sub-pixel points) are
        # not what dlib's aligner was built for, so it gets the predictor's shape as always
        reuse = landmarks is not None and np.array_equal(landmarks, np.round(landmarks))
        shape = self._shape_from(box, landmarks) if reuse else self._shape(image, box)
        descriptor = self._embedder.compute_face_descriptor(np.ascontiguousarray(image), shape)
        return np.asarray(descriptor, dtype=np.float32)
