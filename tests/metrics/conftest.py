"""Real frames for metric tests: the first frames of sample-corpus clips at 256x256."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

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


@pytest.fixture(autouse=True)
def fresh_analysis_cache(tmp_path, monkeypatch):
    """Every metrics test starts with an empty on-disk analysis cache and frame memo, so what
    one test analysed never answers for another."""
    from talkbench.metrics.analysis import clear_memo

    monkeypatch.setenv("TALKBENCH_CACHE_DIR", str(tmp_path / "talkbench-cache"))
    clear_memo()


class StandInI3D(torch.nn.Module):
    """FVD's detector interface (uint8 clips (N, 3, 16, H, W) → (N, 400)) with fixed random
    weights, scripted like the real I3D TorchScript: the published file cannot be downloaded
    here, and what the engine tests is the sampling, accumulation and merging around it."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(400, 3 * 2 * 4 * 4, generator=torch.Generator().manual_seed(0)))

    def forward(self, clips: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = clips.float()
        if rescale:
            x = x / 127.5 - 1
        return torch.nn.functional.adaptive_avg_pool3d(x, (2, 4, 4)).flatten(1) @ self.weight.T


@pytest.fixture
def stand_in_i3d(tmp_path, monkeypatch):
    """The stand-in installed as ``i3d-torchscript`` through the weights manager, in a weights
    folder of its own (worker processes and Ray actors find it through the environment)."""
    from talkbench import weights

    monkeypatch.setenv(weights.ENV_CACHE_DIR, str(tmp_path / "weights"))
    path = tmp_path / "i3d_stand_in.pt"
    torch.jit.script(StandInI3D()).save(str(path))
    weights.import_file("i3d-torchscript", path)
    return weights.weight_path("i3d-torchscript")
