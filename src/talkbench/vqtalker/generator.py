"""VQTalker stage 2: the coarse-to-fine BERT that turns speech (and controls) into motion tokens.

For residual layer r = 1..R the input is (paper, "Coarse-to-Fine Motion Generation")

    C_r = { f_g, k, [A, h, g, b, R_{r-1}] }

* ``f_g`` — the stage-1 global face feature of the portrait, projected to one prefix token;
* ``k`` — the layer indicator, a learned embedding, a second prefix token;
* per frame, concatenated: the speech embedding ``A`` (discrete: one embedding per token of
  the frame — 2 per frame at 50 Hz, concatenated, which is the 50 -> 25 Hz downsampling layer;
  continuous: a linear map), the controls ``h, g, b`` (7 numbers, fixed normalisation
  ``CONTROL_SCALE``), and ``R_{r-1}``: the motion tokens already generated, as the sum over
  layers j < r of a (layer, group, code) embedding, concatenated over the G groups (zeros for
  r = 1, as the paper's zero matrix). The concatenation is projected to the model width.

A bidirectional transformer encoder (learned positions, max 4096 frames + 2 prefix tokens)
reads the sequence; G heads (one small MLP per group) give 625-way logits for every frame.
Training windows of ``train.window`` frames always start at position 0, so only the first
``trained_window`` position rows are ever trained; the model never reads the others:
``forward`` refuses longer inputs, and generation and held-out scoring (``generate``,
``frame_losses``, ``windowed_loss``) run in overlapping windows of that length.
Training minimises the negative log-likelihood of the layer-r indices summed over groups
and frames (we average it — the same minimiser — and log the per-token NLL). The same
parameters serve every layer; only ``k`` and ``R_{r-1}`` differ. Inference: r = 1..R in
turn, argmax per group, all frames at once; audio longer than the trained window runs in
overlapping windows whose centres are stitched together.

Table 4's continuous-motion variant (``motion: vector``) regresses the motion vector directly
(one pass, MSE) instead of the GRFSQ indices. The paper's vector is LIA's 20-d latent; ours
is the 120-d stage-1 motion f_t - f_s that the renderer consumes, so the ablation configs set
``motion_dim: 120`` (20 remains the default to match the paper's wording).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from talkbench.errors import TalkbenchError
from talkbench.vqtalker.controls import CONTROL_DIM

# pose in degrees / 30; gaze as measured (about -0.5 .. 0.5); blink openness around 0.3 -> 0
CONTROL_SHIFT = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.3])
CONTROL_SCALE = torch.tensor([30.0, 30.0, 30.0, 0.5, 0.5, 0.1, 0.1])
PREFIX = 2  # f_g and k


class WindowError(TalkbenchError, ValueError):
    """An input longer than the positions a generator was trained on."""


@dataclass(frozen=True)
class GeneratorConfig:
    # speech input
    speech_discrete: bool = True
    speech_vocab: int = 4096  # discrete: codes of the speech tokenizer
    speech_per_frame: int = 2  # discrete: tokens per 25 fps frame
    speech_dim: int = 512  # continuous: feature width
    speech_embed: int = 512  # width of A in the concatenation
    control_embed: int = 64  # width of [h, g, b] in the concatenation
    code_embed: int = 32  # per group width of R_{r-1}: G * code_embed in the concatenation
    # motion output
    motion: str = "grfsq"  # "grfsq" (indices, NLL) or "vector" (regression, MSE)
    groups: int = 12
    residuals: int = 4
    codes: int = 625
    motion_dim: int = 20  # vector only
    # transformer
    style_dim: int = 512  # f_g
    width: int = 1024
    layers: int = 12
    heads: int = 16
    ffn: int = 4096
    head_hidden: int = 256
    dropout: float = 0.1
    max_len: int = 4096
    # positions 0..trained_window-1 are the ones training reaches (train.window); None: max_len
    trained_window: int | None = None

    @classmethod
    def from_dict(cls, data: dict) -> "GeneratorConfig":
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def positions(self) -> int:
        """Frames one forward pass may hold: the trained window (max_len when not recorded)."""
        return min(self.trained_window or self.max_len, self.max_len)

    @property
    def concat_dim(self) -> int:
        return self.speech_embed + self.control_embed + (self.groups * self.code_embed if self.motion == "grfsq" else 0)


class MotionGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        if cfg.motion not in ("grfsq", "vector"):
            raise ValueError(f"motion must be 'grfsq' or 'vector', got {cfg.motion!r}")
        self.config = cfg
        if cfg.speech_discrete:
            per_slot = cfg.speech_embed // cfg.speech_per_frame
            if per_slot * cfg.speech_per_frame != cfg.speech_embed:
                raise ValueError("speech_embed must be divisible by speech_per_frame")
            self.speech = nn.Embedding(cfg.speech_vocab, per_slot)
        else:
            self.speech = nn.Linear(cfg.speech_dim, cfg.speech_embed)
        self.controls = nn.Linear(CONTROL_DIM, cfg.control_embed)
        self.register_buffer("control_shift", CONTROL_SHIFT.clone(), persistent=False)
        self.register_buffer("control_scale", CONTROL_SCALE.clone(), persistent=False)
        if cfg.motion == "grfsq":
            # one row per (layer, group, code); R_{r-1} sums the rows of the layers done so far
            self.codes = nn.Embedding(cfg.residuals * cfg.groups * cfg.codes, cfg.code_embed)
        self.project = nn.Linear(cfg.concat_dim, cfg.width)
        self.global_feature = nn.Linear(cfg.style_dim, cfg.width)
        self.layer_indicator = nn.Embedding(cfg.residuals, cfg.width)
        self.position = nn.Embedding(cfg.max_len + PREFIX, cfg.width)
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, cfg.ffn, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, norm=nn.LayerNorm(cfg.width), enable_nested_tensor=False)
        if cfg.motion == "grfsq":
            G, H = cfg.groups, cfg.head_hidden
            # G independent MLP heads width -> head_hidden -> codes, as batched weights
            self.head_w1 = nn.Parameter(torch.randn(G, cfg.width, H) / math.sqrt(cfg.width))
            self.head_b1 = nn.Parameter(torch.zeros(G, H))
            self.head_w2 = nn.Parameter(torch.randn(G, H, cfg.codes) / math.sqrt(H))
            self.head_b2 = nn.Parameter(torch.zeros(G, cfg.codes))
        else:
            self.regress = nn.Sequential(nn.Linear(cfg.width, cfg.head_hidden), nn.GELU(),
                                         nn.Linear(cfg.head_hidden, cfg.motion_dim))

    # -- inputs

    def embed_speech(self, speech: torch.Tensor) -> torch.Tensor:
        """(B, T, per_frame) ids or (B, T, dim) features -> (B, T, speech_embed)."""
        if self.config.speech_discrete:
            return self.speech(speech.long()).flatten(2)
        return self.speech(speech.float())

    def embed_codes(self, previous: torch.Tensor | None, layer: int | torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """R_{r-1}: (B, T, G * code_embed) from the indices of the layers before ``layer``.

        ``previous`` is (B, G, L, T); layers j < layer are summed (all L when ``layer`` is an
        int, per sample when it is a (B,) tensor). Zeros at layer 0, as the paper's zero matrix.
        """
        cfg = self.config
        if previous is None or previous.shape[2] == 0 or (isinstance(layer, int) and layer == 0):
            return self.project.weight.new_zeros(batch, frames, cfg.groups * cfg.code_embed)
        r = previous.shape[2]
        offset = (torch.arange(r, device=previous.device).view(1, 1, r, 1) * cfg.groups
                  + torch.arange(cfg.groups, device=previous.device).view(1, cfg.groups, 1, 1)) * cfg.codes
        emb = self.codes(previous.long() + offset)  # (B, G, L, T, e)
        if isinstance(layer, int):
            emb = emb[:, :, :layer].sum(2)
        else:
            keep = torch.arange(r, device=previous.device).view(1, r) < layer.view(-1, 1)  # (B, L)
            emb = (emb * keep[:, None, :, None, None]).sum(2)
        return emb.permute(0, 2, 1, 3).flatten(2)

    def forward(self, speech: torch.Tensor, controls: torch.Tensor, global_feature: torch.Tensor,
                layer: int | torch.Tensor = 0, previous: torch.Tensor | None = None,
                padding: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, G, T, codes) for residual layer ``layer`` (0-based), or for ``motion:
        vector`` the regressed motion (B, T, motion_dim).

        speech (B, T, ·); controls (B, T, 7) raw; global_feature (B, style_dim); ``layer`` an int
        or a (B,) tensor (one layer per sample, for training all layers in one pass); previous
        (B, G, L, T) indices whose layers j < layer form R_{r-1}; padding (B, T) True at padding.
        """
        cfg = self.config
        b, t = speech.shape[:2]
        if t > cfg.positions:
            raise WindowError(f"{t} frames exceed the {cfg.positions} trained positions (trained_window "
                              f"{cfg.trained_window}, max_len {cfg.max_len}): position rows past them were never "
                              "trained; use generate() or windowed_loss(), which run in overlapping windows")
        parts = [self.embed_speech(speech), self.controls((controls.float() - self.control_shift) / self.control_scale)]
        if cfg.motion == "grfsq":
            parts.append(self.embed_codes(previous, layer, b, t))
        frames = self.project(torch.cat(parts, -1))
        layers = layer if torch.is_tensor(layer) else torch.full((b,), layer, dtype=torch.long, device=frames.device)
        k = self.layer_indicator(layers.to(frames.device))
        x = torch.cat([self.global_feature(global_feature.float())[:, None], k[:, None], frames], 1)
        x = x + self.position.weight[: t + PREFIX]
        mask = None
        if padding is not None:
            mask = torch.cat([padding.new_zeros(b, PREFIX), padding], 1)
        h = self.encoder(x, src_key_padding_mask=mask)[:, PREFIX:]
        if cfg.motion == "vector":
            return self.regress(h)
        hidden = F.gelu(torch.einsum("btw,gwh->bgth", h, self.head_w1) + self.head_b1[None, :, None])
        return torch.einsum("bgth,ghc->bgtc", hidden, self.head_w2) + self.head_b2[None, :, None]

    # -- training

    def loss(self, speech, controls, global_feature, targets, padding=None, forward=None) -> tuple[torch.Tensor, dict]:
        """Teacher-forced loss in one forward pass.

        GRFSQ: targets (B, G, R, T); every layer r is predicted from the true indices of the
        layers before it (the batch is repeated R times with layer indicators 0..R-1); NLL
        summed over groups and frames, reported per token and averaged over layers. Vector:
        targets (B, T, motion_dim), MSE. ``forward`` is the module to call (a DDP wrapper).
        """
        cfg = self.config
        forward = forward or self
        b, t = speech.shape[:2]
        valid = speech.new_ones(b, t, dtype=torch.float32) if padding is None else (~padding).float()
        if cfg.motion == "vector":
            pred = forward(speech, controls, global_feature, padding=padding)
            mse = (((pred.float() - targets.float()) ** 2).mean(-1) * valid).sum() / valid.sum()
            return mse, {"mse": float(mse.detach())}
        R = cfg.residuals
        nll, logits, wanted = self._teacher_forced(forward, speech, controls, global_feature, targets, padding)
        mask = valid[None, :, None]
        per_layer = (nll * mask).sum((1, 2, 3)) / (valid.sum() * cfg.groups)
        acc = ((logits.argmax(-1) == wanted).float() * mask).sum((1, 2, 3)) / (valid.sum() * cfg.groups)
        terms = {"nll": float(per_layer.mean().detach())}
        for r in range(R):
            terms[f"nll_r{r + 1}"] = float(per_layer[r].detach())
            terms[f"acc_r{r + 1}"] = float(acc[r])
        return per_layer.mean(), terms

    # -- inference

    @torch.no_grad()
    def generate_window(self, speech, controls, global_feature) -> torch.Tensor:
        """Coarse to fine on one window: (B, G, R, T) indices (or (B, T, motion_dim))."""
        cfg = self.config
        if cfg.motion == "vector":
            return self(speech, controls, global_feature)
        previous = torch.zeros(speech.shape[0], cfg.groups, 0, speech.shape[1], dtype=torch.long, device=speech.device)
        for r in range(cfg.residuals):
            logits = self(speech, controls, global_feature, r, previous)
            previous = torch.cat([previous, logits.argmax(-1)[:, :, None]], 2)
        return previous

    @torch.no_grad()
    def generate(self, speech: torch.Tensor, controls: torch.Tensor, global_feature: torch.Tensor,
                 window: int | None = None, overlap: int | None = None) -> torch.Tensor:
        """Motion tokens for any length: (G, R, T) for one unbatched sequence (speech (T, ·),
        controls (T, 7), global_feature (style_dim,)), or the vector (T, motion_dim).

        Sequences longer than ``window`` (default and at most ``config.positions``, the trained
        window) are cut into windows that overlap by ``overlap`` frames (default window // 4);
        each frame is taken from the window in which it lies farthest from an edge (the first
        half of each overlap from the earlier window).
        """
        was_training = self.training
        self.eval()
        window, overlap = self._window(window, overlap)
        pieces = []
        for s, e, keep_from, keep_to in stitch_spans(speech.shape[0], window, overlap):
            out = self.generate_window(speech[None, s:e], controls[None, s:e], global_feature[None])[0]
            pieces.append(out[..., keep_from:keep_to] if self.config.motion == "grfsq" else out[keep_from:keep_to])
        self.train(was_training)
        return torch.cat(pieces, -1 if self.config.motion == "grfsq" else 0)

    def _window(self, window: int | None, overlap: int | None) -> tuple[int, int]:
        window = min(window or self.config.positions, self.config.positions)
        overlap = window // 4 if overlap is None else overlap
        if not 0 <= overlap < window:
            raise ValueError(f"overlap {overlap} must be in [0, window {window})")
        return window, overlap

    # -- held-out scoring of sequences of any length

    def frame_losses(self, speech, controls, global_feature, targets, padding=None, window: int | None = None,
                     overlap: int | None = None) -> torch.Tensor:
        """Teacher-forced loss of every frame of sequences of any length: (B, R, T) NLL per
        token (mean over the G groups) for layer r predicted from the true layers before it, or
        (B, T) MSE for ``motion: vector``. Scored in the same overlapping windows as
        ``generate`` (default: the trained window), each frame in the window in which it lies
        farthest from an edge, so no untrained position is read. Values at padding are
        meaningless. Inputs as ``loss``."""
        window, overlap = self._window(window, overlap)
        vector = self.config.motion == "vector"
        pieces = []
        for s, e, keep_from, keep_to in stitch_spans(speech.shape[1], window, overlap):
            pad = None if padding is None else padding[:, s:e]
            tgt = targets[:, s:e] if vector else targets[..., s:e]
            out = self._window_losses(speech[:, s:e], controls[:, s:e], global_feature, tgt, pad)
            pieces.append(out[..., keep_from:keep_to])
        return torch.cat(pieces, -1)

    def _window_losses(self, speech, controls, global_feature, targets, padding) -> torch.Tensor:
        cfg = self.config
        if cfg.motion == "vector":
            pred = self(speech, controls, global_feature, padding=padding)
            return ((pred.float() - targets.float()) ** 2).mean(-1)
        nll = self._teacher_forced(self, speech, controls, global_feature, targets, padding)[0]
        return nll.mean(2).permute(1, 0, 2)  # (B, R, T)

    def _teacher_forced(self, forward, speech, controls, global_feature, targets, padding):
        """Every residual layer r predicted from the true layers before it, in one pass (the
        batch repeated R times with layer indicators 0..R-1): NLL (R, B, G, T), the logits
        (R, B, G, T, codes) and the wanted indices (R, B, G, T)."""
        cfg = self.config
        b, t = speech.shape[:2]
        R = cfg.residuals
        rep = lambda x: None if x is None else x.repeat(R, *([1] * (x.dim() - 1)))  # noqa: E731
        layers = torch.arange(R, device=speech.device).repeat_interleave(b)
        logits = forward(rep(speech), rep(controls), rep(global_feature), layers, rep(targets), rep(padding))
        logits = logits.float().view(R, b, cfg.groups, t, cfg.codes)
        wanted = targets.long().permute(2, 0, 1, 3)  # (R, B, G, T)
        nll = F.cross_entropy(logits.flatten(0, 3), wanted.flatten(), reduction="none").view(R, b, cfg.groups, t)
        return nll, logits, wanted

    def windowed_loss(self, speech, controls, global_feature, targets, padding=None, window: int | None = None,
                      overlap: int | None = None) -> tuple[torch.Tensor, dict]:
        """``loss`` for sequences of any length (held-out clips): the mean of ``frame_losses``
        over the frames that are not padding; terms ``nll`` and ``nll_r{r}`` (or ``mse``)."""
        frames = self.frame_losses(speech, controls, global_feature, targets, padding, window, overlap)
        b, t = speech.shape[:2]
        valid = speech.new_ones(b, t, dtype=torch.float32) if padding is None else (~padding).float()
        if self.config.motion == "vector":
            mse = (frames * valid).sum() / valid.sum()
            return mse, {"mse": float(mse.detach())}
        per_layer = (frames * valid[:, None]).sum((0, 2)) / valid.sum()
        terms = {"nll": float(per_layer.mean().detach())}
        terms.update({f"nll_r{r + 1}": float(v) for r, v in enumerate(per_layer.detach())})
        return per_layer.mean(), terms


def window_starts(frames: int, window: int, overlap: int) -> list[int]:
    """Start frames of overlapping windows covering ``frames`` (the last one ends at ``frames``)."""
    if frames <= window:
        return [0]
    hop = window - overlap
    starts = list(range(0, frames - window, hop)) + [frames - window]
    return sorted(set(starts))


def stitch_spans(frames: int, window: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(start, end, keep_from, keep_to) of each window of ``window_starts``: the frames
    start+keep_from .. start+keep_to-1 are taken from that window, where they lie farthest
    from its edges (the first half of each overlap from the earlier window)."""
    starts = window_starts(frames, window, overlap)
    spans = []
    for i, s in enumerate(starts):
        e = min(s + window, frames)
        keep_from = 0 if i == 0 else (starts[i - 1] + window - s) // 2
        keep_to = e - s if i == len(starts) - 1 else (s + window - starts[i + 1]) // 2 + (starts[i + 1] - s)
        spans.append((s, e, keep_from, keep_to))
    return spans


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- configs

CONFIG_NAMES = ("generator-tiny", "generator-paper", "generator-c-c", "generator-d-c", "generator-c-d", "generator-d-d")


def load_generator_config(name_or_path: str) -> dict:
    """A stage-2 config (``model``, ``speech``, ``train``, ``data``) by name or YAML path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        config = yaml.safe_load(path.read_text())
    else:
        name = name_or_path if name_or_path.startswith("generator-") else f"generator-{name_or_path}"
        if name not in CONFIG_NAMES:
            raise FileNotFoundError(f"{name_or_path}: not a YAML file nor one of {', '.join(CONFIG_NAMES)}")
        config = yaml.safe_load((resources.files("talkbench.vqtalker") / "configs" / f"{name}.yaml").read_text())
    base = config.pop("base", None)
    return _merge(load_generator_config(base), config) if base else config


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, section by section (a config's ``base:`` key)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def build_generator(config: dict | GeneratorConfig) -> MotionGenerator:
    if isinstance(config, dict):
        config = GeneratorConfig.from_dict(config)
    return MotionGenerator(config)
