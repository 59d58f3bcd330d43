"""The metrics by name. A name means one metric at one version: registering a name twice is an
error, so two modules can never silently disagree about what ``ssim`` is."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from talkbench.metrics import bitrate, cpbd, csim, fid, fvd, lmd, lpips, msi, ssim, utilisation


@dataclass(frozen=True)
class MetricSpec:
    name: str
    version: str
    kind: str  # "paired" (needs the ground truth), "no-reference", "distribution", "offline"
    values: tuple[str, ...]  # the value names it reports
    higher_is_better: bool
    needs_face: bool = False
    weights: tuple[str, ...] = ()
    description: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


_METRICS: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    if spec.name in _METRICS:
        raise ValueError(f"metric {spec.name!r} is already registered")
    _METRICS[spec.name] = spec
    return spec


def get_metric(name: str) -> MetricSpec:
    try:
        return _METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(sorted(_METRICS))}") from None


def available_metrics() -> list[str]:
    return sorted(_METRICS)


register_metric(MetricSpec("ssim", ssim.VERSION, "paired", ("ssim",), True, description="SSIM, RGB, Gaussian σ=1.5"))
register_metric(
    MetricSpec("lpips", lpips.VERSION, "paired", ("lpips",), False, weights=lpips.WEIGHTS, description="LPIPS AlexNet v0.1")
)
register_metric(
    MetricSpec(
        "csim", csim.VERSION, "no-reference", ("csim_dlib", "csim_arcface"), True, needs_face=True,
        description="identity cosine similarity vs source portrait or ground-truth frame; value named by backend",
    )
)  # fmt: skip
register_metric(
    MetricSpec(
        "lmd", lmd.VERSION, "paired", ("lmd", "f_lmd", "m_lmd", "f_lmd_iod", "m_lmd_iod"), False, needs_face=True,
        description="mean-centred 68-point landmark distance, pixels at eval resolution; *_iod / inter-ocular",
    )
)  # fmt: skip
register_metric(MetricSpec("cpbd", cpbd.VERSION, "no-reference", ("cpbd",), True, description="CPBD sharpness"))
register_metric(
    MetricSpec(
        "msi", msi.VERSION, "no-reference", ("msi", "msi_face"), True, needs_face=True,
        description="1 / (1 + variance of landmark acceleration); px and % of face size",
    )
)  # fmt: skip
register_metric(
    MetricSpec("fid", fid.VERSION, "distribution", ("fid",), False, weights=(fid.WEIGHTS,), description="FID pool3")
)
register_metric(
    MetricSpec(
        "fvd", fvd.VERSION, "distribution", ("fvd",), False, weights=(fvd.WEIGHTS,),
        description="FVD, StyleGAN-V protocol (I3D, 16-frame clips, 224 px)",
    )
)  # fmt: skip
register_metric(
    MetricSpec("bitrate", bitrate.VERSION, "no-reference", ("bitrate_kbps",), False, description="measured video bitrate")
)
register_metric(
    MetricSpec(
        "utilisation", utilisation.VERSION, "offline", ("utilisation",), True,
        description="codebook utilisation from code indices (not a video metric; call utilisation())",
    )
)  # fmt: skip
