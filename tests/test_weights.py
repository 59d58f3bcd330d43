"""The weights manager against a real HTTP server on 127.0.0.1 and real files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

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
    for name in names:
        weights._REGISTRY.pop(name, None)


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_fetch_verifies_and_installs(cache, server, spec_factory):
    spec_factory("test-net", url=f"{server}/net-0123abcd.pth", sha256=SHA, size=len(PAYLOAD))
    seen = []
    path = weights.fetch("test-net", progress=lambda done, total: seen.append((done, total)))
    assert path == cache / "test-net" / "net-0123abcd.pth"
    assert path.read_bytes() == PAYLOAD
    assert weights.weight_path("test-net") == path
    assert weights.weight_sha256("test-net") == SHA
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
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
    assert (installed.parent / "u.pt.sha256").read_text().strip() == SHA
    assert weights.status("test-unpinned").state == "unpinned"
    installed.write_bytes(b"swapped")
    with pytest.raises(WeightsError, match=SHA):
        weights.weight_path("test-unpinned")


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
