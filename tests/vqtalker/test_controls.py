"""Controls (head pose, gaze, blink) on real shared clips and on exact synthetic geometry.

The frame numbers below were checked by eye on crops of the eye region: liveportrait_d11 closes
its eyes around frames 148-156 and liveportrait_d12 around 48-50 (wide open at the reference frames);
liveportrait_d0 looks straight at frame 2, to the image right at 15 and to the image left at 35;
liveportrait_d12 turns its head left and right.
"""

from __future__ import annotations

import numpy as np
import pytest

from talkbench import media
from talkbench.vqtalker import controls as C


def _frames(path, wanted):
    wanted = set(wanted)
    return [f for i, f in enumerate(media.iter_frames(path)) if i in wanted]


def _rotation(yaw, pitch, roll):
    y, p, r = np.radians([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.mark.parametrize("angles", [(0, 0, 0), (20, -10, 5), (-35, 12, -8)])
def test_head_pose_recovers_a_known_rotation(angles):
    """Project the template with a known pose, put it in a 68-point array, solve it back."""
    import cv2

    w = h = 512
    cam = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1.0]])
    rvec, _ = cv2.Rodrigues(_rotation(*angles))
    pts, _ = cv2.projectPoints(C.TEMPLATE_3D, rvec, np.array([10.0, -20.0, 2500.0]), cam, None)
    landmarks = np.zeros((68, 2), np.float32)
    landmarks[list(C.POSE_LANDMARKS)] = pts.reshape(-1, 2)
    np.testing.assert_allclose(C.head_pose(landmarks, w, h), angles, atol=0.5)


@pytest.mark.shared_data
def test_blink_openness_drops_when_the_eyes_close(shared_data):
    for name, closed, open_ in (("liveportrait_d11", [148, 150, 155], [20, 140, 200]),
                                ("liveportrait_d12", [49, 50], [40, 120])):
        frames = _frames(shared_data / "video" / f"{name}.mp4", closed + open_)
        b = C.frames_controls(frames).blink.mean(axis=1)  # both eyes, frame order = sorted indices
        order = sorted(closed + open_)
        closed_b = np.array([b[order.index(i)] for i in closed])
        open_b = np.array([b[order.index(i)] for i in open_])
        assert closed_b.max() < 0.65 * open_b.min(), (name, closed_b, open_b)
        assert 0.2 < open_b.min() < 0.6  # an open eye: height ~ 1/4 .. 1/2 of its width


@pytest.mark.shared_data
def test_pose_varies_with_a_turning_head_and_not_with_a_still_one(shared_data, sample_clips):
    turning = C.frames_controls(_frames(shared_data / "video" / "liveportrait_d12.mp4", range(0, 183, 6)))
    still = C.frames_controls(_frames(sample_clips[6].video, range(0, 95, 6)))  # en_001: slow sway
    assert np.ptp(turning.pose[:, 0]) > 25, turning.pose[:, 0]
    assert np.ptp(still.pose[:, 0]) < 8, still.pose[:, 0]
    assert np.abs(still.pose).max() < 15  # a frontal portrait: all three angles small


@pytest.mark.shared_data
def test_gaze_follows_the_iris(shared_data):
    g = C.frames_controls(_frames(shared_data / "video" / "liveportrait_d0.mp4", [2, 15, 35])).gaze
    assert abs(g[0, 0]) < 0.1
    assert g[1, 0] > 0.25  # iris towards the image right
    assert g[2, 0] < -0.25  # towards the image left


def test_clip_controls_are_per_frame_and_cached(sample_clips, tmp_path):
    clip = sample_clips[6]
    first = C.clip_controls(clip.video, cache_dir=tmp_path)
    frames = round(clip.duration * 25)  # samples.json's duration at 25 fps (en_001: 4.93 s, 123)
    assert len(first) == media.frame_count_at(media.probe(clip.video)) == frames
    assert first.stacked().shape == (frames, C.CONTROL_DIM)
    assert first.found.all()
    cached = list(tmp_path.rglob("controls_v*.npz"))
    assert len(cached) == 1
    again = C.clip_controls(clip.video, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.stacked(), again.stacked())
    # The sample generator blinks; openness dips well below its median somewhere in the clip.
    b = first.blink.mean(axis=1)
    assert b.min() < 0.7 * np.median(b)
    assert len(first.resized(120)) == 120 and len(first.resized(10)) == 10


def test_no_face_gives_neutral_controls():
    c = C.image_controls(np.full((256, 256, 3), 127, np.uint8), frames=5)
    assert len(c) == 5 and not c.found.any()
    np.testing.assert_array_equal(c.pose, 0)
    np.testing.assert_array_equal(c.gaze, 0)
    np.testing.assert_allclose(c.blink, C.OPEN_EYE_RATIO)
