"""Weight files as untrusted input: only a full sha256 pins a file; prefix-only and unpinned
files are trusted on first use through the cache's record; a file that passes its hash check
but is not the network it names is reported (file, what was expected, how to replace it),
never as a traceback."""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from talkbench import weights
from talkbench.errors import WeightsError

GARBAGE = np.random.default_rng(16).bytes(4096)
importlib.import_module("talkbench.metrics.registry")  # registers every metric's weight files


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_CACHE_DIR, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def test_spec():
    names = []

    def make(name, **kwargs):
        names.append(name)
        return weights.register_weight(weights.WeightSpec(name=name, licence="test", **kwargs))

    yield make
    for name in dict.fromkeys(names):
        weights.unregister_weight(name)


def install(name: str, data: bytes, tmp_path) -> str:
    source = tmp_path / f"{name}.download"
    source.write_bytes(data)
    return str(weights.import_file(name, source))


def assert_explained(error: WeightsError, name: str, path: str, what: str) -> None:
    message = str(error)
    assert message.startswith(f"{path}: weights {name!r}")
    assert f"do not load as {what}" in message
    assert f"`talkbench weights import {name} PATH --replace`" in message
    assert "\n" not in message and "weights_only=False" not in message


def load_fvd():
    from talkbench.metrics import fvd

    return fvd.load_detector()


def load_arcface():
    from talkbench.metrics import arcface

    return arcface.ArcFace()


def load_insightface():
    from talkbench.metrics import arcface

    return arcface.InsightFaceONNX()


def load_syncnet():
    from talkbench.metrics import syncnet

    return syncnet.load_syncnet()


UNPINNED_LOADERS = [
    ("i3d-torchscript", load_fvd, "a TorchScript archive of I3D", "talkbench weights fetch i3d-torchscript --replace"),
    ("arcface-r100", load_arcface, "an arcface_torch iresnet100 state dict", "get backbone.pth from https://"),
    ("insightface-w600k-r50", load_insightface, "an ONNX ArcFace recognition model", "get w600k_r50.onnx from"),
    ("syncnet-v2", load_syncnet, "syncnet_python's SyncNet v2 state dict", "talkbench weights fetch syncnet-v2 --replace"),
]


@pytest.mark.parametrize("name, load, what, other_fix", UNPINNED_LOADERS, ids=[row[0] for row in UNPINNED_LOADERS])
def test_random_bytes_under_an_unpinned_name_are_explained(cache, tmp_path, name, load, what, other_fix):
    path = install(name, GARBAGE, tmp_path)
    assert weights.status(name).state == "unpinned"  # the hash check passes: it is the recorded file
    with pytest.raises(WeightsError) as info:
        load()
    assert_explained(info.value, name, path, what)
    assert other_fix in str(info.value)


def test_a_real_file_of_the_wrong_network_is_explained(cache, tmp_path):
    import torch
    from onnx import TensorProto, helper

    state = tmp_path / "not-arcface.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, state)  # a valid weights_only state dict
    path = install("arcface-r100", state.read_bytes(), tmp_path)
    with pytest.raises(WeightsError) as info:
        load_arcface()
    assert_explained(info.value, "arcface-r100", path, "an arcface_torch iresnet100 state dict")
    assert "RuntimeError: Error(s) in loading state_dict for IResNet" in str(info.value)

    graph = helper.make_graph(  # a valid ONNX model, but 64×64 in and not a face embedder
        [helper.make_node("Identity", ["x"], ["y"])], "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = install("insightface-w600k-r50", model.SerializeToString(), tmp_path)
    with pytest.raises(WeightsError) as info:
        load_insightface()
    assert_explained(info.value, "insightface-w600k-r50", path, "an ONNX ArcFace recognition model")
    assert "not an ArcFace recognition model: input [1, 3, 64, 64]" in str(info.value)


def test_eval_reports_garbage_weights_without_a_traceback(cache, tmp_path, sample_clips):
    """Through ``talkbench eval``: the explanation, not an uncaught exception."""
    from talkbench.cli import app

    path = install("i3d-torchscript", GARBAGE, tmp_path)
    clip = sample_clips[0].video
    result = CliRunner().invoke(app, ["eval", "-m", "ssim,fvd", "-w", "1", "--no-cache", "--json",
                                      "-g", str(clip), "-r", str(clip)])  # fmt: skip
    # only FVD is lost, as with missing weights: SSIM keeps its value and the run succeeds
    assert result.exit_code == 0 and result.exception is None, result.output
    assert '"ssim"' in result.output
    assert "Traceback" not in result.output
    assert f"{path}: weights 'i3d-torchscript'" in result.output
    assert "do not load as a TorchScript archive of I3D" in result.output
    assert "talkbench weights import i3d-torchscript PATH --replace" in result.output


def test_eval_loses_only_csim_to_a_garbage_identity_network(cache, tmp_path, sample_clips):
    """The identity network is loaded outside the metric (shared by CSIM's analysis): a file
    that does not load costs CSIM alone, on the ground truth's analysis as on the clip's."""
    from talkbench.cli import app

    path = install("arcface-r100", GARBAGE, tmp_path)
    clip = sample_clips[0].video
    result = CliRunner().invoke(app, ["eval", "-m", "ssim,csim", "--identity", "arcface", "-w", "1", "--no-cache",
                                      "--json", "-g", str(clip), "-r", str(clip)])  # fmt: skip
    assert result.exit_code == 0 and result.exception is None, result.output
    assert '"ssim"' in result.output
    assert f"{path}: weights 'arcface-r100'" in result.output and "--replace" in result.output


def same_prefix_files(digits: int) -> tuple[bytes, bytes]:
    """Two different files whose sha256 share their first ``digits`` hex digits: what forging
    a torch-hub prefix takes (2 digits here; 8 take about 2^32 tries)."""
    seen = {}
    for i in itertools.count():
        data = f"weights {i}\n".encode() * 64
        prefix = sha(data)[:digits]
        if prefix in seen:
            return seen[prefix], data
        seen[prefix] = data


def test_a_prefix_only_file_is_trusted_on_first_use(cache, tmp_path, test_spec):
    first, forged = same_prefix_files(2)
    test_spec("test-prefix", url=f"http://127.0.0.1:9/net-{sha(first)[:2]}.pth", sha256_prefix=sha(first)[:2])
    installed = weights.import_file("test-prefix", _write(tmp_path / "first", first))
    assert json.loads((cache / weights.RECORD_FILE).read_text())["weights"]["test-prefix"]["sha256"] == sha(first)
    st = weights.status("test-prefix")
    assert (st.state, st.sha256, st.expected) == ("unpinned", sha(first), sha(first))

    # a forged file with the right prefix, swapped in: refused, naming the recorded sha256
    installed.write_bytes(forged)
    with pytest.raises(WeightsError, match=f"sha256 {sha(forged)} does not match .*expected {sha(first)}"):
        weights.read_verified("test-prefix")
    assert weights.status("test-prefix").state == "bad-hash"
    # ... and imported: refused unless --replace
    with pytest.raises(WeightsError, match="talkbench weights import test-prefix PATH --replace"):
        weights.import_file("test-prefix", _write(tmp_path / "forged", forged))
    weights.import_file("test-prefix", tmp_path / "forged", replace=True)
    assert weights.expected_sha256("test-prefix") == sha(forged)
    # a file without the prefix is refused even with --replace, and nothing is recorded
    other = next(d for d in (f"other {i}".encode() for i in range(999)) if not sha(d).startswith(sha(first)[:2]))
    with pytest.raises(WeightsError, match=re.escape(f"expected {sha(first)[:2]}… (prefix)")):
        weights.import_file("test-prefix", _write(tmp_path / "other", other), replace=True)
    assert weights.expected_sha256("test-prefix") == sha(forged)

    # the record deleted: the file matches its prefix, yet it is "unrecorded" and does not load
    (cache / weights.RECORD_FILE).unlink()
    st = weights.status("test-prefix")
    assert (st.state, st.sha256, st.expected) == ("unrecorded", sha(forged), f"{sha(first)[:2]}… (prefix)")
    with pytest.raises(WeightsError, match="only a published sha256 prefix .* none is recorded .* --replace"):
        weights.read_verified("test-prefix")
    assert not weights.is_available("test-prefix")


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_every_registered_file_is_pinned_in_full_or_trusted_on_first_use(cache, tmp_path):
    from talkbench.cli.weights import WEIGHT_MODULES

    for module in WEIGHT_MODULES:
        importlib.import_module(module)
    specs = {spec.name: spec for spec in weights.registered()}
    for spec in specs.values():
        hub = re.search(r"-([0-9a-f]{8,})\.[a-z.]+$", spec.url)
        if spec.sha256:
            assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256), spec.name
            assert hub is None or spec.sha256.startswith(hub.group(1)), spec.name  # the file name agrees
        elif hub:  # prefix only: checked, and recorded at install
            assert spec.sha256_prefix == hub.group(1) and not spec.pinned, spec.name
    assert specs["inception-fid"].pinned and specs["alexnet"].pinned  # the prefixes once checked alone
    assert not specs["fan-2d"].pinned and not specs["vgg19"].pinned
    # random bytes never install under a pinned name, --replace or not
    for name in ("inception-fid", "alexnet", "fan-2d", "lpips-alex-v0.1"):
        with pytest.raises(WeightsError, match="does not match"):
            weights.import_file(name, _write(tmp_path / "garbage", GARBAGE), replace=True)
        assert not weights.cached_path(name).exists()


def test_a_tampered_fid_onnx_cache_is_rebuilt_not_used(tmp_path):
    """The ONNX export of the FID network is derived from verified weights and cached; a cached
    file that does not load, or computes something else, is replaced by a fresh export. (A small
    network stands in for Inception: the cache logic is the same, the export 50x faster.)"""
    import torch
    from onnx import TensorProto, helper

    from talkbench.metrics import fid

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    probe = torch.rand(1, 3, 80, 80, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model(probe).numpy()
    graph = helper.make_graph(  # valid ONNX with the right input name, computing something else
        [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["features"])],
        "other", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 3])],
    )  # fmt: skip
    other = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    other.ir_version = 8
    cache = tmp_path / "onnx" / "fid-test.onnx"
    cache.parent.mkdir()
    for tampered in (GARBAGE, other.SerializeToString()):
        cache.write_bytes(tampered)
        extractor = fid.OnnxFeatureExtractor(model, cache)
        assert cache.read_bytes() != tampered
        np.testing.assert_allclose(extractor(probe).numpy(), expected, rtol=1e-4, atol=1e-5)
    before = cache.stat()
    fid.OnnxFeatureExtractor(model, cache)  # a good cached export is used as it is
    assert (cache.stat().st_ino, cache.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
