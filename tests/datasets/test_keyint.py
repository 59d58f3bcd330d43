"""``data build --keyint N``: the built clips have a keyframe every N frames, the catalog says
so, a resume with another keyint is refused like any other changed setting, and a bad value
is a clear error naming the option. Without it the clips keep x264's default GOP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import pytest

from talkbench.datasets.catalog import Catalog
from talkbench.datasets.pipeline import build_dataset
from talkbench.datasets.sources import ClipSpec
from talkbench.errors import TalkbenchError


def keyframe_slots(path: Path) -> list[int]:
    """Frame numbers (at the stream's rate) of the keyframe packets, in display order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate)
        return sorted(round(float(p.pts * stream.time_base) * rate)
                      for p in container.demux(stream) if p.pts is not None and p.is_keyframe)


@pytest.mark.shared_data
def test_keyint_sets_the_keyframe_spacing_and_is_recorded(shared_data, tmp_path):
    d0 = shared_data / "video" / "liveportrait_d0.mp4"  # real face, 512x512, no audio
    specs = [ClipSpec("d0", "vfhq", str(d0), 0.0, 3.0)]
    out = tmp_path / "k10"
    summary = build_dataset("vfhq", None, out, specs=specs, workers=0, progress=False, keyint=10)
    assert summary.accepted == 1
    with Catalog(out) as cat:
        row = cat.records()[0]
        assert cat.meta()["params"]["keyint"] == 10
    assert row.frames == 75
    assert keyframe_slots(out / row.path) == list(range(0, 75, 10))

    # same keyint resumes (nothing to do); another one is refused, as for every setting
    assert build_dataset("vfhq", None, out, specs=specs, workers=0, progress=False, keyint=10).skipped == 1
    with pytest.raises(TalkbenchError, match=r"built with other settings \(keyint: 10 -> None\)"):
        build_dataset("vfhq", None, out, specs=specs, workers=0, progress=False)
    with pytest.raises(TalkbenchError, match=r"built with other settings \(keyint: 10 -> 25\)"):
        build_dataset("vfhq", None, out, specs=specs, workers=0, progress=False, keyint=25)

    plain = tmp_path / "plain"  # default: x264's GOP (250), so one keyframe in 75 frames
    build_dataset("vfhq", None, plain, specs=specs, workers=0, progress=False)
    with Catalog(plain) as cat:
        row = cat.records()[0]
        assert cat.meta()["params"]["keyint"] is None
    assert keyframe_slots(plain / row.path) == [0]


def test_a_catalog_from_before_keyint_resumes_with_the_default(tmp_path):
    """Catalogs built before the option have no keyint in their params: they were encoded with
    x264's default, so a default resume goes on and --keyint 25 is refused."""
    specs = [ClipSpec("gone", "vfhq", str(tmp_path / "gone.mp4"))]  # fails at fetch: quick
    out = tmp_path / "out"
    build_dataset("vfhq", None, out, specs=specs, workers=0, progress=False)
    with Catalog(out) as cat:
        params = cat.meta()["params"]
        del params["keyint"]
        cat.set_meta("params", params)
    build_dataset("vfhq", None, out, specs=specs, workers=0, progress=False)
    with pytest.raises(TalkbenchError, match=r"\(keyint: None -> 25\)"):
        build_dataset("vfhq", None, out, specs=specs, workers=0, progress=False, keyint=25)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_a_bad_keyint_is_refused_naming_the_option(tmp_path, bad):
    with pytest.raises(TalkbenchError, match=rf"--keyint {bad!r}: the keyframe interval must be a positive"):
        build_dataset("vfhq", None, tmp_path / "out", specs=[], workers=0, progress=False, keyint=bad)
    assert not (tmp_path / "out").exists()


def test_the_cli_refuses_keyint_zero(tmp_path):
    cli = str(Path(sys.executable).parent / "talkbench")
    done = subprocess.run([cli, "data", "build", "files", "--manifest", str(tmp_path), "--out", str(tmp_path / "o"),
                           "--keyint", "0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--keyint" in done.stderr, done.stderr
    assert not (tmp_path / "o").exists()
