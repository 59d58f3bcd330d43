import pytest

from talkbench.metrics.registry import MetricSpec, available_metrics, get_metric, register_metric
from talkbench.protocol import Protocol


def test_every_metric_of_the_issue_is_registered():
    assert {"ssim", "lpips", "csim", "lmd", "cpbd", "fid", "fvd", "msi", "bitrate", "utilisation"} <= set(available_metrics())


def test_registry_rejects_duplicate_names():
    with pytest.raises(ValueError, match="already registered"):
        register_metric(MetricSpec("ssim", "2", "paired", ("ssim",), True))
    with pytest.raises(ValueError, match="unknown metric 'sharpness'"):
        get_metric("sharpness")


def test_protocol_hash_is_stable_and_covers_settings():
    a = Protocol(metric_versions={"ssim": "1"}, weights_sha256={"x": "ab"})
    b = Protocol(weights_sha256={"x": "ab"}, metric_versions={"ssim": "1"})
    assert a.sha256() == b.sha256() and a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    assert Protocol().sha256() == Protocol.from_dict(Protocol().to_dict()).sha256()
    # Pinned: a change to the defaults or the canonical JSON makes every stored result
    # incomparable, so it must be a deliberate new protocol, not an accident.
    assert Protocol().sha256() == "53292e57e93b626a8af3e4d1bd15315177b35a4262ec1d363ead9acb5481d5ba"
    changed = Protocol(metric_versions={"ssim": "1"}, weights_sha256={"x": "ab"}, resolution=512)
    assert changed.sha256() != a.sha256()
    assert a.differences(changed) == ["resolution"]


def test_version_and_frame_counts_are_recorded_but_not_hashed():
    a = Protocol(talkbench_version="0.1.0", frame_counts={"c": {"generated": 10}})
    b = Protocol(talkbench_version="0.2.0", frame_counts={})
    assert a.sha256() == b.sha256()
    assert a.to_dict()["frame_counts"] == {"c": {"generated": 10}}


def test_unknown_protocol_fields_are_refused():
    with pytest.raises(ValueError, match="unknown protocol fields: colour"):
        Protocol.from_dict({"colour": "red"})
