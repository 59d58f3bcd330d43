"""VQTalker's two stages as leaderboard methods, on the shipped tiny checkpoints: what they write
is a video the submission validator accepts (frame count, size, fps, audio)."""

from __future__ import annotations

import pytest

from talkbench import media
from talkbench.baselines.method import MethodError, Task
from talkbench.baselines.registry import get_method, method_names


def test_registered_with_their_tasks_and_bitrate():
    assert {"vqtalker", "vqtalker-tiny", "vqtalker-tokenizer", "vqtalker-tokenizer-tiny"} <= set(method_names())
    tiny = get_method("vqtalker-tiny").info
    assert tiny.tasks == ["speech-driven"] and tiny.uses_ground_truth_controls
    assert tiny.bitrate_kbps == pytest.approx(11.146, abs=1e-3)  # 12 x 4 x log2(625) x 25
    assert "tiny model trained by talkbench" in tiny.description
    assert get_method("vqtalker-tokenizer-tiny").info.tasks == ["reconstruction"]


def test_without_a_checkpoint_the_error_names_the_fix():
    with pytest.raises(MethodError, match=r"needs a checkpoint \(generator=PATH\); 'vqtalker-tiny' runs"):
        get_method("vqtalker")
    with pytest.raises(MethodError, match=r"needs a checkpoint \(tokenizer=PATH\)"):
        get_method("vqtalker-tokenizer")


@pytest.mark.parametrize("name,kind", [("vqtalker-tiny", "speech-driven"), ("vqtalker-tokenizer-tiny", "reconstruction")])
def test_outputs_pass_the_submission_rules(name, kind, sample_clips, tmp_path):
    clip = next(c for c in sample_clips if c.id == "tr_001")  # the shortest non-Indo-European clip
    reference = media.probe(clip.video)
    task = Task(kind=kind, clip_id=clip.id, reference=clip.video, language=clip.language,
                frames=reference.frame_count)
    out = get_method(name).generate(task, tmp_path / f"{clip.id}.mp4")
    info = media.probe(out)
    assert abs(info.frame_count - reference.frame_count) <= 2
    assert info.width == info.height == 256 and info.fps == 25 and info.has_audio
    assert abs(info.duration - reference.duration) < 0.1
