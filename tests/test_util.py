"""The shared utilities: atomic writes leave the old file or the new one, never part of one;
a registry refuses a second item under a name; array files round-trip and a damaged one reads
as missing."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from talkbench import util


def test_atomic_path_replaces_on_success_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    util.atomic_write_text(target, "first")
    with pytest.raises(RuntimeError):
        with util.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_sha256_file_equals_hashlib(tmp_path):
    data = bytes(range(256)) * 9000
    (tmp_path / "f").write_bytes(data)
    assert util.sha256_file(tmp_path / "f", chunk=4096) == hashlib.sha256(data).hexdigest()


def test_arrays_round_trip_and_a_damaged_file_reads_as_missing(tmp_path):
    path = tmp_path / "clip.npz"
    util.save_arrays(path, {"a": np.arange(5, dtype=np.float16)}, compressed=True)
    got = util.load_arrays(path)
    assert got["a"].dtype == np.float16 and got["a"].tolist() == [0, 1, 2, 3, 4]
    path.write_bytes(b"PK\x03\x04 not a zip")
    assert util.load_arrays(path) is None
    assert util.load_arrays(tmp_path / "missing.npz") is None


def test_registry_rejects_duplicates_and_names_the_known_ones():
    reg: util.Registry[int] = util.Registry("widget", error=LookupError)
    reg.register("a", 1)
    with pytest.raises(LookupError, match="widget 'a' is already registered"):
        reg.register("a", 2)
    with pytest.raises(LookupError, match="unknown widget 'b'; registered: a"):
        reg.get("b")
    assert reg.get("a") == 1 and reg.names() == ["a"]
    reg.unregister("a")
    assert "a" not in reg and reg.names() == []
    with pytest.raises(LookupError, match="unknown widget 'a'"):
        reg.unregister("a")


def test_caches_follow_the_cache_root_and_model_files_their_own_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(util.CACHE_ENV, str(tmp_path / "c"))
    monkeypatch.delenv(util.WEIGHTS_ENV, raising=False)
    assert util.cache_dir("analysis") == tmp_path / "c" / "analysis"
    default = util.model_dir("weights", util.WEIGHTS_ENV)
    assert default.name == "weights" and tmp_path not in default.parents  # not moved by the cache root
    monkeypatch.setenv(util.WEIGHTS_ENV, str(tmp_path / "w"))
    assert util.model_dir("weights", util.WEIGHTS_ENV) == tmp_path / "w"


def test_markdown_table_escapes_pipes():
    assert util.markdown_table(["a", "b"], [["x|y", 1]]) == "| a | b |\n|---|---|\n| x\\|y | 1 |"
