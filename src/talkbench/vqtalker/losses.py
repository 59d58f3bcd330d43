"""Stage-1 losses: L1, VGG19 image-pyramid perceptual loss, non-saturating GAN with a StyleGAN2
discriminator, and eye / mouth region L1 from 68-point landmarks.

    L = l1 * |x - y| + lambda3 * VGG + lambda4 * GAN + lambda1 * L1_eye + lambda2 * L1_mouth

Region L1 is ``mean(|x - y| * mask)`` over the whole image (LIA-style masked loss), so a
region covering 1 % of the image with lambda = 1000 weighs its pixels 10x the global L1.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from talkbench.vqtalker.tokenizer import ConvLayer, EqualLinear, ResBlock, BASE_CHANNELS
from talkbench.weights import WeightSpec, loading, read_verified, register_weight

VGG19_WEIGHTS = register_weight(
    WeightSpec(
        name="vgg19",
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        sha256_prefix="dcbb9e9d",
        licence="BSD-3-Clause (torchvision)",
        description="torchvision VGG19 ImageNet weights (VQTalker perceptual loss)",
    )
)

# iBUG 68-point layout
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
MOUTH = slice(48, 68)


@dataclass(frozen=True)
class LossWeights:
    l1: float = 1.0
    perceptual: float = 0.01  # lambda3
    adversarial: float = 1.0  # lambda4
    eye: float = 1000.0  # lambda1
    mouth: float = 1000.0  # lambda2

    @classmethod
    def from_dict(cls, d: dict) -> "LossWeights":
        return cls(**{k: float(d[k]) for k in ("l1", "perceptual", "adversarial", "eye", "mouth") if k in d})


# ----------------------------------------------------------------------------- perceptual


class AntiAliasDownsample(nn.Module):
    """Gaussian blur then subsample by 1/scale (FOMM / LIA image pyramid)."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.scale = scale
        if scale == 1.0:
            return
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        grid = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-(grid**2) / (2 * sigma**2))
        kernel = g[:, None] * g[None, :]
        kernel = (kernel / kernel.sum()).expand(channels, 1, size, size).contiguous()
        self.register_buffer("weight", kernel, persistent=False)
        self.step = int(1 / scale)

    def forward(self, x):
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        out = F.conv2d(out, self.weight.to(x.dtype), groups=x.shape[1])
        return out[:, :, :: self.step, :: self.step]


class VGG19Features(nn.Module):
    """relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 of torchvision's VGG19, frozen.

    ``weights="pretrained"`` loads the registered ``vgg19`` file through the weights manager;
    ``weights="random"`` keeps a random init (tests; the loss is then not perceptual)."""

    SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))

    def __init__(self, weights: str = "pretrained"):
        super().__init__()
        from torchvision.models import vgg19

        model = vgg19(weights=None)
        if weights == "pretrained":
            data = read_verified(VGG19_WEIGHTS.name)  # the bytes checked are the bytes parsed
            with loading(VGG19_WEIGHTS.name, "torchvision's VGG19 state dict saved by torch.save"):
                model.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
        elif weights != "random":
            raise ValueError(f"vgg_weights must be 'pretrained' or 'random', got {weights!r}")
        self.weights = weights
        features = model.features
        self.slices = nn.ModuleList(nn.Sequential(*[features[i] for i in range(a, b)]) for a, b in self.SLICES)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # always frozen
        return super().train(False)

    def forward(self, x):  # x in [-1, 1]
        h = (x.clamp(-1, 1) / 2 + 0.5 - self.mean) / self.std
        out = []
        for s in self.slices:
            h = s(h)
            out.append(h)
        return out


class PerceptualLoss(nn.Module):
    """Image-pyramid VGG19 L1 with weight 10 per layer and scale (LIA's VGGLoss)."""

    def __init__(self, scales=(1, 0.5, 0.25, 0.125), weights: str = "pretrained", layer_weight: float = 10.0):
        super().__init__()
        self.vgg = VGG19Features(weights)
        self.pyramid = nn.ModuleList(AntiAliasDownsample(3, float(s)) for s in scales)
        self.layer_weight = layer_weight

    def forward(self, recon, real):
        loss = recon.new_zeros(())
        for down in self.pyramid:
            fr, ft = self.vgg(down(recon)), self.vgg(down(real))
            for a, b in zip(fr, ft):
                loss = loss + self.layer_weight * (a - b.detach()).abs().mean()
        return loss


# ----------------------------------------------------------------------------- discriminator


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with minibatch standard deviation."""

    def __init__(self, size: int, channel_multiplier: int = 1, max_channels: int = 512):
        super().__init__()
        ch = {
            r: min(c * channel_multiplier if r >= 64 else c, max_channels) for r, c in BASE_CHANNELS.items()
        }
        layers: list[nn.Module] = [ConvLayer(3, ch[size], 1)]
        res = size
        while res > 4:
            layers.append(ResBlock(ch[res], ch[res // 2]))
            res //= 2
        self.convs = nn.Sequential(*layers)
        self.stddev_group = 4
        self.final_conv = ConvLayer(ch[4] + 1, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, ch[4], activation=True), EqualLinear(ch[4], 1))

    def forward(self, x):
        out = self.convs(x)
        b, c, h, w = out.shape
        group = max(g for g in range(1, min(b, self.stddev_group) + 1) if b % g == 0)
        std = out.view(group, -1, 1, c, h, w)
        std = torch.sqrt(std.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        std = std.repeat(group, 1, h, w)
        out = self.final_conv(torch.cat([out, std], 1))
        return self.final_linear(out.flatten(1))


def g_nonsaturating_loss(fake_pred):
    return F.softplus(-fake_pred).mean()


def d_nonsaturating_loss(fake_pred, real_pred):
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


# ----------------------------------------------------------------------------- regions


def region_boxes(landmarks: np.ndarray, margin: float = 0.25) -> np.ndarray:
    """(…, 3, 4) boxes [x0, y0, x1, y1] of right eye, left eye and mouth from (…, 68, 2)
    landmarks, each grown by ``margin`` of its size on every side (eyes: of their width, so
    a nearly closed eye keeps a usable height)."""
    lm = np.asarray(landmarks, dtype=np.float32)
    boxes = []
    for part in (RIGHT_EYE, LEFT_EYE, MOUTH):
        pts = lm[..., part, :]
        lo, hi = pts.min(-2), pts.max(-2)
        size = hi - lo
        grow = margin * np.maximum(size, size[..., :1])  # at least margin x width vertically
        boxes.append(np.concatenate([lo - grow, hi + grow], -1))
    return np.stack(boxes, -2)


def region_masks(boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eye and mouth masks (B, 1, size, size) from boxes (B, 3, 4) in pixel coordinates of a
    size x size image (pixel centres inside the box are 1). A box of NaNs gives an empty mask."""
    c = torch.arange(size, device=boxes.device, dtype=torch.float32) + 0.5
    x = c.view(1, 1, 1, size)
    y = c.view(1, 1, size, 1)
    b = boxes.float().unsqueeze(-1).unsqueeze(-1)  # (B, 3, 4, 1, 1)
    inside = (x >= b[:, :, 0]) & (x <= b[:, :, 2]) & (y >= b[:, :, 1]) & (y <= b[:, :, 3])  # (B, 3, H, W)
    eyes = (inside[:, 0] | inside[:, 1]).unsqueeze(1).float()
    mouth = inside[:, 2:3].float()
    return eyes, mouth


def masked_l1(recon, target, mask):
    return ((recon - target).abs() * mask).mean()


class GeneratorLoss(nn.Module):
    """The weighted generator objective; returns the total and its named terms (detached)."""

    def __init__(self, weights: LossWeights, perceptual: PerceptualLoss | None):
        super().__init__()
        self.w = weights
        self.perceptual = perceptual

    def forward(self, recon, target, eye_mask, mouth_mask, fake_pred=None, aux_loss=None):
        terms: dict[str, torch.Tensor] = {}
        terms["l1"] = F.l1_loss(recon, target)
        total = self.w.l1 * terms["l1"]
        if self.w.eye:
            terms["eye"] = masked_l1(recon, target, eye_mask)
            total = total + self.w.eye * terms["eye"]
        if self.w.mouth:
            terms["mouth"] = masked_l1(recon, target, mouth_mask)
            total = total + self.w.mouth * terms["mouth"]
        if self.w.perceptual and self.perceptual is not None:
            terms["perceptual"] = self.perceptual(recon, target)
            total = total + self.w.perceptual * terms["perceptual"]
        if self.w.adversarial and fake_pred is not None:
            terms["gan_g"] = g_nonsaturating_loss(fake_pred)
            total = total + self.w.adversarial * terms["gan_g"]
        if aux_loss is not None and aux_loss.requires_grad:
            terms["quantizer"] = aux_loss
            total = total + aux_loss
        terms["total"] = total
        return total, {k: v.detach() for k, v in terms.items()}
