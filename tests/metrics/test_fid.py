import numpy as np
import pytest
import torch
from pytorch_fid import inception as pytorch_fid_inception
from pytorch_fid.fid_score import calculate_frechet_distance

from talkbench.errors import MetricError
from talkbench.metrics.fid import (
    FIDInception,
    GaussianStats,
    fid_from_stats,
    frechet_distance,
    inception_features,
    load_feature_extractor,
)


@pytest.fixture(scope="module")
def shared_weights(tmp_path_factory, random_fid_state):
    """The same random weights for us and for pytorch-fid. pytorch-fid loads its weights with
    torch.hub's ``load_state_dict_from_url``, which reads the hub cache before downloading, so
    the file is placed there under the name its URL ends in."""
    state = random_fid_state
    hub = tmp_path_factory.mktemp("hub")
    (hub / "checkpoints").mkdir()
    torch.save(state, hub / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth")
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    try:
        reference = pytorch_fid_inception.InceptionV3([pytorch_fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    finally:
        torch.hub.set_dir(previous)
    return state, reference


@pytest.mark.slow
def test_features_equal_pytorch_fid(shared_weights, real_frames, other_frames):
    state, reference = shared_weights
    frames = np.concatenate([real_frames[:2], other_frames[:2]])
    ours = inception_features(FIDInception(state), frames)
    # pytorch-fid's own input path for image files: PIL → ToTensor → model (resize, 2x-1)
    from torchvision.transforms import functional as TF
    from PIL import Image

    batch = torch.stack([TF.to_tensor(Image.fromarray(f)) for f in frames])
    with torch.no_grad():
        expected = reference(batch)[0].squeeze(3).squeeze(2).double().numpy()
    assert ours.shape == (4, 2048)
    assert np.abs(ours - expected).max() < 1e-6
    import importlib.util

    runtimes = ["torch"] + (["onnxruntime"] if importlib.util.find_spec("onnxruntime") else [])
    for runtime in runtimes:  # what the engine runs, with and without onnxruntime
        fast = inception_features(load_feature_extractor(state, runtime=runtime), frames)
        assert np.abs(fast - expected).max() < 1e-6
    assert np.abs(expected).max() > 1e-3  # the random network does produce signal


def test_frechet_distance_equals_pytorch_fid():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 64))
    b = rng.normal(loc=0.3, scale=1.2, size=(250, 64)) @ rng.normal(size=(64, 64)) * 0.2
    expected = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    ga, gb = GaussianStats.empty(64), GaussianStats.empty(64)
    ga.update(a)
    gb.update(b)
    assert abs(fid_from_stats(ga, gb) - expected) < 1e-6 * max(1.0, abs(expected))
    assert abs(frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)) - expected) < 1e-9


def test_stats_merge_by_addition_like_one_pass():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(101, 16))
    whole = GaussianStats.empty(16)
    whole.update(features)
    parts = [GaussianStats.empty(16) for _ in range(3)]
    for part, chunk in zip(parts, np.array_split(features, 3)):
        part.update(chunk)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    mu, cov = merged.mean_cov()
    assert merged.count == 101
    assert np.allclose(mu, features.mean(0), atol=1e-12)
    assert np.allclose(cov, np.cov(features, rowvar=False), atol=1e-12)
    assert np.allclose(whole.mean_cov()[1], cov, atol=1e-12)


def test_stats_round_trip_through_npz(tmp_path):
    stats = GaussianStats.empty(8)
    stats.update(np.random.default_rng(2).normal(size=(10, 8)))
    stats.to_npz(tmp_path / "s.npz")
    loaded = GaussianStats.from_npz(tmp_path / "s.npz")
    assert loaded.count == 10 and np.array_equal(loaded.outer, stats.outer)
    assert np.array_equal(loaded.total, stats.total)
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # written atomically: no temporary file left
    stats.to_npz(tmp_path / "t")  # np.savez's rule: .npz appended
    assert GaussianStats.from_npz(tmp_path / "t.npz").count == 10


def test_damaged_stats_file_is_a_clear_error(tmp_path):
    (tmp_path / "s.npz").write_bytes(b"not an npz")
    with pytest.raises(MetricError, match=r"s\.npz: not a readable FID/FVD statistics file"):
        GaussianStats.from_npz(tmp_path / "s.npz")


def test_too_few_samples_is_a_clear_error():
    stats = GaussianStats.empty(4)
    stats.update(np.ones((1, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        stats.mean_cov()
