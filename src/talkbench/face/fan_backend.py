"""FAN backend: the 68-point 2D-FAN landmarks of ``face-alignment`` (Bulat & Tzimiropoulos
2017), the landmark detector most talking-head papers use for LMD, on dlib's face boxes.

The network and its pre/post-processing follow face-alignment 1.5.0 (``models/fan.py``,
``api.get_landmarks_from_image``, ``utils.crop`` / ``get_preds_fromhm``) so that, given the same
weights and boxes, the landmarks are the same (``tests/test_face_fan.py``):

- the box (dlib's detector, as face-alignment's ``face_detector='dlib'``, reference scale 195)
  gives a centre moved up by 12 % of the box height and a scale ``(w + h) / 195``;
- a 256² crop of ``200 × scale`` pixels around it, in [0, 1];
- 4 stacked hourglasses; the last stack's 64² heatmaps; per point the arg-max moved a quarter
  pixel towards the larger neighbour, minus 0.5, mapped back through the inverse crop
  transform (whose integer rounding face-alignment keeps, so we keep it too).

Weights: ``2DFAN4`` through ``talkbench.weights`` (``talkbench weights fetch fan-2d``).
Identity embeddings are not FAN's: they come from dlib's ResNet, as in the dlib backend.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from talkbench import weights
from talkbench.face.dlib_backend import DlibBackend
from talkbench.face.types import FaceBox

WEIGHTS = "fan-2d"
REFERENCE_SCALE = 195.0  # face-alignment's dlib detector
CENTER_Y_OFFSET = 0.12
SCALE_FACTOR = 200.0
CROP = 256


class ConvBlock(nn.Module):
    """Pre-activation block whose three convolutions' outputs are concatenated (½, ¼, ¼)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        half, quarter = cout // 2, cout // 4
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, half, 3, 1, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(half), nn.Conv2d(half, quarter, 3, 1, 1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(quarter), nn.Conv2d(quarter, quarter, 3, 1, 1, bias=False)
        self.downsample = None
        if cin != cout:
            self.downsample = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(True), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x):
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), 1) + residual


class HourGlass(nn.Module):
    """Recursive hourglass of ``depth`` levels; module names match face-alignment's state dict."""

    def __init__(self, depth: int = 4, features: int = 256):
        super().__init__()
        self.depth, self.features = depth, features
        self._add(depth)

    def _add(self, level: int) -> None:  # registration order as face-alignment's, so state dicts match
        self.add_module(f"b1_{level}", ConvBlock(self.features, self.features))
        self.add_module(f"b2_{level}", ConvBlock(self.features, self.features))
        if level > 1:
            self._add(level - 1)
        else:
            self.add_module("b2_plus_1", ConvBlock(self.features, self.features))
        self.add_module(f"b3_{level}", ConvBlock(self.features, self.features))

    def _forward(self, level: int, x):
        up = self._modules[f"b1_{level}"](x)
        low = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        low = self._forward(level - 1, low) if level > 1 else self._modules["b2_plus_1"](low)
        low = self._modules[f"b3_{level}"](low)
        return up + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x):
        return self._forward(self.depth, x)


class FAN(nn.Module):
    """2D-FAN: a stem down to 64², then ``stacks`` hourglasses, each emitting 68 heatmaps."""

    def __init__(self, stacks: int = 4):
        super().__init__()
        self.stacks = stacks
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3), nn.BatchNorm2d(64)
        self.conv2, self.conv3, self.conv4 = ConvBlock(64, 128), ConvBlock(128, 128), ConvBlock(128, 256)
        for i in range(stacks):
            self.add_module(f"m{i}", HourGlass(4, 256))
            self.add_module(f"top_m_{i}", ConvBlock(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(256))
            self.add_module(f"l{i}", nn.Conv2d(256, 68, 1))
            if i < stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, 1))
                self.add_module(f"al{i}", nn.Conv2d(68, 256, 1))

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)), True)
        x = self.conv4(self.conv3(F.avg_pool2d(self.conv2(x), 2, stride=2)))
        previous, heatmaps = x, None
        for i in range(self.stacks):
            ll = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            ll = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)), True)
            heatmaps = self._modules[f"l{i}"](ll)
            if i < self.stacks - 1:
                previous = previous + self._modules[f"bl{i}"](ll) + self._modules[f"al{i}"](heatmaps)
        return heatmaps


def _affine(center, scale: float, resolution: float, dtype) -> np.ndarray:
    h = SCALE_FACTOR * scale
    t = np.eye(3, dtype=dtype)
    t[0, 0] = t[1, 1] = resolution / h
    t[0, 2] = resolution * (-center[0] / h + 0.5)
    t[1, 2] = resolution * (-center[1] / h + 0.5)
    return t


def _crop_corner(point, center, scale: float, resolution: float) -> np.ndarray:
    """Image coordinates of a crop corner. face-alignment computes these in float32 torch and
    truncates to integers; a float64 result can truncate one pixel differently, so do the same."""
    t = torch.from_numpy(_affine(center, scale, resolution, np.float32))
    return (torch.inverse(t) @ torch.tensor([point[0], point[1], 1.0]))[:2].int().numpy()


def _to_image(point, center, scale: float, resolution: float) -> np.ndarray:
    """Heatmap coordinates back to the image, as face-alignment's ``transform_np`` (float64,
    pseudo-inverse, truncated to integers)."""
    t = np.linalg.pinv(_affine(center, scale, resolution, np.float64))
    return (t @ np.array([point[0], point[1], 1.0]))[:2].astype(np.int32)


def crop(image: np.ndarray, center, scale: float, resolution: int = CROP) -> np.ndarray:
    """The ``200 × scale`` square around ``center``, zero-padded outside the image, resized to
    ``resolution`` (bilinear, as cv2.INTER_LINEAR)."""
    import cv2

    ul = _crop_corner([1, 1], center, scale, resolution)
    br = _crop_corner([resolution, resolution], center, scale, resolution)
    out = np.zeros((br[1] - ul[1], br[0] - ul[0], image.shape[2]), dtype=np.uint8)
    ht, wd = image.shape[:2]
    new_x = [max(1, -ul[0] + 1), min(br[0], wd) - ul[0]]
    new_y = [max(1, -ul[1] + 1), min(br[1], ht) - ul[1]]
    old_x = [max(1, ul[0] + 1), min(br[0], wd)]
    old_y = [max(1, ul[1] + 1), min(br[1], ht)]
    out[new_y[0] - 1 : new_y[1], new_x[0] - 1 : new_x[1]] = image[old_y[0] - 1 : old_y[1], old_x[0] - 1 : old_x[1]]
    return cv2.resize(out, (resolution, resolution), interpolation=cv2.INTER_LINEAR)


def heatmap_points(heatmaps: np.ndarray, center, scale: float) -> np.ndarray:
    """(68, 2) image coordinates from one face's (68, 64, 64) heatmaps."""
    n, h, w = heatmaps.shape
    points = np.zeros((n, 2), dtype=np.float32)
    for j in range(n):
        y, x = divmod(int(np.argmax(heatmaps[j])), w)
        p = np.array([x + 1, y + 1], dtype=np.float32)
        if 0 < x < w - 1 and 0 < y < h - 1:
            hm = heatmaps[j]
            p += np.sign([hm[y, x + 1] - hm[y, x - 1], hm[y + 1, x] - hm[y - 1, x]]).astype(np.float32) * 0.25
        points[j] = p - 0.5
    return np.array([_to_image(p, center, scale, h) for p in points], dtype=np.float32)


def load_fan(path) -> FAN:
    """2DFAN4 from a state-dict file or file object (loaded with ``weights_only=True``)."""
    net = FAN(4)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


class FanBackend:
    name = "fan"

    def __init__(self, network: FAN | None = None, weights_file=None) -> None:
        self._dlib = DlibBackend()  # boxes and identity embeddings
        if network is None:
            weights_file = weights.weight_path(WEIGHTS)
            data = weights.read_verified(WEIGHTS, weights_file)
            with weights.loading(WEIGHTS, "face-alignment's 2DFAN-4 state dict saved by torch.save", weights_file):
                network = load_fan(io.BytesIO(data))
        self._net = network.eval()
        self._weights_sha256 = weights.file_sha256(weights_file) if weights_file else "caller-supplied"

    def model_sha256(self) -> dict[str, str]:
        return {**self._dlib.model_sha256(), "2DFAN4": self._weights_sha256}

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        return self._dlib.detect(image)

    @torch.no_grad()
    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        # face-alignment passes integer dlib rectangles; so do we
        left, top, right, bottom = (int(round(v)) for v in (box.left, box.top, box.right, box.bottom))
        center = np.array([right - (right - left) / 2.0, bottom - (bottom - top) / 2.0])
        center[1] -= (bottom - top) * CENTER_Y_OFFSET
        scale = (right - left + bottom - top) / REFERENCE_SCALE
        patch = crop(np.ascontiguousarray(image), center, scale).transpose(2, 0, 1).astype(np.float32) / 255.0
        heatmaps = self._net(torch.from_numpy(patch)[None]).float().numpy()[0]
        return heatmap_points(heatmaps, center, scale)

    def embedding(self, image: np.ndarray, box: FaceBox, landmarks: np.ndarray | None = None) -> np.ndarray:
        return self._dlib.embedding(image, box, landmarks)


