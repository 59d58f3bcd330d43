"""MSI properties from its definition (the paper publishes no code to compare against)."""

import numpy as np
import pytest

from talkbench.metrics.msi import acceleration_variance, msi, msi_values


@pytest.fixture
def speaking_track():
    """68 points moving smoothly (a head nodding, the jaw opening at speech rate)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(60, 200, (68, 2))
    t = np.arange(100)[:, None, None]
    nod = np.stack([np.zeros_like(t), 3 * np.sin(2 * np.pi * t / 50)], -1)[..., 0, :]
    jaw = np.zeros((100, 68, 2))
    jaw[:, 48:68, 1] = 4 * np.sin(2 * np.pi * t[:, :, 0] / 12)
    return base + nod + jaw


def test_still_face_scores_the_maximum():
    still = np.repeat(np.random.default_rng(1).uniform(0, 256, (1, 68, 2)), 30, axis=0)
    assert msi(still) == 1.0


def test_jitter_lowers_it_monotonically(speaking_track):
    noise = np.random.default_rng(2).normal(size=speaking_track.shape)
    scores = [msi(speaking_track + amount * noise) for amount in (0, 0.25, 0.5, 1, 2, 4)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert scores[0] < 1.0  # the clean track does move


def test_invariant_to_constant_translation_and_constant_velocity(speaking_track):
    shifted = speaking_track + np.array([17.0, -9.5])
    drifting = speaking_track + np.arange(100)[:, None, None] * np.array([0.3, 0.1])
    assert msi(shifted) == pytest.approx(msi(speaking_track), rel=1e-12)
    assert msi(drifting) == pytest.approx(msi(speaking_track), rel=1e-9)


def test_missing_faces_break_runs_instead_of_being_bridged(speaking_track):
    valid = np.ones(100, bool)
    valid[40:43] = False
    jumped = speaking_track.copy()
    jumped[43:] += 50  # the face reappears elsewhere after the gap
    assert msi(jumped, valid) == pytest.approx(
        1 / (1 + acceleration_variance(np.concatenate([speaking_track[:40], speaking_track[43:]]), None)),
        rel=0.2,
    )
    assert msi(jumped, valid) > msi(jumped)  # bridging the gap would count the jump as jitter
    assert msi(speaking_track[:2]) is None


def test_face_normalised_variant_is_resolution_independent(speaking_track):
    sizes = np.full(100, 150.0)
    small = msi_values(speaking_track / 2, np.ones(100, bool), sizes / 2)
    large = msi_values(speaking_track, np.ones(100, bool), sizes)
    assert small["msi_face"] == pytest.approx(large["msi_face"], rel=1e-12)
    assert small["msi"] > large["msi"]  # the pixel variant is not
