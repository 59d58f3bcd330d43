"""VQTalker's two stages as leaderboard methods, on the shipped tiny checkpoints: what they write
is a video the submission validator accepts (frame count, size, fps, audio)."""

from __future__ import annotations

import itertools
from pathlib import Path

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


def test_vqtalker_loads_its_checkpoints_once_and_writes_what_the_checkpoint_call_writes(sample_clips, tmp_path,
                                                                                       monkeypatch):
    from talkbench.util import sha256_file
    from talkbench.vqtalker import inference
    from talkbench.vqtalker.pretrained import TINY_GENERATOR, TINY_TOKENIZER

    loads = []
    real_load = inference.load_checkpoint
    monkeypatch.setattr(inference, "load_checkpoint",
                        lambda path, *a, **k: loads.append(path) or real_load(path, *a, **k))  # counts, then loads
    method = get_method("vqtalker-tiny")
    assert len(loads) == 2  # the generator and its tokenizer
    talker = method.talker
    models = (talker.generator, talker.tokenizer, talker.speech)
    assert talker.generator_sha256 == sha256_file(TINY_GENERATOR)
    assert talker.tokenizer_sha256 == sha256_file(TINY_TOKENIZER)
    assert f"sha256 {talker.generator_sha256[:12]}" in method.info.description
    tasks = []
    for clip in [c for c in sample_clips if c.id in ("tr_001", "zh_001")]:  # their first second: a fast test
        first_second = itertools.islice(media.iter_frames(clip.video), 25)
        short = media.write_video(tmp_path / "clips" / f"{clip.id}.mp4", first_second,
                                  audio=media.read_audio(clip.video)[: media.AUDIO_RATE])
        tasks.append(Task(kind="speech-driven", clip_id=clip.id, reference=short, language=clip.language))
    outs = [method.generate(task, tmp_path / "method" / f"{task.clip_id}.mp4") for task in tasks]
    now = (method.talker.generator, method.talker.tokenizer, method.talker.speech)
    assert all(a is b for a, b in zip(now, models))
    assert len(loads) == 2, loads  # nothing reloaded per clip
    for task, out in zip(tasks, outs):
        by_path = inference.generate_video(TINY_GENERATOR, task.portrait(), task.audio(),
                                           tmp_path / "path" / out.name, controls_from=task.reference,
                                           tokenizer_checkpoint=TINY_TOKENIZER, output_size=256, device="cpu")
        assert out.read_bytes() == Path(by_path["out"]).read_bytes()
        assert by_path["generator_sha256"] == talker.generator_sha256
    assert len(loads) == 6  # the checkpoint form loads both for each call
    with pytest.raises(inference.InferenceError, match="already loaded with .* on cpu; load another Talker"):
        inference.generate_video(talker, task.portrait(), task.audio(), tmp_path / "x.mp4",
                                 tokenizer_checkpoint=TINY_TOKENIZER)
