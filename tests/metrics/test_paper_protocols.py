"""Named protocols: one per paper table, each fixing what its numbers depend on."""

import subprocess
import sys

import pytest

from talkbench.leaderboard.paper import TABLES
from talkbench.metrics.paper_protocols import (available_protocols, expected_protocol, get_protocol,
                                               protocol_differences, protocol_for_table, protocol_settings)
from talkbench.metrics.registry import available_metrics
from talkbench.metrics.settings import SettingsError


@pytest.mark.parametrize("key", ["vqtalker:1", "vqtalker:2", "vqtalker:3", "vqtalker:4", "flowvqtalker:1"])
def test_every_measurable_paper_table_has_a_protocol_covering_its_metric_columns(key):
    protocol = protocol_for_table(key)
    table = next(t for t in TABLES if t.key == key)
    assert protocol is not None and protocol.settings.protocol_name == protocol.name
    assert set(protocol.settings.metrics) <= set(available_metrics())
    assert {c.key for c in table.metrics} == set(protocol.columns)  # every metric column has its value
    assert not any(c.value == "csim_dlib" for c in protocol.columns.values())  # dlib never fills CSIM
    assert protocol.settings.resolution == 256 and protocol.settings.fvd_sampling == "stylegan-v"


def test_a_paper_protocol_refuses_a_choice_that_changes_its_numbers():
    with pytest.raises(SettingsError, match="vqtalker-t2-v1 fixes identity_backend = 'arcface'"):
        protocol_settings("vqtalker-t2", identity_backend="dlib")
    with pytest.raises(SettingsError, match="has no metric msi"):
        protocol_settings("vqtalker-t2", "ssim,msi")
    subset = protocol_settings("vqtalker-t2", "ssim,cpbd", seed=3, identity_backend="arcface")
    assert subset.metrics == ("ssim", "cpbd") and subset.seed == 3 and subset.protocol_name == "vqtalker-t2-v1"
    assert protocol_settings("talkbench", identity_backend="arcface").identity_backend == "arcface"
    with pytest.raises(SettingsError, match="unknown protocol 'vqtalker-t9'"):
        get_protocol("vqtalker-t9")
    assert get_protocol("flowvqtalker-t1-v1") is get_protocol("flowvqtalker-t1")
    assert "talkbench" in available_protocols()


def test_differences_name_the_fields_a_run_does_not_share():
    protocol = get_protocol("vqtalker-t2")
    under = expected_protocol(protocol)
    assert under["name"] == "vqtalker-t2-v1" and under["identity_backend"] == "arcface"
    assert protocol_differences(under, protocol) == []
    run = {**under, "fvd_sampling": "consecutive", "metric_versions": {**under["metric_versions"], "lmd": "0"}}
    assert protocol_differences(run, protocol) == ["fvd_sampling", f"lmd v0≠v{under['metric_versions']['lmd']}"]


def test_cli_names_the_fixed_field_without_a_traceback(tmp_path):
    video = tmp_path / "x.mp4"
    video.write_bytes(b"0")
    result = subprocess.run([sys.executable, "-m", "talkbench", "eval", "-g", str(video), "-r", str(video),
                             "--protocol", "flowvqtalker-t1", "--face-backend", "fan"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "flowvqtalker-t1-v1 fixes face_backend = 'dlib'" in result.stderr


def test_a_run_of_some_of_the_protocols_metrics_is_under_it():
    protocol = get_protocol("vqtalker-t2")
    subset = expected_protocol(protocol, ("ssim", "cpbd"))
    assert subset["identity_backend"] is None and subset["fvd_sampling"] is None  # no CSIM, no FVD run
    assert protocol_differences(subset, protocol) == []
    outside = expected_protocol(protocol, ("ssim", "cpbd", "msi"))  # MSI brings the face backend along
    assert protocol_differences(outside, protocol) == ["metrics msi"]
    other_table = expected_protocol(get_protocol("vqtalker-t2"))  # its CSIM and FVD fields are not differences
    assert protocol_differences(other_table, get_protocol("flowvqtalker-t1")) == ["name", "metrics csim, fvd"]
    assert protocol_differences({**subset, "metric_versions": {"msi": "2"}}, protocol) == ["metrics msi"]


def test_the_seed_is_pinned_where_it_draws_fvd_clips():
    protocol = get_protocol("vqtalker-t2")
    with_fvd = expected_protocol(protocol, ("ssim", "fvd"))
    assert protocol_differences({**with_fvd, "seed": 3}, protocol) == ["seed"]
    without = expected_protocol(protocol, ("ssim",))
    assert protocol_differences({**without, "seed": 3}, protocol) == []  # bootstrap intervals only
    with pytest.raises(SettingsError, match="fixes seed = 0"):
        protocol_settings("vqtalker-t2", seed=3)
    assert protocol_settings("vqtalker-t2", "ssim,cpbd", seed=3).seed == 3


def test_a_choice_equal_to_the_protocols_effective_value_is_accepted():
    assert protocol_settings("vqtalker-t2", csim_frame_stride=1).csim_stride() == 1  # ArcFace: every frame
    assert protocol_settings("flowvqtalker-t1", identity_backend="dlib").metrics  # no CSIM: nothing it fixes
    assert protocol_settings("vqtalker-t2", "ssim,cpbd", csim_frame_stride=5).metrics == ("ssim", "cpbd")
    with pytest.raises(SettingsError, match="fixes csim_frame_stride = 1"):
        protocol_settings("vqtalker-t2", csim_frame_stride=5)
    with pytest.raises(SettingsError, match="names no metric"):
        protocol_settings("vqtalker-t2", " , ")
