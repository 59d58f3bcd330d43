"""Fixtures for the leaderboard tests: a fresh store, and a two-clip benchmark cut from the
shipped ``sample`` spec (real clips, real spec type) so submissions validate in seconds."""

from __future__ import annotations

import pytest


@pytest.fixture
def store(tmp_path):
    from talkbench.leaderboard.store import Store

    return Store(tmp_path / "lb.duckdb")


@pytest.fixture(scope="session")
def mini_spec():
    from talkbench.leaderboard.benchmarks import clip_list_sha256, get_benchmark

    full = get_benchmark("sample")
    # the shortest Indo-European clip (de, 120 frames) and the shortest of the others (tr, 86)
    clips = [c for c in full.clips if c.id in ("de_001", "tr_001")]
    return full.model_copy(update={"name": "sample-mini", "clips": clips,
                                   "clip_list_sha256": clip_list_sha256(clips)})


@pytest.fixture(scope="session")
def mini_clips(mini_spec):
    from talkbench.leaderboard.benchmarks import resolve_clips

    return resolve_clips(mini_spec)


@pytest.fixture(scope="session")
def measured_store(tmp_path_factory, mini_spec):
    """A store with the papers' reported rows and the three built-in methods really generated
    and evaluated (SSIM, CPBD) on the two-clip benchmark."""
    from talkbench.leaderboard.evaluate import default_settings, run_method
    from talkbench.leaderboard.reported import load_reported
    from talkbench.leaderboard.store import Store

    root = tmp_path_factory.mktemp("measured")
    store = Store(root / "lb.duckdb")
    load_reported(store)
    settings = default_settings(("ssim", "cpbd"))
    for name in ("ground-truth", "static-source", "h264"):
        run_method(store, name, mini_spec, "speech-driven", root / "out", settings=settings)
    return store
