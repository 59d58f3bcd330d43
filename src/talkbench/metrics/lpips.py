"""LPIPS (Zhang et al. 2018) with the AlexNet backbone and the v0.1 linear layers, equal to
``lpips.LPIPS(net="alex")`` given the same weights.

Backbone weights: torchvision's ImageNet AlexNet (``alexnet`` in the weights manager); linear
layers: ``lpips-alex-v0.1``, which ships inside the ``lpips`` wheel and is used from there when
it is installed. Frames enter as uint8 RGB and are mapped to [-1, 1] as ``lpips.im2tensor``
does (x / 127.5 − 1).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn
from torchvision.models import alexnet

from talkbench import weights
from talkbench.metrics.base import Batch, FrameMeans, Metric, MetricSpec, ModelSource, Need

VERSION = "1"
WEIGHTS = ("alexnet", "lpips-alex-v0.1")
CHANNELS = (64, 192, 384, 256, 256)
# lpips cuts torchvision's AlexNet ``features`` after each ReLU.
SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))


class LPIPS(nn.Module):
    def __init__(self, backbone_state: dict | None = None, linear_state: dict | None = None):
        super().__init__()
        net = alexnet(weights=None)
        if backbone_state is None:
            data = weights.read_verified("alexnet")
            with weights.loading("alexnet", "torchvision's AlexNet state dict saved by torch.save"):
                net.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
        else:
            net.load_state_dict(backbone_state)
        self.slices = nn.ModuleList(nn.Sequential(*net.features[a:b]) for a, b in SLICES)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        if linear_state is None:
            data = weights.read_verified("lpips-alex-v0.1")
            with weights.loading("lpips-alex-v0.1", "lpips' v0.1 linear layers for AlexNet (alex.pth)"):
                self._copy_linear(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
        else:
            self._copy_linear(linear_state)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def _copy_linear(self, linear_state: dict) -> None:
        for i, lin in enumerate(self.lins):
            lin.weight.data.copy_(linear_state[f"lin{i}.model.1.weight"])

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.shift) / self.scale
        out = []
        for block in self.slices:
            h = block(h)
            out.append(h / (torch.sqrt(torch.sum(h**2, dim=1, keepdim=True)) + 1e-10))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS of (N, 3, H, W) images in [-1, 1] → (N,)."""
        # Both images go through AlexNet as one batch.
        feats = self._features(torch.cat([x, y]))
        n = x.shape[0]
        total = 0
        for f, lin in zip(feats, self.lins):
            total = total + lin((f[:n] - f[n:]) ** 2).mean(dim=(2, 3))
        return total.view(-1)


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 → (T, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.inference_mode()
def lpips_frames(model: LPIPS, generated: np.ndarray, reference: np.ndarray, batch: int = 16) -> np.ndarray:
    """LPIPS of each frame pair; (T, H, W, 3) uint8 → (T,) float64."""
    out = [
        model(to_tensor(generated[i : i + batch]), to_tensor(reference[i : i + batch]))
        for i in range(0, len(generated), batch)
    ]
    return torch.cat(out).double().numpy()


class LPIPSMetric(Metric):
    spec = MetricSpec("lpips", VERSION, "clip", ("lpips",), False, frozenset({Need.REFERENCE}), WEIGHTS,
                      description="LPIPS AlexNet v0.1")

    def load(self, models: ModelSource) -> None:
        self.model = models.get("lpips", LPIPS, self.weights())

    def update(self, state: FrameMeans, batch: Batch) -> None:
        state.add("lpips", lpips_frames(self.model, batch.generated, batch.reference))
