"""The weights manager against a real HTTP server on 127.0.0.1 and real files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from talkbench import weights
from talkbench.errors import WeightsError

PAYLOAD = b"not really a network, but real bytes\n" * 1000


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_CACHE_DIR, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "net-0123abcd.pth").write_bytes(PAYLOAD)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def spec_factory():
    names = []

    def make(name, **kwargs):
        spec = weights.register_weight(weights.WeightSpec(name=name, licence="test", **kwargs))
        names.append(name)
        return spec

    yield make
    for name in dict.fromkeys(names):
        weights.unregister_weight(name)


SHA = hashlib.sha256(PAYLOAD).hexdigest()
OTHER = b"another file under the same name\n" * 100


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetch_verifies_and_installs(cache, server, spec_factory):
    spec_factory("test-net", url=f"{server}/net-0123abcd.pth", sha256=SHA, size=len(PAYLOAD))
    seen = []
    path = weights.fetch("test-net", progress=lambda done, total, label: seen.append((done, total, label)))
    assert path == cache / "test-net" / "net-0123abcd.pth"
    assert path.read_bytes() == PAYLOAD
    assert weights.weight_path("test-net") == path
    assert weights.weight_sha256("test-net") == SHA
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD), "test-net")
    assert list(path.parent.iterdir()) == [path]  # no partial files left behind


def test_fetch_refuses_a_wrong_hash_and_installs_nothing(cache, server, spec_factory):
    spec_factory("test-bad", url=f"{server}/net-0123abcd.pth", sha256="0" * 64)
    with pytest.raises(WeightsError, match="does not match"):
        weights.fetch("test-bad")
    assert not any((cache / "test-bad").iterdir())
    assert weights.status("test-bad").state == "missing"


def test_torch_hub_prefix_convention(cache, server, spec_factory):
    spec_factory("test-prefix", url=f"{server}/net-0123abcd.pth", sha256_prefix=SHA[:8])
    assert weights.fetch("test-prefix").is_file()
    spec_factory("test-prefix-bad", url=f"{server}/net-0123abcd.pth", sha256_prefix="deadbeef")
    with pytest.raises(WeightsError, match="deadbeef"):
        weights.fetch("test-prefix-bad")


def test_http_errors_are_reported_with_the_url(cache, server, spec_factory):
    spec_factory("test-404", url=f"{server}/missing.pth", sha256=SHA)
    with pytest.raises(WeightsError, match="could not download 'test-404' from .*missing.pth"):
        weights.fetch("test-404")


def test_missing_weights_name_the_commands(cache, spec_factory):
    spec_factory("test-missing", url="http://127.0.0.1:9/x.pth", sha256=SHA)
    with pytest.raises(WeightsError) as info:
        weights.weight_path("test-missing")
    message = str(info.value)
    assert "talkbench weights fetch test-missing" in message
    assert "talkbench weights import test-missing PATH" in message
    with pytest.raises(WeightsError, match="unknown weight 'nope'"):
        weights.weight_path("nope")


def test_import_checks_the_hash_and_copies(cache, tmp_path, spec_factory):
    spec_factory("test-import", url="http://127.0.0.1:9/net.pth", sha256=SHA)
    good = tmp_path / "downloaded-elsewhere.pth"
    good.write_bytes(PAYLOAD)
    bad = tmp_path / "other.pth"
    bad.write_bytes(b"something else")
    with pytest.raises(WeightsError, match="does not match"):
        weights.import_file("test-import", bad)
    installed = weights.import_file("test-import", good)
    assert good.exists() and installed.read_bytes() == PAYLOAD
    assert weights.status("test-import").state == "ok"
    # a file corrupted after installation is refused, with the fix
    installed.write_bytes(PAYLOAD + b"X")
    with pytest.raises(WeightsError, match="talkbench weights fetch test-import"):
        weights.weight_path("test-import")
    assert weights.status("test-import").state == "bad-hash"


def test_unpinned_weights_record_their_hash_at_install(cache, tmp_path, spec_factory):
    spec_factory("test-unpinned", url="http://127.0.0.1:9/u.pt")
    source = tmp_path / "u.pt"
    source.write_bytes(PAYLOAD)
    installed = weights.import_file("test-unpinned", source)
    record = json.loads((cache / weights.RECORD_FILE).read_text())
    assert record["weights"]["test-unpinned"]["sha256"] == SHA
    assert record["weights"]["test-unpinned"]["file"] == "u.pt"
    assert sorted(p.name for p in installed.parent.iterdir()) == ["u.pt"]  # no sidecar, no temp file
    assert weights.weight_path("test-unpinned") == installed
    st = weights.status("test-unpinned")
    assert (st.state, st.sha256, st.expected) == ("unpinned", SHA, SHA)
    installed.write_bytes(b"swapped")
    with pytest.raises(WeightsError, match=f"expected {SHA}, recorded when they were first installed"):
        weights.weight_path("test-unpinned")
    st = weights.status("test-unpinned")
    assert (st.state, st.sha256, st.expected) == ("bad-hash", sha(b"swapped"), SHA)
    assert not weights.is_available("test-unpinned")


def test_a_different_unpinned_file_is_refused_unless_replace(cache, tmp_path, spec_factory):
    spec_factory("test-swap", url="http://127.0.0.1:9/s.pt")
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    first.write_bytes(PAYLOAD)
    second.write_bytes(OTHER)
    installed = weights.import_file("test-swap", first)
    assert weights.import_file("test-swap", first) == installed  # the same file again is fine
    with pytest.raises(WeightsError) as refused:
        weights.import_file("test-swap", second)
    message = str(refused.value)
    assert SHA in message and sha(OTHER) in message
    assert "talkbench weights import test-swap PATH --replace" in message
    assert installed.read_bytes() == PAYLOAD and weights.expected_sha256("test-swap") == SHA
    assert list(installed.parent.iterdir()) == [installed]  # the refused copy is not left behind
    assert weights.import_file("test-swap", second, replace=True) == installed
    assert installed.read_bytes() == OTHER and weights.expected_sha256("test-swap") == sha(OTHER)
    assert weights.weight_sha256("test-swap") == sha(OTHER)


def test_fetch_of_an_unpinned_file_records_it_and_replace_refetches(cache, server, tmp_path, spec_factory):
    spec_factory("test-fetch-unpinned", url=f"{server}/net-0123abcd.pth")
    (tmp_path / "www" / "other.pth").write_bytes(OTHER)
    path = weights.fetch("test-fetch-unpinned")
    assert weights.expected_sha256("test-fetch-unpinned") == SHA
    path.unlink()  # the record outlives the file: a download that differs from it is refused
    with pytest.raises(WeightsError, match=f"{sha(OTHER)}, but {SHA} is recorded .*--replace"):
        weights.fetch("test-fetch-unpinned", url=f"{server}/other.pth")
    assert not any((cache / "test-fetch-unpinned").iterdir())
    assert weights.fetch("test-fetch-unpinned", url=f"{server}/other.pth", replace=True).read_bytes() == OTHER
    assert weights.expected_sha256("test-fetch-unpinned") == sha(OTHER)


def test_deleting_the_record_or_a_sidecar_never_unpins_a_file(cache, tmp_path, spec_factory):
    spec_factory("test-record", url="http://127.0.0.1:9/r.pt")
    source = tmp_path / "r.pt"
    source.write_bytes(PAYLOAD)
    installed = weights.import_file("test-record", source)
    # the old bypass: swap the file and write (or delete) a sidecar beside it
    installed.write_bytes(OTHER)
    (installed.parent / "r.pt.sha256").write_text(sha(OTHER) + "\n")
    with pytest.raises(WeightsError, match=SHA):
        weights.weight_path("test-record")
    (installed.parent / "r.pt.sha256").unlink()
    with pytest.raises(WeightsError, match=SHA):
        weights.weight_path("test-record")
    # deleting the record: loading fails (not passes), with the fix
    (cache / weights.RECORD_FILE).unlink()
    with pytest.raises(WeightsError, match="none is recorded .*talkbench weights import test-record .* --replace"):
        weights.weight_path("test-record")
    st = weights.status("test-record")
    assert (st.state, st.sha256, st.expected) == ("unrecorded", sha(OTHER), None)
    # nor does an import without --replace accept another file than the one installed
    with pytest.raises(WeightsError, match="not recorded"):
        weights.import_file("test-record", source)
    weights.import_file("test-record", source, replace=True)
    assert weights.weight_sha256("test-record") == SHA
    # a corrupt record is refused, not read as "nothing recorded"
    (cache / weights.RECORD_FILE).write_text("{not json")
    with pytest.raises(WeightsError, match="unreadable"):
        weights.weight_path("test-record")
    assert weights.status("test-record").state == "bad-hash"


def test_torchscript_is_loaded_only_from_the_recorded_file(cache, tmp_path, monkeypatch):
    import torch

    from talkbench.metrics import fvd

    class Detector(torch.nn.Module):  # I3D's call signature, a Linear inside
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x, rescale: bool = False, resize: bool = False, return_features: bool = False):
            return self.fc(x)

    def script(seed: int) -> Path:
        torch.manual_seed(seed)
        path = tmp_path / f"i3d-{seed}.pt"
        torch.jit.script(Detector()).save(str(path))
        return path

    recorded, other = script(0), script(1)
    weights.import_file(fvd.WEIGHTS, recorded)
    loads = []
    real_load = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda f, **kw: loads.append(f) or real_load(f, **kw))
    x = torch.ones(1, 4)
    assert torch.equal(fvd.load_detector()(x), fvd.load_detector(recorded)(x))
    assert len(loads) == 2
    # a valid TorchScript with another hash, given as a path or swapped into the cache: refused
    # before torch.jit.load runs
    with pytest.raises(WeightsError, match="does not match weights 'i3d-torchscript'"):
        fvd.load_detector(other)
    weights.cached_path(fvd.WEIGHTS).write_bytes(other.read_bytes())
    with pytest.raises(WeightsError, match="does not match"):
        fvd.load_detector()
    (cache / weights.RECORD_FILE).unlink()
    with pytest.raises(WeightsError, match="none is recorded"):
        fvd.load_detector(recorded)
    assert len(loads) == 2


def test_cli_replace_through_python_m_talkbench(cache, tmp_path):
    """``python -m talkbench weights import NAME PATH [--replace]`` on a real unpinned spec."""
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    first.write_bytes(PAYLOAD)
    second.write_bytes(OTHER)
    weights.import_file("i3d-torchscript", first)
    env = {**os.environ, weights.ENV_CACHE_DIR: str(cache)}

    def talkbench(*args):
        return subprocess.run([sys.executable, "-m", "talkbench", "weights", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    from talkbench.cli import app

    refused = CliRunner().invoke(app, ["weights", "import", "i3d-torchscript", str(second)])
    assert isinstance(refused.exception, WeightsError)
    assert SHA in str(refused.exception) and sha(OTHER) in str(refused.exception)
    assert weights.weight_sha256("i3d-torchscript") == SHA
    replaced = talkbench("import", "i3d-torchscript", str(second), "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert weights.weight_sha256("i3d-torchscript") == sha(OTHER)

    result = CliRunner().invoke(app, ["weights", "verify", "--json"])
    assert result.exit_code == 0, result.output
    row = next(r for r in json.loads(result.stdout) if r["name"] == "i3d-torchscript")
    assert (row["state"], row["sha256"], row["expected"]) == ("unpinned", sha(OTHER), sha(OTHER))
    (cache / weights.RECORD_FILE).unlink()
    result = CliRunner().invoke(app, ["weights", "verify", "--json"])
    assert result.exit_code == 1
    row = next(r for r in json.loads(result.stdout) if r["name"] == "i3d-torchscript")
    assert row["state"] == "unrecorded"


def test_manual_download_weights_point_to_import(cache, spec_factory):
    spec_factory("test-manual", url="https://example.org/share", filename="b.pth", manual_download=True)
    with pytest.raises(WeightsError, match="talkbench weights import test-manual PATH"):
        weights.fetch("test-manual")


def test_bundled_lpips_layers_are_found_and_verified(cache):
    path = weights.weight_path("lpips-alex-v0.1")
    assert path.parts[-4:] == ("lpips", "weights", "v0.1", "alex.pth")
    assert weights.weight_sha256("lpips-alex-v0.1") == weights.get_spec("lpips-alex-v0.1").sha256


def test_a_name_means_one_file(spec_factory):
    spec_factory("test-dup", url="http://a/x.pth", sha256=SHA)
    spec_factory("test-dup", url="http://a/x.pth", sha256=SHA)  # identical: fine (re-import)
    with pytest.raises(ValueError, match="already registered"):
        weights.register_weight(weights.WeightSpec("test-dup", "http://b/x.pth", "test", sha256=SHA))


def test_a_weight_can_be_unregistered():
    weights.register_weight(weights.WeightSpec("test-gone", "http://a/g.pth", "test", sha256=SHA))
    weights.unregister_weight("test-gone")
    assert "test-gone" not in [s.name for s in weights.registered()]
    with pytest.raises(WeightsError, match="unknown weight 'test-gone'"):
        weights.unregister_weight("test-gone")


def test_cli_import_list_and_verify(cache, tmp_path, spec_factory):
    from talkbench.cli import app

    spec_factory("test-cli", url="http://127.0.0.1:9/c.pth", sha256=SHA)
    source = tmp_path / "c.pth"
    source.write_bytes(PAYLOAD)
    runner = CliRunner()
    result = runner.invoke(app, ["weights", "import", "test-cli", str(source)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["weights", "verify", "--json"])
    assert result.exit_code == 0, result.output
    assert '"state": "ok"' in result.output and "test-cli" in result.output
    (cache / "test-cli" / "c.pth").write_bytes(b"corrupt")
    assert runner.invoke(app, ["weights", "verify"]).exit_code == 1
    listed = runner.invoke(app, ["weights", "list", "--json"])
    assert "inception-fid" in listed.output and "i3d-torchscript" in listed.output


def test_cli_fetch_downloads_with_a_progress_bar(cache, server, spec_factory):
    from talkbench.cli import app

    spec_factory("test-cli-fetch", url=f"{server}/net-0123abcd.pth", sha256=SHA, size=len(PAYLOAD))
    result = CliRunner().invoke(app, ["weights", "fetch", "test-cli-fetch"])
    assert result.exit_code == 0, result.output
    path = cache / "test-cli-fetch" / "net-0123abcd.pth"
    assert f"test-cli-fetch: {path} (sha256 {SHA})" in result.stdout
    assert path.read_bytes() == PAYLOAD
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the usual mode, not a temporary file's 0600
