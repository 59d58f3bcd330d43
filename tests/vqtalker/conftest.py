"""Fixtures shared by the tokenizer tests: one sample clip and a session cache for its decoded
frames and dlib landmarks (computed once per session, never in the user's cache)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("vqtalker-cache")


@pytest.fixture(scope="session")
def one_clip(sample_clips) -> Path:
    return Path(sample_clips[0].video)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread is fastest on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
