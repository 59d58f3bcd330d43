"""Fixtures for the leaderboard tests: a fresh store, and a two-clip benchmark cut from the
shipped ``sample`` spec (real clips, real spec type) so submissions validate in seconds."""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass

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


SUBMISSION_META = {"method": "MyTalker", "authors": ["A. Author"], "paper": "https://example.org/paper",
                   "code": "https://example.org/code", "licence": "CC-BY-4.0", "resolution": 512,
                   "contact": "a@example.org"}


@pytest.fixture(scope="session")
def valid_submission(tmp_path_factory, mini_clips):
    """A submission the validator accepts for ``mini_spec``: each reference clip through a normal
    lossy re-encode one pixel to the right (H.264 crf 23; luma SSIM well under the copy threshold), since a copy of the ground truth is refused."""
    import yaml

    from talkbench import media

    root = tmp_path_factory.mktemp("valid") / "sub"
    (root / "videos").mkdir(parents=True)
    (root / "submission.yaml").write_text(yaml.safe_dump(SUBMISSION_META))
    for clip in mini_clips:
        media.write_video(root / "videos" / f"{clip.id}.mp4", (np.roll(f, 1, axis=1) for f in media.iter_frames(clip.video)), crf=23)
    return root


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


@dataclass
class SampleRuns:
    """A store of runs on the real ``sample`` benchmark with chosen per-clip SSIM values."""

    store: object
    values: dict[str, tuple[dict[str, float], dict[str, float]]]  # method -> (IE, non-IE) clip -> value
    seed: int = 7
    replicates: int = 400


def _sample_clips() -> tuple[list[str], list[str]]:
    """The sample benchmark's clip ids, Indo-European and not, in clip-id order."""
    from talkbench.leaderboard.benchmarks import get_benchmark

    clips = sorted(get_benchmark("sample").clips, key=lambda c: c.id)
    return ([c.id for c in clips if c.family == "Indo-European"],
            [c.id for c in clips if c.family != "Indo-European"])


def _values(center: float, width: float, count: int) -> list[float]:
    """``count`` per-clip values spread around ``center``: below, above, a little further each time."""
    return [center + width * (1 if i % 2 else -1) * (1 + i / count) for i in range(count)]


@pytest.fixture
def sample_runs(store):
    """Five runs on the sample benchmark (2 Indo-European clips, 6 others): A and B close enough
    for their intervals to overlap, D and C well below, D without a cross-lingual gap."""
    from talkbench.leaderboard.benchmarks import get_benchmark
    from talkbench.leaderboard.store import ClipValue, Run

    spec = get_benchmark("sample")
    store.upsert_benchmark(spec)
    ie, non_ie = _sample_clips()
    runs = SampleRuns(store, {})
    protocol = {"resolution": 256, "seed": runs.seed, "bootstrap_replicates": runs.replicates, "bootstrap_level": 0.95}

    def add(method, ie_values, non_ie_values):
        clip_values = [ClipValue(c, "ssim", v) for c, v in zip(ie + non_ie, [*ie_values, *non_ie_values])]
        store.add_run(Run(method=method, benchmark="sample", benchmark_version=spec.version, task="speech-driven",
                          provenance="measured", protocol=protocol), clip_values)
        runs.values[method] = dict(zip(ie, ie_values)), dict(zip(non_ie, non_ie_values))

    add("ground-truth", [1.0] * 2, [1.0] * 6)
    add("A", _values(0.85, 0.02, 2), _values(0.70, 0.05, 6))
    add("B", _values(0.84, 0.02, 2), _values(0.68, 0.05, 6))
    add("C", _values(0.60, 0.02, 2), _values(0.40, 0.01, 6))
    add("D", [0.55, 0.57], [0.55, 0.57] * 3)  # the same outside Indo-European: no gap
    return runs
