"""Real frames for metric tests: the first frames of sample-corpus clips at 256x256."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from talkbench import media


def _first_frames(path, count: int) -> np.ndarray:
    return np.stack(list(itertools.islice(media.iter_frames(path, size=256), count)))


@pytest.fixture(scope="session")
def real_frames(sample_clips) -> np.ndarray:
    """8 real 256x256 frames of one talking face."""
    return _first_frames(sample_clips[0].video, 8)


@pytest.fixture(scope="session")
def other_frames(sample_clips) -> np.ndarray:
    """8 frames of a clip with another person, to compare against ``real_frames``."""
    first = sample_clips[0].provenance["portrait"]
    other = next(c for c in sample_clips if c.provenance["portrait"] != first)
    return _first_frames(other.video, 8)


@pytest.fixture(scope="session")
def random_fid_state() -> dict:
    """The same random FID-Inception weights for us and pytorch-fid (the published file cannot
    be downloaded here)."""
    from talkbench.metrics.fid import random_state_dict

    return random_state_dict()
