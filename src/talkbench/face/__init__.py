"""Face detection, 68-point landmarks and identity embeddings, behind one small interface.

``datasets`` (detection, tracking, crop), ``metrics`` (CSIM, LMD, MSI) and ``vqtalker``
(eye/mouth regions, controls) all use this package, so a face is found the same way
everywhere. A backend is chosen by name and its name and model-file hashes travel with every
result, because landmark and identity numbers are only comparable within one backend.
``face.crop`` holds the crop geometry (face boxes to the square a dataset clip is cut to).
"""

from talkbench.face.types import FaceAnalysis, FaceBackend, FaceBox, analyse_image
from talkbench.face.registry import available_backends, get_backend

__all__ = [
    "FaceAnalysis",
    "FaceBackend",
    "FaceBox",
    "analyse_image",
    "available_backends",
    "get_backend",
]
