import itertools

import numpy as np
import pytest

from talkbench import media
from talkbench.face import get_backend
from talkbench.metrics.analysis import analyse_frames
from talkbench.metrics.lmd import lmd_values, point_distance

from tests.metrics.reference import eat_lmd


@pytest.fixture
def face():
    rng = np.random.default_rng(0)
    points = rng.uniform(80, 180, (5, 68, 2))
    points[:, 36] = [100, 120]
    points[:, 45] = [160, 120]  # inter-ocular distance 60
    return points


def eat_reference(generated, reference, valid=None):
    """EAT's script on shapes, None where a frame has no face."""
    valid = np.ones(len(generated), bool) if valid is None else valid
    shapes = lambda track: [s if ok else None for s, ok in zip(track, valid)]  # noqa: E731
    return eat_lmd.get_lmd(shapes(generated), shapes(reference))


def test_identical_faces_have_zero_distance(face):
    assert lmd_values(face, face) == {"lmd": 0, "m_lmd": 0, "f_lmd": 0}


def test_translation_counts_for_lmd_and_is_centred_away_for_m_and_f_lmd(face):
    values = lmd_values(face + [3.0, 4.0], face)  # every point 5 px away
    assert values["lmd"] == pytest.approx(5 / 60)  # uncentred, in inter-ocular distances
    assert values["m_lmd"] == pytest.approx(0, abs=1e-12) and values["f_lmd"] == pytest.approx(0, abs=1e-12)


def test_lmd_is_resolution_free_m_and_f_lmd_are_pixels(face):
    rng = np.random.default_rng(1)
    moved = face + rng.normal(scale=2.0, size=face.shape)
    half, full = lmd_values(moved / 2, face / 2), lmd_values(moved, face)
    assert half["lmd"] == pytest.approx(full["lmd"], rel=1e-12)
    assert half["f_lmd"] == pytest.approx(full["f_lmd"] / 2, rel=1e-12)
    assert half["m_lmd"] == pytest.approx(full["m_lmd"] / 2, rel=1e-12)


def test_known_mouth_opening(face):
    opened = face.copy()
    opened[:, 57:60, 1] += 4.0  # three lower-lip points drop 4 px
    values = lmd_values(opened, face)
    # m_lmd: centring on the mouth's own mean moves every mouth point up by 3*4/20 = 0.6 px:
    # 17 points end 0.6 px off, the three moved ones 3.4 px
    assert values["m_lmd"] == pytest.approx((17 * 0.6 + 3 * 3.4) / 20)
    # f_lmd: centring on all 68 moves every point by 3*4/68: 65 points off by 12/68, 3 by 4 - 12/68
    assert values["f_lmd"] == pytest.approx((65 * 12 / 68 + 3 * (4 - 12 / 68)) / 68)
    assert values["lmd"] == pytest.approx(3 * 4 / 68 / 60)  # uncentred: only the three moved


def test_m_and_f_lmd_equal_eats_script_on_random_tracks():
    rng = np.random.default_rng(2)
    reference = rng.uniform(40, 220, (30, 68, 2)).round()  # dlib gives whole pixels
    generated = reference + rng.normal(scale=3.0, size=reference.shape).round()
    mouth, full = eat_reference(generated, reference)
    values = lmd_values(generated, reference)
    assert values["m_lmd"] == pytest.approx(mouth, rel=1e-12)
    assert values["f_lmd"] == pytest.approx(full, rel=1e-12)


def test_m_and_f_lmd_equal_eats_script_on_real_faces(real_frames, other_frames):
    """Two real people at 256 px, dlib landmarks, a frame without a face in each clip."""
    backend = get_backend("dlib")
    blank = np.zeros_like(real_frames[:1])
    reference = analyse_frames(np.concatenate([real_frames, blank]), backend)
    generated = analyse_frames(np.concatenate([blank, other_frames]), backend)
    both = reference.valid & generated.valid
    assert both.sum() == len(real_frames) - 1  # the blank frames drop out, one each
    mouth, full = eat_reference(generated.landmarks, reference.landmarks, both)
    values = lmd_values(generated.landmarks[both], reference.landmarks[both])
    assert values["m_lmd"] == pytest.approx(mouth, rel=1e-12)
    assert values["f_lmd"] == pytest.approx(full, rel=1e-12)
    assert 2 < values["f_lmd"] < 40 and 0.05 < values["lmd"] < 2  # another person is far away


def test_shape_mismatch_is_an_error(face):
    with pytest.raises(ValueError, match="equal landmark shapes"):
        point_distance(face[:2], face[:3])


@pytest.mark.shared_data
def test_real_clip_against_a_shifted_and_a_reencoded_copy(shared_data, tmp_path):
    """An HDTF clip at 256 px: a 2-px shift costs lmd about 2√2 / inter-ocular and leaves the
    centred forms at landmark noise; a CRF 35 re-encode stays at landmark noise everywhere."""
    frames = np.stack(list(itertools.islice(media.iter_frames(shared_data / "video" / "WDA_KatieHill_000.mp4",
                                                               size=256), 50)))  # fmt: skip
    shifted = np.pad(frames, ((0, 0), (2, 0), (2, 0), (0, 0)), mode="edge")[:, :256, :256]
    media.write_video(tmp_path / "crf35.mp4", frames, crf=35)
    reencoded = media.read_frames(tmp_path / "crf35.mp4", size=256)[: len(frames)]
    backend = get_backend("dlib")
    truth = analyse_frames(frames, backend)
    assert truth.valid.all()
    iod = np.linalg.norm(truth.landmarks[:, 36] - truth.landmarks[:, 45], axis=-1).mean()
    moved = lmd_values(analyse_frames(shifted, backend).landmarks, truth.landmarks)
    assert moved["lmd"] == pytest.approx(2 * np.sqrt(2) / iod, rel=0.25)
    assert moved["f_lmd"] < 1.5 and moved["m_lmd"] < 1.5
    recoded = lmd_values(analyse_frames(reencoded, backend).landmarks, truth.landmarks)
    assert recoded["lmd"] < 0.02 and recoded["f_lmd"] < 1.5 and recoded["m_lmd"] < 1.5
