"""ArcFace identity embeddings for CSIM: InsightFace ``arcface_torch`` iresnet100 with its
preprocessing — 5-point similarity alignment to the 112×112 ArcFace template (as
``insightface.utils.face_align.norm_crop``: least-squares similarity transform, bilinear warp,
black border), RGB, (x / 255 − 0.5) / 0.5 — and the weights from the weights manager
(``arcface-r100``; InsightFace's licence: non-commercial research use only).

The five points come from the 68-point landmarks: the centres of the two eyes (36–41, 42–47),
the nose tip (30) and the mouth corners (48, 54), in the template's image-left-first order.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from skimage.transform import SimilarityTransform
from torch import nn

from talkbench import weights
from talkbench.errors import MetricError

WEIGHTS = "arcface-r100"
SIZE = 112
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks68, dtype=np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]).astype(np.float32)


def align(image: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """The 112×112 ArcFace crop of a uint8 RGB image."""
    points = five_points(landmarks68)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26: a falsy result on failure
        transform = SimilarityTransform.from_estimate(points, TEMPLATE)
        ok = bool(transform)
    else:
        transform = SimilarityTransform()
        ok = transform.estimate(points, TEMPLATE)
    if not ok or not np.all(np.isfinite(transform.params)):
        raise MetricError(f"ArcFace alignment failed: degenerate landmarks {points.round(1).tolist()}")
    return cv2.warpAffine(image, transform.params[0:2, :], (SIZE, SIZE), borderValue=0.0)


def conv3x3(inp: int, out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inp, out, 3, stride, 1, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    """arcface_torch's IResNet (module names kept so its checkpoints load unchanged)."""

    def __init__(self, layers=(3, 13, 30, 3), num_features: int = 512):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1])
        self.layer3 = self._make_layer(256, layers[2])
        self.layer4 = self._make_layer(512, layers[3])
        self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
        self.dropout = nn.Dropout(p=0, inplace=True)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes, eps=1e-05))
        layers = [IBasicBlock(self.inplanes, planes, 2, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


class ArcFace:
    """iresnet100 embedder; ``embed(image, landmarks68)`` → 512-d float32 (not normalised)."""

    def __init__(self, state_dict: dict | None = None):
        if state_dict is None:
            state_dict = torch.load(weights.weight_path(WEIGHTS), map_location="cpu", weights_only=True)
        self.net = IResNet()
        self.net.load_state_dict(state_dict)
        self.net.eval().requires_grad_(False)

    @torch.inference_mode()
    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
        return self.net((x / 255 - 0.5) / 0.5).numpy()

    def embed(self, image: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        return self.embed_crops(align(image, landmarks68)[None])[0]
