"""Shared fixtures: the embedded sample corpus and the real media in $TALKBENCH_SHARED_DATA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_data_dir() -> Path | None:
    value = os.environ.get("TALKBENCH_SHARED_DATA")
    if not value or not Path(value).is_dir():
        return None
    return Path(value)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real public media; skips the test when the variable is unset."""
    root = shared_data_dir()
    if root is None:
        pytest.skip("TALKBENCH_SHARED_DATA is not set (real media not available)")
    return root


@pytest.fixture(scope="session")
def sample_clips():
    from talkbench.samples import load_sample_corpus

    return load_sample_corpus()
