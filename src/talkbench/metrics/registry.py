"""The metrics by name. A name means one metric at one version: registering a name twice is an
error, so two modules can never silently disagree about what ``ssim`` is.

Adding a metric is one module with a ``Metric`` subclass (see ``talkbench.metrics.base``) and
one line below.
"""

from __future__ import annotations

from talkbench.metrics import bitrate, cpbd, csim, emotion, fid, fvd, lmd, lpips, lse, msi, ssim, utilisation
from talkbench.metrics.base import Metric, MetricSpec
from talkbench.metrics.settings import SettingsError
from talkbench.util import Registry


METRICS: Registry[type[Metric]] = Registry(kind="metric", error=SettingsError)  # a ValueError too


def register_metric(metric: type[Metric]) -> type[Metric]:
    return METRICS.register(metric.spec.name, metric)


def unregister_metric(name: str) -> None:
    """Remove a metric (a plugin's, or a test's); unknown names are an error."""
    METRICS.unregister(name)


def metric_class(name: str) -> type[Metric]:
    return METRICS.get(name)


def get_metric(name: str) -> MetricSpec:
    return metric_class(name).spec


def available_metrics() -> list[str]:
    return METRICS.names()


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


def value_higher_is_better(value: str) -> bool:
    """Whether a larger ``value`` is better: a value name (``lse_d``, ``csim_arcface``) or a metric
    name, read from the declaring metric's ``MetricSpec.higher_is_better_for`` (the single
    source of directions). An undeclared name is an error (the registry's)."""
    for name in available_metrics():
        spec = get_metric(name)
        if value in spec.values or value == name:
            return spec.higher_is_better_for(value)
    raise METRICS.error(f"{value!r} is no registered metric's value; known: "
                        f"{', '.join(sorted({v for n in available_metrics() for v in (n, *get_metric(n).values)}))}")
