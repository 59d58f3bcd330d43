import numpy as np
import pytest

from talkbench.metrics.lmd import landmark_distance, lmd_values


@pytest.fixture
def face():
    rng = np.random.default_rng(0)
    points = rng.uniform(80, 180, (5, 68, 2))
    points[:, 36] = [100, 120]
    points[:, 45] = [160, 120]  # inter-ocular distance 60
    return points


def test_identical_and_translated_faces_have_zero_distance(face):
    assert lmd_values(face, face)["lmd"] == 0
    assert lmd_values(face + [12.0, -3.0], face)["f_lmd"] == pytest.approx(0, abs=1e-12)


def test_known_mouth_displacement(face):
    moved = face.copy()
    moved[:, 48:68, 1] += 2.0  # the mouth drops by 2 px
    values = lmd_values(moved, face)
    assert values["m_lmd"] == pytest.approx(0, abs=1e-12)  # mouth centred on its own mean: a rigid shift
    opened = face.copy()
    opened[:, 57:60, 1] += 4.0  # lower lip points move 4 px: not rigid
    values = lmd_values(opened, face)
    per_frame = landmark_distance(opened[:, 48:68], face[:, 48:68])
    assert values["m_lmd"] == pytest.approx(per_frame.mean())
    # centring moves every mouth point by 3*4/20 = 0.6 px vertically: 17 points off by 0.6, 3 by 3.4
    assert values["m_lmd"] == pytest.approx((17 * 0.6 + 3 * 3.4) / 20)
    assert values["m_lmd_iod"] == pytest.approx(values["m_lmd"] / 60)
    assert values["lmd"] == values["f_lmd"]


def test_shape_mismatch_is_an_error(face):
    with pytest.raises(ValueError, match="equal landmark shapes"):
        landmark_distance(face[:2], face[:3])
