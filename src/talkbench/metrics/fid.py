"""FID: pytorch-fid's InceptionV3 (the TensorFlow FID graph ported to PyTorch; pool3, 2048-d)
and its Fréchet distance, over all generated frames of a benchmark vs all ground-truth frames.

Frames are turned into inputs exactly as pytorch-fid does for image files: uint8 → [0, 1]
(``ToTensor``), bilinear resize to 299×299 with ``align_corners=False``, then 2x − 1.
Statistics are running float64 sums (count, feature sum, outer-product sum) as in
torchmetrics, so partial states from many workers merge by addition and give the same
mean and (unbiased, like ``np.cov``) covariance as computing them on all features at once.
"""

from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn
from torchvision.models import inception as tv_inception

from talkbench import util, weights
from talkbench.errors import MetricError
from talkbench.metrics.base import DistributionMetric, MetricSpec, ModelSource, Need

VERSION = "1"
WEIGHTS = "inception-fid"
DIMS = 2048


def _avg_pool_without_pad(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool ignores the zero padding.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(tv_inception.InceptionA):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_without_pad(x))
        return torch.cat([b1, b5, b3, bp], 1)


class FIDInceptionC(tv_inception.InceptionC):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool_without_pad(x))
        return torch.cat([b1, b7, bd, bp], 1)


class FIDInceptionE(tv_inception.InceptionE):
    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__(in_channels)
        # The FID graph's last block max-pools where the paper's Inception averages.
        self.max_pool = max_pool

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool_without_pad(x)
        bp = self.branch_pool(pooled)
        return torch.cat([b1, b3, bd, bp], 1)


class FIDInception(nn.Module):
    """InceptionV3 up to pool3 with the FID graph's blocks; state-dict keys as pytorch-fid's."""

    def __init__(self, state_dict: dict | None = None):
        super().__init__()
        net = tv_inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
        net.Mixed_5b = FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        net.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        if state_dict is None:
            data = weights.read_verified(WEIGHTS)
            with weights.loading(WEIGHTS, "pytorch-fid's FID Inception state dict saved by torch.save"):
                net.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
        else:
            net.load_state_dict(state_dict)
        self.net = net
        self.layers = nn.Sequential(
            net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, nn.MaxPool2d(3, 2),
            net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(3, 2),
            net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a,
            net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e,
            net.Mixed_7a, net.Mixed_7b, net.Mixed_7c,
        )  # fmt: skip
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] → (N, 2048) pool3 features."""
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.layers(x.contiguous(memory_format=torch.channels_last))
        return x.mean(dim=(2, 3))


def random_state_dict(seed: int = 0) -> dict:
    """Random weights in the FID network's layout (its blocks patch only ``forward``, so
    torchvision's Inception3 has the same parameters), with non-trivial BatchNorm statistics.
    For equality tests and speed benchmarks where the published file cannot be downloaded."""
    torch.manual_seed(seed)
    # PyTorch's default initialisation, as pytorch-fid builds it (torchvision's truncated-normal
    # init makes activations explode without trained BatchNorm statistics).
    net = tv_inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return net.state_dict()


class OnnxFeatureExtractor:
    """The same network exported to ONNX and run by onnxruntime: its fused conv+BN+ReLU
    kernels are ~1.8x faster than torch eager on a 2-core CPU, and far steadier when the cores
    are shared; features stay within 1e-7 of the torch model (float32 reassociation only)."""

    def __init__(self, model: FIDInception, cache: Path | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        # Idle workers sleep instead of spinning: on shared cores spinning steals the time slices
        # the other workers need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = None
        if cache is not None and cache.is_file():
            # The cached export is not hash-checked like a weight file: it is used only when it
            # loads and computes what the verified torch model computes, else it is rebuilt.
            try:
                self.session = onnxruntime.InferenceSession(cache.read_bytes(), options, providers=["CPUExecutionProvider"])
            except Exception:  # unreadable or not ONNX: rebuilt below
                self.session = None
            if self.session is not None and not self._computes(model):
                self.session = None
        if self.session is None:
            buffer = io.BytesIO()
            torch.onnx.export(
                model, (torch.zeros(1, 3, 64, 64),), buffer, input_names=["x"], output_names=["features"],
                dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, dynamo=False, opset_version=17,
            )  # fmt: skip
            onnx_model = buffer.getvalue()
            if cache is not None:
                util.atomic_write_bytes(cache, onnx_model)
            self.session = onnxruntime.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])

    def _computes(self, model: FIDInception) -> bool:
        """Whether the session gives ``model``'s features on a fixed random probe."""
        probe = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            expected = model(probe).numpy()
        try:
            got = self(probe).numpy()
        except Exception:  # another graph: other input names or shapes
            return False
        return got.shape == expected.shape and bool(np.allclose(got, expected, rtol=1e-4, atol=1e-5))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"x": x.numpy()})[0])


def load_feature_extractor(state_dict: dict | None = None, runtime: str = "auto"):
    """The FID network for ``inception_features``: onnxruntime when it is installed (``runtime``
    "auto" or "onnxruntime"), else torch. The ONNX export of the published weights is cached
    beside the other talkbench caches, keyed by the weights' sha256."""
    model = FIDInception(state_dict)
    if runtime == "torch" or (runtime == "auto" and importlib.util.find_spec("onnxruntime") is None):
        return model
    cache = None
    if state_dict is None:
        cache = util.cache_dir("onnx") / f"fid-{weights.weight_sha256(WEIGHTS)[:16]}.onnx"
    return OnnxFeatureExtractor(model, cache)


def to_unit_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 → (T, 3, H, W) float32 in [0, 1], as torchvision's ToTensor."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255)


@torch.inference_mode()
def inception_features(model, frames: np.ndarray, batch: int = 32) -> np.ndarray:
    """pool3 features of uint8 RGB frames → (T, 2048) float64."""
    out = [model(to_unit_tensor(frames[i : i + batch])) for i in range(0, len(frames), batch)]
    return torch.cat(out).double().numpy() if out else np.zeros((0, DIMS))


@dataclass
class GaussianStats:
    """Running float64 sums of features; ``merge`` adds two partial states."""

    count: int
    total: np.ndarray  # (D,)
    outer: np.ndarray  # (D, D)

    @classmethod
    def empty(cls, dims: int = DIMS) -> GaussianStats:
        return cls(0, np.zeros(dims), np.zeros((dims, dims)))

    def update(self, features: np.ndarray) -> None:
        features = np.asarray(features, dtype=np.float64)
        self.count += len(features)
        self.total += features.sum(axis=0)
        self.outer += features.T @ features

    def update_weighted(self, features: np.ndarray, weights: np.ndarray) -> None:
        """Each row counted ``weights[i]`` times (a bootstrap resample, without copying rows)."""
        features = np.asarray(features, dtype=np.float64)
        weights = np.asarray(weights, dtype=np.float64)
        self.count += int(weights.sum())
        self.total += weights @ features
        self.outer += features.T @ (weights[:, None] * features)

    def merge(self, other: GaussianStats) -> GaussianStats:
        return GaussianStats(self.count + other.count, self.total + other.total, self.outer + other.outer)

    def mean_cov(self, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance; ``ddof=1`` as ``np.cov`` (pytorch-fid), 0 as StyleGAN-V's FVD."""
        if self.count < 2:
            raise ValueError(f"FID/FVD statistics need at least 2 samples, have {self.count}")
        mu = self.total / self.count
        cov = (self.outer - self.count * np.outer(mu, mu)) / (self.count - ddof)
        return mu, cov

    def to_npz(self, path: str | Path) -> None:
        """Write the sums to ``path`` (``.npz`` appended when missing, as ``np.savez`` does)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        util.save_arrays(path, {"count": np.array(self.count), "total": self.total, "outer": self.outer})

    @classmethod
    def from_npz(cls, path: str | Path) -> GaussianStats:
        data = util.load_arrays(path)
        if data is None or not {"count", "total", "outer"} <= set(data):
            raise MetricError(f"{path}: not a readable FID/FVD statistics file (count, total, outer)")
        return cls(int(data["count"]), data["total"], data["outer"])


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between two Gaussians, computed as pytorch-fid's
    ``calculate_frechet_distance`` (including its singular-product fallback)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))  # pytorch-fid passes disp=False, deprecated in SciPy 1.16
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance_eigh(mu1, sigma1, mu2, sigma2) -> float:
    """The Fréchet distance with tr √(Σ1Σ2) from symmetric eigendecompositions: Σ1Σ2 is similar
    to Σ1^½ Σ2 Σ1^½, which is symmetric positive semi-definite, so the trace of its square root
    is the sum of the square roots of its eigenvalues. Equal to ``frechet_distance`` for
    covariances (to rounding), and ~20× faster at 2048²: the bootstrap replicates use it."""
    values, vectors = linalg.eigh(sigma1)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = linalg.eigvalsh(root @ sigma2 @ root)
    diff = np.atleast_1d(mu1) - np.atleast_1d(mu2)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(np.clip(middle, 0, None)).sum())


def fid_from_stats(generated: GaussianStats, reference: GaussianStats) -> float:
    mu1, s1 = generated.mean_cov()
    mu2, s2 = reference.mean_cov()
    return frechet_distance(mu1, s1, mu2, s2)


class FID(DistributionMetric):
    spec = MetricSpec("fid", VERSION, "distribution", ("fid",), False, frozenset({Need.REFERENCE}), (WEIGHTS,),
                      description="FID pool3")
    dims = DIMS

    def protocol_fields(self) -> dict:
        return {"fid_frame_stride": self.settings.fid_frame_stride}

    def load(self, models: ModelSource) -> None:
        self.model = models.get("fid", load_feature_extractor, self.weights())

    def feature_rows(self, frames: np.ndarray, start: int) -> np.ndarray:
        stride = self.settings.fid_frame_stride
        first = (-start) % stride  # frame indices 0, stride, 2·stride … of the whole clip
        return inception_features(self.model, frames[first::stride])

    def distance(self, generated: GaussianStats, reference: GaussianStats) -> float:
        return fid_from_stats(generated, reference)

    def resampled_distance(self, generated: GaussianStats, reference: GaussianStats) -> float:
        return frechet_distance_eigh(*generated.mean_cov(), *reference.mean_cov())
