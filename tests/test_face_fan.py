"""The FAN landmark backend equals face-alignment 1.5.0 given the same weights and face boxes.

The real 2DFAN4 weights cannot be fetched here, so both sides get the same random weights:
face-alignment finds them where its loader looks (the torch-hub checkpoints folder, under the
published file name), ours receives the same state dict. Everything between the box and the 68
points (crop, network, heatmap decoding, inverse transform) must then agree exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talkbench import media
from talkbench.face import get_backend
from talkbench.face.fan_backend import FAN, FanBackend, load_fan

face_alignment = pytest.importorskip("face_alignment", reason="face-alignment is a test dependency (make test)")


@pytest.fixture(scope="module")
def random_fan(tmp_path_factory):
    """A random 2DFAN4 state dict saved under its published name in a private torch-hub dir."""
    from face_alignment.models import FAN as ReferenceFAN

    torch.manual_seed(0)
    reference = ReferenceFAN(4)
    for module in reference.modules():  # non-trivial BatchNorm statistics, as trained weights have
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    hub = tmp_path_factory.mktemp("hub")
    path = hub / "checkpoints" / "2DFAN4-11f355bf06.pth.tar"
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    return hub, path


@pytest.fixture(scope="module")
def both(random_fan):
    hub, path = random_fan
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    try:
        reference = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device="cpu",
                                                 face_detector="dlib", flip_input=False, compile=False)
    finally:
        torch.hub.set_dir(previous)
    return reference, FanBackend(network=load_fan(path), weights_file=path)


def test_architecture_has_face_alignments_state_dict_keys(random_fan):
    _, path = random_fan
    reference = torch.load(path, weights_only=True)
    ours = FAN(4).state_dict()
    assert list(ours) == list(reference) and all(ours[k].shape == reference[k].shape for k in ours)


def _assert_landmarks_equal(both, frames) -> None:
    reference, ours = both
    dlib = get_backend("dlib")
    for frame in frames:
        boxes = dlib.detect(frame)
        assert boxes, "the test frames all show a face"
        box = boxes[0]
        rect = [int(round(v)) for v in (box.left, box.top, box.right, box.bottom)]
        expected = reference.get_landmarks_from_image(frame, detected_faces=[rect])[0]
        got = ours.landmarks(frame, box)
        assert got.shape == (68, 2)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
def test_landmarks_equal_face_alignment_given_the_same_weights_and_boxes(both, sample_clips):
    frames = [next(media.iter_frames(c.video, size=256)) for c in sample_clips[:3]]
    assert len(frames) == 3
    _assert_landmarks_equal(both, frames)


@pytest.mark.slow
@pytest.mark.shared_data
def test_landmarks_equal_face_alignment_on_real_hdtf_and_talking_frames(both, shared_data):
    """The same on real frames at their own size: an HDTF crop (512 px) and a retalking clip."""
    frames = [next(media.iter_frames(shared_data / "video" / name))
              for name in ("WDA_KatieHill_000.mp4", "retalking_2.mp4")]
    _assert_landmarks_equal(both, frames)


def test_fan_weights_come_from_the_weights_manager(tmp_path, monkeypatch, random_fan):
    from talkbench import weights
    from talkbench.errors import WeightsError

    monkeypatch.setenv(weights.ENV_CACHE_DIR, str(tmp_path / "cache"))
    assert weights.get_spec("fan-2d").url.endswith("2DFAN4-11f355bf06.pth.tar")
    with pytest.raises(WeightsError, match="talkbench weights fetch fan-2d"):
        FanBackend()
    _, random_file = random_fan  # a file whose sha256 does not start with 11f355bf06
    with pytest.raises(WeightsError, match="sha256"):
        weights.import_file("fan-2d", random_file)


def test_engine_reports_fan_metrics_unavailable_without_weights(tmp_path, monkeypatch, sample_clips):
    from talkbench import weights
    from talkbench.metrics.engine import EvalSettings, evaluate_pair

    monkeypatch.setenv(weights.ENV_CACHE_DIR, str(tmp_path / "cache"))
    clip = sample_clips[0]
    result = evaluate_pair(clip.video, clip.video, settings=EvalSettings(metrics=("ssim", "lmd"), face_backend="fan"))
    assert "talkbench weights fetch fan-2d" in result.unavailable["lmd"]
    assert result.clips[0].values["ssim"] == pytest.approx(1.0)
    assert result.protocol.face_backend == "fan"
