"""The on-disk analysis cache: keyed by content, whole entries only, cleared on request."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from talkbench.metrics import cache

KEY = {"video": "ab" * 32, "resolution": 256}


def test_entries_round_trip_and_answer_only_their_own_key(tmp_path):
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.store("features", KEY, {"rows": rows})
    assert np.array_equal(cache.load("features", KEY)["rows"], rows)
    assert cache.load("features", {**KEY, "resolution": 512}) is None
    assert cache.load("faces", KEY) is None  # another kind
    # a file under this key's name that was written for another key is never returned
    other = cache.entry_path("features", {**KEY, "resolution": 128})
    cache.store("features", {**KEY, "resolution": 128}, {"rows": rows})
    cache.entry_path("features", KEY).write_bytes(other.read_bytes())
    assert cache.load("features", KEY) is None


def test_a_damaged_entry_is_a_miss_and_is_replaced():
    cache.store("clips", KEY, {"rows": np.ones(3)})
    path = cache.entry_path("clips", KEY)
    path.write_bytes(path.read_bytes()[:40])  # truncated by something other than talkbench
    assert cache.load("clips", KEY) is None
    cache.store_json("clips", KEY, {"id": "c"}, {"rows": np.ones(2)})
    record, arrays = cache.load_json("clips", KEY)
    assert record == {"id": "c"} and np.array_equal(arrays["rows"], np.ones(2))


def test_content_hash_follows_the_bytes_not_the_path(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert cache.content_sha256(a) == cache.content_sha256(b)
    b.write_bytes(b"other")
    assert cache.content_sha256(a) != cache.content_sha256(b)
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    assert cache.content_sha256(frames) != cache.content_sha256(frames.reshape(4, 2, 4, 3))


def test_info_and_clear_through_the_cli(tmp_path):
    from talkbench.cli import app

    cache.store("faces", KEY, {"valid": np.ones(5, bool)})
    cache.store("clips", KEY, {"rows": np.ones(5)})
    (cache.entry_path("faces", KEY).parent / "deadbeef.1234.tmp").write_bytes(b"partial")  # a killed writer
    result = CliRunner().invoke(app, ["cache", "info", "--json"])
    assert result.exit_code == 0, result.output
    info = {k["kind"]: k for k in json.loads(result.stdout)["kinds"]}
    assert info["faces"]["entries"] == 1 and info["faces"]["partial"] == 1 and info["clips"]["entries"] == 1
    assert json.loads(result.stdout)["root"] == str(cache.cache_root())
    result = CliRunner().invoke(app, ["cache", "clear", "--kind", "faces"])
    assert result.exit_code == 0 and "removed" in result.stdout
    assert cache.load("faces", KEY) is None and cache.load("clips", KEY) is not None
    bad = CliRunner().invoke(app, ["cache", "clear", "--kind", "everything"])
    assert bad.exit_code != 0
    CliRunner().invoke(app, ["cache", "clear"])
    assert all(k.entries == 0 and k.partial == 0 for k in cache.info())
    with pytest.raises(ValueError, match="unknown cache kind"):
        cache.clear(("thumbnails",))
