"""The method protocol and the built-in methods, on a real sample clip."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from talkbench import media
from talkbench.baselines.method import MethodError, MethodInfo, Task
from talkbench.baselines.registry import get_method, method_names, method_options, register_method


@pytest.fixture(scope="module")
def task(sample_clips):
    clip = next(c for c in sample_clips if c.id == "de_001")
    # the reference's frame count at 25 fps, from the clip's duration in the corpus listing
    return Task(kind="speech-driven", clip_id=clip.id, reference=clip.video, language=clip.language,
                fps=25.0, frames=round(clip.duration * 25))


def test_registry_has_the_builtins_and_refuses_duplicates():
    assert {"ground-truth", "static-source", "h264"} <= set(method_names())
    with pytest.raises(MethodError, match="'h264' is already registered"):
        register_method("h264", lambda: None)
    with pytest.raises(MethodError, match="unknown method 'nope'"):
        get_method("nope")
    assert method_options("h264") == {"kbps"} and method_options("ground-truth") == set()
    assert method_options("vqtalker-tiny") == {"device"}
    assert method_options("vqtalker") == {"generator", "tokenizer", "tiny", "device"}


def test_the_interface_and_the_methods_import_no_registry():
    """The registry imports the methods, never the other way round (no import cycle)."""
    code = ("import sys, talkbench.baselines.method, talkbench.baselines.builtin, talkbench.baselines.vqtalker; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('talkbench.baselines'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == ["talkbench.baselines", "talkbench.baselines.builtin", "talkbench.baselines.method",
                      "talkbench.baselines.vqtalker"]


def test_method_info_is_typed():
    with pytest.raises(ValueError):
        MethodInfo(name="x", kind="magic")
    with pytest.raises(ValueError):
        MethodInfo(name="x", kind="builtin", resolution=-1)
    with pytest.raises(MethodError, match="unknown task kind"):
        Task(kind="dance", clip_id="a", reference="a.mp4")


def test_ground_truth_is_the_reference_byte_for_byte(task, tmp_path):
    out = get_method("ground-truth").generate(task, tmp_path / "gt.mp4")
    assert out.read_bytes() == task.reference.read_bytes()


def test_static_source_repeats_the_portrait_with_the_audio(task, tmp_path):
    out = get_method("static-source").generate(task, tmp_path / "static.mp4")
    info = media.probe(out)
    assert info.frame_count == task.frames and info.fps == 25 and info.has_audio
    frames = media.read_frames(out)
    motion = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean()
    assert motion < 0.5, motion  # one still image: only codec noise between frames
    portrait = task.portrait().astype(int)
    assert np.abs(frames[0].astype(int) - portrait).mean() < 2.0


def test_h264_reencodes_at_the_target_and_measures_the_bitrate(task, tmp_path):
    method = get_method("h264", kbps=200)
    out = method.generate(task, tmp_path / "h264.mp4")
    assert method.info.name == "h264-200k" and method.info.bitrate_kbps == 200
    measured = method.measured_kbps["de_001"]
    assert 100 < measured < 300, measured  # x264 ABR lands near the target on a ~5 s clip
    assert measured == pytest.approx(media.probe(out).video_bit_rate / 1000)
    assert media.probe(out).frame_count == task.frames  # re-encoded, not resampled or cut
