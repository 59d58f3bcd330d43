"""The metrics by name. A name means one metric at one version: registering a name twice is an
error, so two modules can never silently disagree about what ``ssim`` is.

Adding a metric is one module with a ``Metric`` subclass (see ``talkbench.metrics.base``) and
one line below.
"""

from __future__ import annotations

from talkbench.metrics import bitrate, cpbd, csim, emotion, fid, fvd, lmd, lpips, lse, msi, ssim, utilisation
from talkbench.metrics.base import Metric, MetricSpec

_METRICS: dict[str, type[Metric]] = {}


def register_metric(metric: type[Metric]) -> type[Metric]:
    name = metric.spec.name
    if name in _METRICS:
        raise ValueError(f"metric {name!r} is already registered")
    _METRICS[name] = metric
    return metric


def unregister_metric(name: str) -> None:
    """Remove a metric (a plugin's, or a test's); unknown names are an error."""
    metric_class(name)
    del _METRICS[name]


def metric_class(name: str) -> type[Metric]:
    try:
        return _METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(sorted(_METRICS))}") from None


def get_metric(name: str) -> MetricSpec:
    return metric_class(name).spec


def available_metrics() -> list[str]:
    return sorted(_METRICS)


register_metric(ssim.SSIM)
register_metric(lpips.LPIPSMetric)
register_metric(csim.CSIM)
register_metric(lmd.LMD)
register_metric(cpbd.CPBD)
register_metric(msi.MSI)
register_metric(fid.FID)
register_metric(fvd.FVD)
register_metric(bitrate.Bitrate)
register_metric(utilisation.Utilisation)
register_metric(emotion.EmotionAccuracy)
register_metric(lse.LSE)
