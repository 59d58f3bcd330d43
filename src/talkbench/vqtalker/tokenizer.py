"""The VQTalker facial motion tokenizer: LIA's encoder and flow-warping StyleGAN2 renderer with
the linear motion decomposition replaced by GRFSQ on the motion difference.

    encoder(image)  -> appearance latent f_g (style_dim), skip features (8x8 .. size), and
                       through the motion MLP a 120-d motion feature f
    quantizer(f_t - f_s) -> quantized motion q, indices (G, R, B)
    renderer(f_g + W q, skip features of the source) -> image

The renderer warps the source's skip feature at every scale with a predicted flow and mask
(LIA's ToFlow) and builds the image from the warped features. Images inside the model are
float (B, 3, H, W) in [-1, 1] as in LIA; ``to_model``/``from_model`` convert uint8 frames.
Modules are keyed by resolution so a 512 model can be initialised from a 256 one
(``load_matching``). Everything is device-agnostic and every ``grid_sample`` states
``align_corners``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from talkbench.vqtalker.quantize import TABLE3, QuantizerConfig, build_quantizer

# ----------------------------------------------------------------------------- config

BASE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


@dataclass(frozen=True)
class TokenizerConfig:
    size: int = 256
    style_dim: int = 512  # appearance latent / global face feature f_g
    motion_dim: int = 120  # GRFSQ input
    motion_layers: int = 4  # hidden EqualLinear layers of the motion MLP (LIA: 4)
    channel_multiplier: int = 1  # renderer channels at >= 64 px (LIA: 1)
    max_channels: int = 512  # cap on every layer's width (tiny configs)
    # "zero": the flow/mask heads start at zero (identity warp, mask 0.5); "lia": LIA's N(0, 1)
    # init, whose random flows scramble the skip features until training undoes them.
    flow_init: str = "zero"
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def channels(self) -> dict[int, int]:
        out = {}
        for res, ch in BASE_CHANNELS.items():
            ch = ch * self.channel_multiplier if res >= 64 else ch
            out[res] = min(ch, self.max_channels)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TokenizerConfig":
        data = dict(data)
        q = data.pop("quantizer", None)
        cfg = cls(**data)
        if q is not None:
            cfg = replace(cfg, quantizer=_quantizer_config(q))
        if cfg.size not in BASE_CHANNELS or cfg.size < 8:
            raise ValueError(f"size must be a power of two between 8 and 1024, got {cfg.size}")
        if cfg.flow_init not in ("zero", "lia"):
            raise ValueError(f"flow_init must be 'zero' or 'lia', got {cfg.flow_init!r}")
        if cfg.quantizer.dim != cfg.motion_dim:
            raise ValueError(f"quantizer dim {cfg.quantizer.dim} != motion_dim {cfg.motion_dim}")
        return cfg

    def to_dict(self) -> dict:
        d = asdict(self)
        d["quantizer"] = self.quantizer.to_dict()
        return d


def _quantizer_config(q: dict | str) -> QuantizerConfig:
    if isinstance(q, str):
        return TABLE3[q]
    q = dict(q)
    variant = q.pop("variant", None)
    base = TABLE3[variant].to_dict() if variant else {}
    return QuantizerConfig.from_dict({**base, **q})


CONFIG_NAMES = ("tiny", "paper-256", "paper-512")


def load_config(name_or_path: str) -> dict:
    """A training config (dict with ``model``, ``train``, ``loss``, ``data`` sections) by name
    (``tiny``, ``paper-256``, ``paper-512``) or YAML path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text()
    elif name_or_path in CONFIG_NAMES:
        text = (resources.files("talkbench.vqtalker") / "configs" / f"{name_or_path}.yaml").read_text()
    else:
        raise FileNotFoundError(f"{name_or_path}: not a YAML file nor one of {', '.join(CONFIG_NAMES)}")
    return yaml.safe_load(text)


# ----------------------------------------------------------------------------- StyleGAN2 blocks


def make_kernel(k: list[int]) -> torch.Tensor:
    t = torch.tensor(k, dtype=torch.float32)
    t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)):
    """Upsample (zero insertion), FIR-filter and downsample, as StyleGAN2's native op."""
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    p0, p1 = pad
    out = x
    if up > 1:
        out = x.reshape(b, c, h, 1, w, 1)
        out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])
        out = out.reshape(b, c, h * up, w * up)
    out = F.pad(out, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    out = out[:, :, max(-p0, 0) : out.shape[2] - max(-p1, 0), max(-p0, 0) : out.shape[3] - max(-p1, 0)]
    w_ = torch.flip(kernel, [0, 1]).to(out.dtype).expand(c, 1, kh, kw)  # depthwise FIR
    return F.conv2d(out, w_, groups=c, stride=down)


class Blur(nn.Module):
    def __init__(self, kernel: list[int], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel) * (upsample_factor**2)
        self.register_buffer("kernel", k, persistent=False)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, kernel: list[int], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2, persistent=False)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


def fused_leaky_relu(x, bias, negative_slope=0.2, scale=2**0.5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return fused_leaky_relu(x, self.bias)


class ScaledLeakyReLU(nn.Module):
    """Leaky ReLU scaled by sqrt(2) to keep unit variance (StyleGAN2)."""

    def forward(self, x):
        return F.leaky_relu(x, 0.2) * 2**0.5


class EqualConv2d(nn.Module):
    """Conv with weights ~N(0, 1) scaled at run time by 1/sqrt(fan_in) (equalised learning rate)."""

    def __init__(self, cin, cout, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(cin * kernel_size**2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    def __init__(self, din, dout, bias=True, bias_init=0.0, lr_mul=1.0, activation=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dout, din).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((dout,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(din)
        self.lr_mul = lr_mul

    def forward(self, x):
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return fused_leaky_relu(out, bias) if bias is not None else F.leaky_relu(out, 0.2) * 2**0.5
        return F.linear(x, self.weight * self.scale, bias=bias)


class ConvLayer(nn.Sequential):
    def __init__(self, cin, cout, kernel_size, downsample=False, blur_kernel=(1, 3, 3, 1), bias=True, activate=True):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(list(blur_kernel), pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(cin, cout, kernel_size, stride, padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(cout) if bias else ScaledLeakyReLU())
        super().__init__(*layers)


class ResBlock(nn.Module):
    """StyleGAN2 residual down block: conv3x3, blur + strided conv3x3, 1x1 blurred skip."""

    def __init__(self, cin, cout, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(cin, cin, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(cin, cout, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(cin, cout, 1, downsample=True, blur_kernel=blur_kernel, activate=False, bias=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class ModulatedConv2d(nn.Module):
    """Weights modulated per sample by a style, demodulated to unit output variance."""

    def __init__(self, cin, cout, kernel_size, style_dim, demodulate=True, upsample=False, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.cin, self.cout, self.kernel_size = cin, cout, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            p = (len(blur_kernel) - 2) - (kernel_size - 1)
            self.blur = Blur(list(blur_kernel), pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self.scale = 1 / math.sqrt(cin * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, cout, cin, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1)

    def forward(self, x, style):
        b, cin, h, w = x.shape
        k = self.kernel_size
        s = self.modulation(style).view(b, 1, cin, 1, 1)
        weight = self.scale * self.weight * s
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(b, self.cout, 1, 1, 1)
        x = x.reshape(1, b * cin, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * cin, self.cout, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
            out = self.blur(out.reshape(b, self.cout, out.shape[2], out.shape[3]))
        else:
            weight = weight.reshape(b * self.cout, cin, k, k)
            out = F.conv2d(x, weight, padding=self.padding, groups=b)
            out = out.reshape(b, self.cout, out.shape[2], out.shape[3])
        return out


class StyledConv(nn.Module):
    def __init__(self, cin, cout, kernel_size, style_dim, upsample=False, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel)
        self.activate = FusedLeakyReLU(cout)

    def forward(self, x, style):
        return self.activate(self.conv(x, style))  # LIA injects no noise


class ToRGB(nn.Module):
    def __init__(self, cin, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.upsample = Upsample(list(blur_kernel))
        self.conv = ConvLayer(cin, 3, 1)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, skip=None):
        out = self.conv(x) + self.bias
        return out if skip is None else out + self.upsample(skip)


def identity_grid(b: int, h: int, w: int, device, dtype) -> torch.Tensor:
    """(b, h, w, 2) sampling grid of pixel centres (x, y) for ``align_corners=False``."""
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1).unsqueeze(0).expand(b, h, w, 2)


class ToFlow(nn.Module):
    """Predicts a flow (2 channels, tanh) and a mask (sigmoid) from the renderer feature, warps
    the encoder's skip feature with it and blends: LIA's warping module."""

    def __init__(self, cin, style_dim, blur_kernel=(1, 3, 3, 1), zero_init: bool = False):
        super().__init__()
        self.upsample = Upsample(list(blur_kernel))
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        if zero_init:
            nn.init.zeros_(self.conv.weight)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, feat, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        b, _, h, w = x.shape
        flow = torch.tanh(out[:, 0:2]).permute(0, 2, 3, 1) + identity_grid(b, h, w, x.device, x.dtype)
        mask = torch.sigmoid(out[:, 2:3])
        warped = F.grid_sample(feat, flow.to(feat.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
        warped = warped * mask
        return warped, warped + x * (1.0 - mask), out


# ----------------------------------------------------------------------------- networks


class Encoder(nn.Module):
    """LIA's appearance encoder: 1x1 from-RGB, residual down blocks to 4x4, a 4x4 conv to the
    ``style_dim`` latent. Returns the latent and the skip features at 8x8 .. size."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        ch = cfg.channels()
        self.size = cfg.size
        self.from_rgb = ConvLayer(3, ch[cfg.size], 1)
        self.blocks = nn.ModuleDict()
        res = cfg.size
        while res > 4:
            self.blocks[str(res)] = ResBlock(ch[res], ch[res // 2])
            res //= 2
        self.to_latent = EqualConv2d(ch[4], cfg.style_dim, 4, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = self.from_rgb(x)
        feats = [h]
        for block in self.blocks.values():
            h = block(h)
            feats.append(h)
        latent = self.to_latent(h).flatten(1)
        # feats: size, size/2, ..., 4 -> skip features 8 .. size (coarse first)
        return latent, feats[::-1][1:]


class MotionMLP(nn.Module):
    """LIA's motion MLP (linear EqualLinear layers) to the 120-d motion feature."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        layers = [EqualLinear(cfg.style_dim, cfg.style_dim) for _ in range(cfg.motion_layers)]
        layers.append(EqualLinear(cfg.style_dim, cfg.motion_dim))
        self.fc = nn.Sequential(*layers)

    def forward(self, h):
        return self.fc(h)


class Renderer(nn.Module):
    """LIA's StyleGAN2 synthesis network with a flow-warp of the skip features at every scale."""

    def __init__(self, cfg: TokenizerConfig, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        ch = cfg.channels()
        self.input = nn.Parameter(torch.randn(1, ch[4], 4, 4))
        self.conv1 = StyledConv(ch[4], ch[4], 3, cfg.style_dim, blur_kernel=blur_kernel)
        self.up_convs = nn.ModuleDict()
        self.convs = nn.ModuleDict()
        self.to_rgbs = nn.ModuleDict()
        self.to_flows = nn.ModuleDict()
        res, cin = 8, ch[4]
        while res <= cfg.size:
            key = str(res)
            self.up_convs[key] = StyledConv(cin, ch[res], 3, cfg.style_dim, upsample=True, blur_kernel=blur_kernel)
            self.convs[key] = StyledConv(ch[res], ch[res], 3, cfg.style_dim, blur_kernel=blur_kernel)
            self.to_rgbs[key] = ToRGB(ch[res], blur_kernel=blur_kernel)
            self.to_flows[key] = ToFlow(ch[res], cfg.style_dim, blur_kernel=blur_kernel, zero_init=cfg.flow_init == "zero")
            cin, res = ch[res], res * 2

    def forward(self, latent: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        out = self.input.expand(latent.shape[0], -1, -1, -1)
        out = self.conv1(out, latent)
        rgb = flow = None
        for key, feat in zip(self.convs.keys(), feats):
            out = self.up_convs[key](out, latent)
            out = self.convs[key](out, latent)
            warped, out, flow = self.to_flows[key](out, latent, feat, flow)
            rgb = self.to_rgbs[key](warped, rgb)
        return rgb


class TokenizerOutput(NamedTuple):
    image: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    indices: torch.Tensor  # (G, R, B)
    aux_loss: torch.Tensor  # quantizer's auxiliary loss (0 for GRFSQ)
    global_feature: torch.Tensor  # f_g of the source, (B, style_dim)
    motion: torch.Tensor  # f_t - f_s before quantization, (B, motion_dim)
    quantized: torch.Tensor  # after quantization, (B, motion_dim)


class MotionTokenizer(nn.Module):
    """Encoder - GRFSQ - renderer (VQTalker stage 1)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.motion = MotionMLP(cfg)
        self.quantizer = build_quantizer(cfg.quantizer)
        # LIA adds sum(alpha_i d_i) to the latent; we add a learned map of the quantized
        # difference instead (the linear motion decomposition is removed).
        self.to_latent = EqualLinear(cfg.motion_dim, cfg.style_dim, bias=False)
        self.renderer = Renderer(cfg)

    # -- pieces, used by encode/reconstruct and stage 2

    def encode_source(self, source: torch.Tensor):
        """f_g (B, style_dim), skip features and the motion feature f_s of source images."""
        latent, feats = self.encoder(source)
        return latent, feats, self.motion(latent)

    def motion_feature(self, image: torch.Tensor) -> torch.Tensor:
        latent, _ = self.encoder(image)
        return self.motion(latent)

    def render(self, global_feature, feats, quantized) -> torch.Tensor:
        return self.renderer(global_feature + self.to_latent(quantized), feats)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> TokenizerOutput:
        b = source.shape[0]
        latent, feats = self.encoder(torch.cat([source, target]))
        f_g = latent[:b]
        f = self.motion(latent)
        motion = f[b:] - f[:b]
        q = self.quantizer(motion)
        image = self.render(f_g, [x[:b] for x in feats], q.quantized)
        return TokenizerOutput(image, q.indices, q.aux_loss, f_g, motion, q.quantized)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def build_tokenizer(config: dict | TokenizerConfig | str) -> MotionTokenizer:
    if isinstance(config, str):
        config = load_config(config)["model"]
    if isinstance(config, dict):
        config = TokenizerConfig.from_dict(config)
    return MotionTokenizer(config)


@torch.no_grad()
def load_matching(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Copy every tensor whose name and shape match (a 512 model from a 256 checkpoint).
    Returns (loaded, skipped) names."""
    own = model.state_dict()
    loaded, skipped = [], []
    for name, value in state.items():
        if name in own and own[name].shape == value.shape:
            own[name].copy_(value)
            loaded.append(name)
        else:
            skipped.append(name)
    return loaded, skipped


# ----------------------------------------------------------------------------- conversions


def to_model(frames: np.ndarray, device=None) -> torch.Tensor:
    """uint8 (T, H, W, 3) frames -> float (T, 3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    return t.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def from_model(images: torch.Tensor) -> np.ndarray:
    """float (T, 3, H, W) in [-1, 1] -> uint8 (T, H, W, 3)."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
