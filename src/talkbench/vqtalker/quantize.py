"""Motion quantizers: GRFSQ (VQTalker, Algorithm 1) and the codebook baselines of Table 3.

GRFSQ splits the input (120-d by default) into G groups; each group goes through R residual
steps, each an FSQ with its own projection ``d -> len(levels) -> d`` (10 -> 4 -> 10 in the
paper). Indices come back with shape ``(G, R, *lead)`` exactly as Algorithm 1's ``I``, and
``decode(indices)`` reproduces the forward output bit for bit (the straight-through estimator
is written as ``codes + (s - s.detach())`` so its value is the exact code, not ``z + (q - z)``).

The codebook baselines (VQ, GVQ, RVQ, GRVQ) are vector-quantize-pytorch's ``ResidualVQ`` /
``GroupedResidualVQ`` (the ``train`` extra): learned codebooks updated by exponential moving
averages (VQ-VAE-2 style) with dead-code restarts, plus a commitment loss. ``fsq_library: true``
swaps our GRFSQ for the library's ``GroupedResidualFSQ`` (same token space and bitrate).

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
from torch import nn

from talkbench.errors import TalkbenchError
from talkbench.metrics import utilisation as codebook_utilisation
from talkbench.metrics.bitrate import discrete_bitrate


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
    # VQ only: a code whose EMA hit count per step falls below this is restarted from a batch vector.
    # The count of a code in uniform use is global_batch / codebook_size (32 / 1024 = 0.03), so the
    # default restarts codes used at under ~1/30 of that rate; 0 switches restarts off.
    dead_code_threshold: float = 1e-3
    # VQ only: k-means on the first batch as the initial codebooks; off by default, because a first
    # batch of global_batch vectors is far smaller than 1024 codes (k-means would duplicate them).
    kmeans_init: bool = False
    fsq_library: bool = False  # GRFSQ only: vector-quantize-pytorch's GroupedResidualFSQ instead of ours

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


class QuantizerError(TalkbenchError):
    """A quantizer that cannot be built (its library is missing, or its config is invalid)."""


def _vector_quantize_pytorch():
    """The vector-quantize-pytorch package (only in the ``train`` extra), imported on first use."""
    try:
        import vector_quantize_pytorch
    except ImportError:
        raise QuantizerError("the Table 3 codebook quantizers (vq, gvq, rvq, grvq) and fsq_library=true need "
                             "vector-quantize-pytorch: pip install 'talkbench[train]'") from None
    return vector_quantize_pytorch


def _flat_lead(x: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    """x (*lead, d) as the (1, N, d) batch the library's modules take, and lead."""
    lead = x.shape[:-1]
    return x.reshape(1, -1, x.shape[-1]), lead


def _indices_to_grl(indices: torch.Tensor, lead: torch.Size) -> torch.Tensor:
    """The library's grouped indices (G, 1, N, R) as Algorithm 1's (G, R, *lead), int64."""
    G, _, _, R = indices.shape
    return indices.long().squeeze(1).permute(0, 2, 1).reshape(G, R, *lead)


def _indices_from_grl(indices: torch.Tensor, groups: int, residuals: int) -> torch.Tensor:
    """Indices (G, R, *lead) back to the library's (G, 1, N, R)."""
    return indices.long().reshape(groups, residuals, -1).permute(0, 2, 1).unsqueeze(1)


class GroupResidualVQ(nn.Module):
    """Codebook baselines (VQ, GVQ, RVQ, GRVQ): vector-quantize-pytorch's ``ResidualVQ`` (one group)
    or ``GroupedResidualVQ`` (G groups), each group R residual steps of nearest-neighbour VQ.

    Codebooks are updated by exponential moving averages of the assigned inputs (no gradient) with
    dead-code restarts: a code whose EMA hit count falls below ``dead_code_threshold`` is replaced by
    a random input vector of the current batch (all-reduced across ranks under DDP). The encoder gets
    the library's commitment loss (weight ``commitment``, summed over residual steps, averaged over
    groups) and the plain straight-through gradient. A dimension not divisible by G is projected to
    G * ceil(dim / G) and back (GVQ: 120 -> 128 = 32 x 4).
    """

    def __init__(self, config: QuantizerConfig):
        super().__init__()
        if config.kind != "vq":
            raise ValueError(f"GroupResidualVQ needs kind='vq', got {config.kind!r}")
        vqp = _vector_quantize_pytorch()
        self.config = config
        G, d = config.groups, config.group_dim
        padded = G * d
        self.project_in = nn.Linear(config.dim, padded) if padded != config.dim else nn.Identity()
        self.project_out = nn.Linear(padded, config.dim) if padded != config.dim else nn.Identity()
        self.group_dim = d
        kwargs = library_vq_kwargs(config)
        self.vq = vqp.ResidualVQ(dim=d, **kwargs) if G == 1 else vqp.GroupedResidualVQ(dim=padded, groups=G, **kwargs)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def embed(self) -> torch.Tensor:
        """The codebooks (G, R, K, d), stacked from the library's buffers (a copy)."""
        return self.vq.codebooks.unsqueeze(0) if self.config.groups == 1 else self.vq.codebooks

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        cfg = self.config
        if x.shape[-1] != cfg.dim:
            raise ValueError(f"expected (..., {cfg.dim}) input, got {tuple(x.shape)}")
        with torch.autocast(x.device.type, enabled=False):
            h, lead = _flat_lead(self.project_in(x.float()))
            quantized, indices, losses = self.vq(h)
            if cfg.groups == 1:  # ResidualVQ: (1, N, R) and (R,)
                indices, losses = indices.unsqueeze(0), losses.unsqueeze(0)
            out = self.project_out(quantized.reshape(*lead, -1))
            # the library's losses are (G, R), already weighted, zero outside training
            aux = losses.mean(0).sum() if self.training else h.new_zeros(())
            return QuantizerOutput(out, _indices_to_grl(indices, lead), aux)

    def decode(self, indices: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        cfg = self.config
        lead = indices.shape[2:]
        flat = indices.long().reshape(cfg.groups, cfg.residuals, -1)  # (G, R, N)
        embed = self.embed  # (G, R, K, d)
        g = torch.arange(cfg.groups, device=indices.device)[:, None]
        x_hat = torch.zeros(cfg.groups, flat.shape[-1], self.group_dim, device=embed.device)
        for r in range(cfg.residuals if upto is None else upto):
            x_hat = x_hat + embed[g, r, flat[:, r]]  # (G, N, d)
        return self.project_out(x_hat.permute(1, 0, 2).reshape(*lead, -1))


def library_vq_kwargs(config: QuantizerConfig) -> dict:
    """The keyword arguments our codebook baselines pass to vector-quantize-pytorch's ResidualVQ /
    GroupedResidualVQ (besides dim and groups), so a test or a user can build the same reference.
    Codebook statistics are all-reduced across ranks when a process group with more than one rank
    exists at construction (build the model after ``init_process_group``, as the trainer does)."""
    return dict(
        num_quantizers=config.residuals,
        codebook_size=config.codebook_size,
        decay=config.ema_decay,
        commitment_weight=config.commitment,
        threshold_ema_dead_code=config.dead_code_threshold,
        kmeans_init=config.kmeans_init,
        # the VQ-VAE straight-through estimator as before, not the library's default rotation trick
        rotation_trick=False,
        # decided here, not by the library: its own check is cached for the whole process, so a
        # quantizer built before (or after) a process group would inherit a stale answer
        sync_codebook=dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1,
    )


class LibraryGRFSQ(nn.Module):
    """GRFSQ as vector-quantize-pytorch's ``GroupedResidualFSQ`` (``fsq_library: true``): per group
    one projection ``d -> len(levels) -> d`` shared by the R residual steps, which are scaled by
    levels^-r (ResidualFSQ), with the symmetric FSQ grid. Same G x R x prod(levels) token space, so the
    same bitrate as our GRFSQ; the paper variant stays on our GRFSQ (one projection per step)."""

    def __init__(self, config: QuantizerConfig):
        super().__init__()
        if config.kind != "grfsq":
            raise ValueError(f"LibraryGRFSQ needs kind='grfsq', got {config.kind!r}")
        if config.dim % config.groups:
            raise ValueError(f"dim {config.dim} is not divisible into {config.groups} groups")
        vqp = _vector_quantize_pytorch()
        self.config = config
        self.fsq = vqp.GroupedResidualFSQ(dim=config.dim, groups=config.groups, levels=list(config.levels),
                                          num_quantizers=config.residuals)

    @property
    def codebook_size(self) -> int:
        return self.config.codes_per_codebook

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        cfg = self.config
        if x.shape[-1] != cfg.dim:
            raise ValueError(f"expected (..., {cfg.dim}) input, got {tuple(x.shape)}")
        with torch.autocast(x.device.type, enabled=False):
            h, lead = _flat_lead(x.float())
            quantized, indices = self.fsq(h)  # (1, N, dim), (G, 1, N, R)
            return QuantizerOutput(quantized.reshape(*lead, -1), _indices_to_grl(indices, lead), h.new_zeros(()))

    def decode(self, indices: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        cfg = self.config
        lead = indices.shape[2:]
        idx = _indices_from_grl(indices, cfg.groups, cfg.residuals)
        if upto is None:
            out = self.fsq.get_output_from_indices(idx)
        else:
            codes = self.fsq.get_codes_from_indices(idx)  # (G, R, 1, N, k)
            out = torch.cat([rvq.project_out(codes[g, :upto].sum(0)) for g, rvq in enumerate(self.fsq.rvqs)], -1)
        return out.reshape(*lead, cfg.dim)


def build_quantizer(config: QuantizerConfig | str) -> GRFSQ | LibraryGRFSQ | GroupResidualVQ:
    """A quantizer from a config or a Table 3 variant name (``grfsq-12-4-5``, ``grvq``, …)."""
    if isinstance(config, str):
        if config not in TABLE3:
            raise ValueError(f"unknown quantizer variant {config!r}; known: {', '.join(TABLE3)}")
        config = TABLE3[config]
    if config.kind == "grfsq":
        return LibraryGRFSQ(config) if config.fsq_library else GRFSQ(config)
    if config.kind == "vq":
        return GroupResidualVQ(config)
    raise QuantizerError(f"quantizer kind must be 'grfsq' or 'vq', got {config.kind!r}")


def bitrate(config: QuantizerConfig | str, fps: float = 25.0) -> float:
    """bit/s of the tokens: groups x residual layers x log2(codes) x fps (metrics.bitrate)."""
    config = TABLE3[config] if isinstance(config, str) else config
    return discrete_bitrate(config.groups, config.residuals, config.codes_per_codebook, fps)


def utilisation(indices: torch.Tensor, config: QuantizerConfig | str) -> dict:
    """Codebook utilisation (share of codes used at least once, per codebook and overall) of
    indices shaped (G, R, *lead) as the quantizers return them (metrics.utilisation)."""
    config = TABLE3[config] if isinstance(config, str) else config
    G, R = indices.shape[:2]
    flat = indices.detach().reshape(G, R, -1).permute(2, 0, 1).cpu().numpy()
    return codebook_utilisation.utilisation(flat, config.codes_per_codebook)
