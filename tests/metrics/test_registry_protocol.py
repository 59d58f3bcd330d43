import pytest

from talkbench.metrics import registry
from talkbench.metrics.base import Batch, FrameMeans, Metric, MetricSpec, Need
from talkbench.metrics.registry import available_metrics, get_metric, register_metric
from talkbench.protocol import Protocol


def test_every_metric_of_the_issue_is_registered():
    assert {"ssim", "lpips", "csim", "lmd", "cpbd", "fid", "fvd", "msi", "bitrate", "utilisation"} <= set(available_metrics())


def test_registry_rejects_duplicate_names():
    class OtherSSIM(Metric):
        spec = MetricSpec("ssim", "2", "clip", ("ssim",), True)

    with pytest.raises(ValueError, match="already registered"):
        register_metric(OtherSSIM)
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
    assert Protocol().sha256() == "fea024a94da65217f91c5d82868bf4df8d212937a61cbc7841d9313cbb4406b8"
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


class MouthOpening(Metric):
    """A new metric, written as a user would: one class, its needs declared."""

    spec = MetricSpec("mouth-opening", "1", "clip", ("mouth_opening",), True, frozenset({Need.FACES}),
                      description="mean inner-lip gap in pixels")

    def update(self, state: FrameMeans, batch: Batch) -> None:
        lips = batch.faces.landmarks[batch.faces.valid]
        state.add("mouth_opening", abs(lips[:, 66, 1] - lips[:, 62, 1]))


def test_a_new_metric_is_one_class_and_one_registry_line(sample_clips, request):
    """The engine gives a registered metric what it declared (here the face track) and reports
    it like the built-in ones; no engine change."""
    from talkbench import media
    from talkbench.face import get_backend
    from talkbench.metrics.analysis import analyse_frames
    from talkbench.metrics.engine import EvalSettings, evaluate_pair

    register_metric(MouthOpening)
    request.addfinalizer(lambda: registry.unregister_metric("mouth-opening"))
    frames = media.read_frames(sample_clips[0].video, size=256)[:40]
    result = evaluate_pair(frames, None, settings=EvalSettings(metrics=("mouth-opening", "cpbd")))
    track = analyse_frames(frames, get_backend("dlib"))
    lips = track.landmarks[track.valid]
    assert result.clips[0].values["mouth_opening"] == pytest.approx(abs(lips[:, 66, 1] - lips[:, 62, 1]).mean())
    assert result.protocol.metric_versions == {"mouth-opening": "1", "cpbd": "1"}
    assert result.protocol.face_backend == "dlib"  # a face metric ran: the face models are recorded
    assert result.clips[0].faces["mouth-opening_frames"] == int(track.valid.sum())


def test_each_value_has_its_own_direction():
    from talkbench.leaderboard.ranking import higher_is_better

    lse = get_metric("lse")
    assert lse.higher_is_better_for("lse_c") and not lse.higher_is_better_for("lse_d")
    assert higher_is_better("lse_c") and not higher_is_better("lse_d") and not higher_is_better("m_lmd")


def test_value_directions_come_from_the_metric_declarations():
    from talkbench.errors import TalkbenchError

    assert registry.value_higher_is_better("lse_c") and not registry.value_higher_is_better("lse_d")
    assert registry.value_higher_is_better("ssim") and not registry.value_higher_is_better("lpips")
    assert not registry.value_higher_is_better("m_lmd") and not registry.value_higher_is_better("fid")
    assert registry.value_higher_is_better("csim")  # a metric name: its declared direction
    with pytest.raises(TalkbenchError, match="'sharpness' is no registered metric's value; known: .*lse_d"):
        registry.value_higher_is_better("sharpness")
