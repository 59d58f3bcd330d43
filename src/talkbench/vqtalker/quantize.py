"""Motion quantizers: GRFSQ (VQTalker, Algorithm 1) and the codebook baselines of Table 3.

GRFSQ splits the input (120-d by default) into G groups; each group goes through R residual
steps, each an FSQ with its own projection ``d -> len(levels) -> d`` (10 -> 4 -> 10 in the
paper). Indices come back with shape ``(G, R, *lead)`` exactly as Algorithm 1's ``I``, and
``decode(indices)`` reproduces the forward output bit for bit (the straight-through estimator
is written as ``codes + (s - s.detach())`` so its value is the exact code, not ``z + (q - z)``).

The codebook baselines (VQ, GVQ, RVQ, GRVQ) use the same group/residual loop with learned
codebooks updated by exponential moving averages (VQ-VAE-2 style) plus a commitment loss.

    q = build_quantizer(TABLE3["grfsq-12-4-5"])
    out = q(x)                # x: (..., 120)
    out.quantized, out.indices, out.aux_loss
    q.decode(out.indices)     # == out.quantized
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class QuantizerConfig:
    kind: str = "grfsq"  # "grfsq" (finite scalar) or "vq" (learned codebooks)
    dim: int = 120
    groups: int = 12
    residuals: int = 4
    levels: tuple[int, ...] = (5, 5, 5, 5)  # FSQ levels per projected dimension
    codebook_size: int = 1024  # VQ only
    commitment: float = 0.25  # VQ only: weight of ||x - sg(q)||^2
    ema_decay: float = 0.99  # VQ only

    @property
    def codes_per_codebook(self) -> int:
        return math.prod(self.levels) if self.kind == "grfsq" else self.codebook_size

    @property
    def group_dim(self) -> int:
        return math.ceil(self.dim / self.groups)

    @classmethod
    def from_dict(cls, data: dict) -> "QuantizerConfig":
        data = dict(data)
        if "levels" in data:
            data["levels"] = tuple(int(v) for v in data["levels"])
        return cls(**data)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["levels"] = list(self.levels)
        return d


# Table 3 of the paper. The paper's VQ row lists 8196 codes (sic); we keep its number.
TABLE3: dict[str, QuantizerConfig] = {
    "vq": QuantizerConfig(kind="vq", groups=1, residuals=1, codebook_size=8196),
    "gvq": QuantizerConfig(kind="vq", groups=32, residuals=1, codebook_size=1024),
    "rvq": QuantizerConfig(kind="vq", groups=1, residuals=32, codebook_size=1024),
    "grvq": QuantizerConfig(kind="vq", groups=12, residuals=4, codebook_size=1024),
    "grfsq-8-4-5": QuantizerConfig(groups=8, residuals=4, levels=(5, 5, 5, 5)),
    "grfsq-12-2-5": QuantizerConfig(groups=12, residuals=2, levels=(5, 5, 5, 5)),
    "grfsq-12-4-4": QuantizerConfig(groups=12, residuals=4, levels=(4, 4, 4, 4)),
    "grfsq-12-4-6": QuantizerConfig(groups=12, residuals=4, levels=(6, 6, 6, 6)),
    "grfsq-12-4-5": QuantizerConfig(groups=12, residuals=4, levels=(5, 5, 5, 5)),
}
PAPER_VARIANT = "grfsq-12-4-5"


class QuantizerOutput(NamedTuple):
    quantized: torch.Tensor  # same shape as the input
    indices: torch.Tensor  # (G, R, *lead), int64
    aux_loss: torch.Tensor  # scalar; 0 for FSQ, commitment loss for VQ


class _GroupedProjection(nn.Module):
    """G x R independent affine maps ``d_in -> d_out`` applied to (..., G, d_in) per residual step."""

    def __init__(self, groups: int, residuals: int, d_in: int, d_out: int, gain: list[float]):
        super().__init__()
        bound = 1 / math.sqrt(d_in)  # nn.Linear's default init
        weight = torch.empty(residuals, groups, d_in, d_out).uniform_(-bound, bound)
        bias = torch.empty(residuals, groups, d_out).uniform_(-bound, bound)
        scale = torch.tensor(gain).view(residuals, 1, 1, 1)
        self.weight = nn.Parameter(weight * scale)
        self.bias = nn.Parameter(bias * scale[..., 0])

    def forward(self, x: torch.Tensor, r: int) -> torch.Tensor:
        return torch.einsum("...gi,gio->...go", x, self.weight[r]) + self.bias[r]


class GRFSQ(nn.Module):
    """Group-Residual Finite Scalar Quantization (Algorithm 1)."""

    def __init__(self, config: QuantizerConfig = TABLE3[PAPER_VARIANT]):
        super().__init__()
        if config.kind != "grfsq":
            raise ValueError(f"GRFSQ needs kind='grfsq', got {config.kind!r}")
        if config.dim % config.groups:
            raise ValueError(f"dim {config.dim} is not divisible into {config.groups} groups")
        if any(level < 3 for level in config.levels):
            raise ValueError(f"FSQ levels must be >= 3, got {config.levels}")
        self.config = config
        G, R, k = config.groups, config.residuals, len(config.levels)
        d = config.dim // config.groups
        self.group_dim = d
        # Residual r starts with inputs ~levels^-r smaller: scale the projections at init so each
        # step sees a residual of order one (the role of ResidualFSQ's fixed scales; still learned).
        s = float(sum(config.levels)) / k
        self.project_in = _GroupedProjection(G, R, d, k, [s**r for r in range(R)])
        self.project_out = _GroupedProjection(G, R, k, d, [s ** (-r) for r in range(R)])

        levels = torch.tensor(config.levels, dtype=torch.int64)
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0), persistent=False)
        self.register_buffer("half_width", (levels // 2).float(), persistent=False)
        half_l = (levels.float() - 1) * (1 + 1e-3) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        self.register_buffer("half_l", half_l, persistent=False)
        self.register_buffer("offset", offset, persistent=False)
        self.register_buffer("shift", torch.atanh(offset / half_l), persistent=False)

    @property
    def codebook_size(self) -> int:
        return self.config.codes_per_codebook

    def _fsq(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """FSQ of projected values z (..., G, k): normalised codes in [-1, 1] (straight-through)
        and integer indices (..., G)."""
        bounded = torch.tanh(z + self.shift) * self.half_l - self.offset  # FSQ paper, A.1
        level = torch.round(bounded).detach() + self.half_width  # 0 .. L-1, exact integers
        codes = self._level_to_code(level)
        soft = bounded / self.half_width
        codes = codes + (soft - soft.detach())  # value: exactly `codes`; gradient: d soft / dz
        indices = (level.long() * self.basis).sum(-1)
        return codes, indices

    def _level_to_code(self, level: torch.Tensor) -> torch.Tensor:
        return (level - self.half_width) / self.half_width

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        cfg = self.config
        if x.shape[-1] != cfg.dim:
            raise ValueError(f"expected (..., {cfg.dim}) input, got {tuple(x.shape)}")
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            residual = x.unflatten(-1, (cfg.groups, self.group_dim))  # split into G groups
            x_hat = torch.zeros_like(residual)
            all_indices = []
            for r in range(cfg.residuals):
                codes, indices = self._fsq(self.project_in(residual, r))
                z_q = self.project_out(codes, r)
                x_hat = x_hat + z_q
                residual = residual - z_q.detach()
                all_indices.append(indices)
            indices = torch.stack(all_indices, 0)  # (R, *lead, G)
            indices = indices.movedim(-1, 0)  # (G, R, *lead)
            return QuantizerOutput(x_hat.flatten(-2), indices, x.new_zeros(()))

    def codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Normalised FSQ codes (*lead, G, R, k) of indices (G, R, *lead)."""
        idx = indices.long().movedim(0, -1).movedim(0, -1)  # (*lead, G, R)
        level = ((idx.unsqueeze(-1) // self.basis) % self.levels).float()
        return self._level_to_code(level)

    def decode(self, indices: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """The quantized vector (*lead, dim) for indices (G, R, *lead); ``upto`` sums only the
        first residual layers (coarse-to-fine)."""
        cfg = self.config
        codes = self.codes_from_indices(indices)
        x_hat = torch.zeros(*codes.shape[:-3], cfg.groups, self.group_dim, device=codes.device)
        for r in range(cfg.residuals if upto is None else upto):
            x_hat = x_hat + self.project_out(codes[..., r, :], r)
        return x_hat.flatten(-2)


class GroupResidualVQ(nn.Module):
    """Codebook baselines: G groups x R residual steps of nearest-neighbour VQ.

    Codebooks are updated by exponential moving averages of the assigned inputs (no gradient),
    the encoder gets a commitment loss and straight-through gradients. A dimension not divisible
    by G is projected to G * ceil(dim / G) and back (GVQ: 120 -> 128 = 32 x 4).
    """

    def __init__(self, config: QuantizerConfig):
        super().__init__()
        if config.kind != "vq":
            raise ValueError(f"GroupResidualVQ needs kind='vq', got {config.kind!r}")
        self.config = config
        G, R, K, d = config.groups, config.residuals, config.codebook_size, config.group_dim
        padded = G * d
        self.project_in = nn.Linear(config.dim, padded) if padded != config.dim else nn.Identity()
        self.project_out = nn.Linear(padded, config.dim) if padded != config.dim else nn.Identity()
        # Residual r codebook starts ~2^-r smaller, as residual magnitudes shrink.
        scale = torch.tensor([2.0 ** (-r) for r in range(R)]).view(1, R, 1, 1)
        embed = torch.randn(G, R, K, d) * scale
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.ones(G, R, K))
        self.register_buffer("embed_sum", embed.clone())
        self.group_dim = d

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def _nearest(self, x: torch.Tensor, r: int) -> torch.Tensor:
        """Indices (N, G) of the nearest code to x (N, G, d) in each group's codebook r."""
        codebook = self.embed[:, r]  # (G, K, d)
        dist2 = (
            x.pow(2).sum(-1, keepdim=True)
            - 2 * torch.einsum("ngd,gkd->ngk", x, codebook)
            + codebook.pow(2).sum(-1).unsqueeze(0)
        )
        return dist2.argmin(-1)

    def _lookup(self, indices: torch.Tensor, r: int) -> torch.Tensor:
        """Codes (N, G, d) for indices (N, G) of residual step r."""
        codebook = self.embed[:, r]  # (G, K, d)
        g = torch.arange(codebook.shape[0], device=indices.device)
        return codebook[g, indices]

    @torch.no_grad()
    def _ema_update(self, x: torch.Tensor, indices: torch.Tensor, r: int) -> None:
        cfg = self.config
        onehot = F.one_hot(indices, cfg.codebook_size).float()  # (N, G, K)
        counts = onehot.sum(0)  # (G, K)
        sums = torch.einsum("ngk,ngd->gkd", onehot, x)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        decay = cfg.ema_decay
        self.cluster_size[:, r].mul_(decay).add_(counts, alpha=1 - decay)
        self.embed_sum[:, r].mul_(decay).add_(sums, alpha=1 - decay)
        n = self.cluster_size[:, r].sum(-1, keepdim=True)
        smoothed = (self.cluster_size[:, r] + 1e-5) / (n + cfg.codebook_size * 1e-5) * n
        self.embed[:, r].copy_(self.embed_sum[:, r] / smoothed.unsqueeze(-1))

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        cfg = self.config
        if x.shape[-1] != cfg.dim:
            raise ValueError(f"expected (..., {cfg.dim}) input, got {tuple(x.shape)}")
        lead = x.shape[:-1]
        with torch.autocast(x.device.type, enabled=False):
            h = self.project_in(x.float()).reshape(-1, cfg.groups, self.group_dim)
            residual = h
            x_hat = torch.zeros_like(h)
            all_indices, commit = [], h.new_zeros(())
            for r in range(cfg.residuals):
                target = residual.detach()
                indices = self._nearest(target, r)
                q = self._lookup(indices, r)
                commit = commit + F.mse_loss(residual, q.detach())
                if self.training:
                    self._ema_update(target, indices, r)
                x_hat = x_hat + (q + (residual - residual.detach()))  # straight-through
                residual = residual - q.detach()
                all_indices.append(indices)
            out = self.project_out(x_hat.reshape(*lead, -1))
            indices = torch.stack(all_indices, 0).movedim(-1, 0).reshape(cfg.groups, cfg.residuals, *lead)
            return QuantizerOutput(out, indices, cfg.commitment * commit)

    def decode(self, indices: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        cfg = self.config
        lead = indices.shape[2:]
        flat = indices.long().reshape(cfg.groups, cfg.residuals, -1).permute(2, 0, 1)  # (N, G, R)
        x_hat = torch.zeros(flat.shape[0], cfg.groups, self.group_dim, device=indices.device)
        for r in range(cfg.residuals if upto is None else upto):
            x_hat = x_hat + self._lookup(flat[..., r], r)
        return self.project_out(x_hat.reshape(*lead, -1))


def build_quantizer(config: QuantizerConfig | str) -> GRFSQ | GroupResidualVQ:
    """A quantizer from a config or a Table 3 variant name (``grfsq-12-4-5``, ``grvq``, …)."""
    if isinstance(config, str):
        if config not in TABLE3:
            raise ValueError(f"unknown quantizer variant {config!r}; known: {', '.join(TABLE3)}")
        config = TABLE3[config]
    return GRFSQ(config) if config.kind == "grfsq" else GroupResidualVQ(config)


def bitrate(config: QuantizerConfig | str, fps: float = 25.0) -> float:
    """bit/s of the tokens: groups x residual layers x log2(codes) x fps (metrics.bitrate)."""
    from talkbench.metrics.bitrate import discrete_bitrate

    config = TABLE3[config] if isinstance(config, str) else config
    return discrete_bitrate(config.groups, config.residuals, config.codes_per_codebook, fps)


def utilisation(indices: torch.Tensor, config: QuantizerConfig | str) -> dict:
    """Codebook utilisation (share of codes used at least once, per codebook and overall) of
    indices shaped (G, R, *lead) as the quantizers return them (metrics.utilisation)."""
    from talkbench.metrics.utilisation import utilisation as _utilisation

    config = TABLE3[config] if isinstance(config, str) else config
    G, R = indices.shape[:2]
    flat = indices.detach().reshape(G, R, -1).permute(2, 0, 1).cpu().numpy()
    return _utilisation(flat, config.codes_per_codebook)
