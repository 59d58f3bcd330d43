"""The sample corpus: what samples.json says is what the files are, and the mouth really
moves with the speech."""

from __future__ import annotations


import numpy as np
import pytest

from talkbench import media
from talkbench.face import analyse_image, get_backend
from talkbench.samples import generate

PAPER_LANGUAGES = {"ar", "sw", "zh", "ko", "ja", "tr"}  # MNTE's six, plus en and de


def test_corpus_metadata_matches_files(sample_clips):
    assert len(sample_clips) == 8
    assert {c.language for c in sample_clips} == PAPER_LANGUAGES | {"en", "de"}
    assert len({c.id for c in sample_clips}) == 8
    for clip in sample_clips:
        info = media.probe(clip.video)
        assert (info.width, info.height, info.fps) == (512, 512, 25), clip.id
        assert info.has_audio and info.audio_sample_rate == 16000
        assert 3.0 <= clip.duration <= 5.0
        assert info.duration == pytest.approx(clip.duration, abs=0.05)
        assert len(media.read_audio(clip.video)) == pytest.approx(clip.duration * 16000, abs=640)


def mouth_opening(frames: np.ndarray) -> np.ndarray:
    backend = get_backend()
    gaps = []
    for frame in frames:
        lm = analyse_image(frame, backend).landmarks
        gaps.append(lm[66, 1] - lm[62, 1])  # inner lower lip minus inner upper lip
    return np.array(gaps)


def test_mouth_opening_follows_speech(sample_clips):
    clip = next(c for c in sample_clips if c.language == "en")
    frames = media.read_frames(clip.video)
    opening = mouth_opening(frames)
    envelope = generate.speech_envelope(media.read_audio(clip.video), len(frames))
    assert np.corrcoef(opening, envelope)[0, 1] > 0.5


def test_every_clip_names_its_speech_source_and_licence(sample_clips):
    recorded = [c for c in sample_clips if c.provenance["speech"]["kind"] == "recorded"]
    assert {c.language for c in recorded} == {"ar", "sw", "zh", "ko", "ja", "en", "de"}
    for clip in recorded:
        speech = clip.provenance["speech"]
        assert speech["licence"] in {"MIT", "Apache-2.0"}, clip.id
        assert "@" in speech["source"] and len(speech["source"].split("@")[1]) == 40, clip.id
        start, end = speech["excerpt"]
        assert end - start == pytest.approx(clip.duration, abs=0.05), clip.id
    (turkish,) = [c for c in sample_clips if c.provenance["speech"]["kind"] == "synthesised"]
    assert turkish.language == "tr" and turkish.provenance["speech"]["voice"] == "espeak-ng tr"


@pytest.mark.slow
@pytest.mark.shared_data
def test_generator_reproduces_a_recorded_clip(tmp_path, sample_clips, shared_data):
    spec = next(s for s in generate.SPECS if s.language == "de")
    entry = generate.make_clip(spec, tmp_path, seed=generate.SPECS.index(spec), speech_dir=shared_data / "speech")
    committed = next(c for c in sample_clips if c.id == spec.id)
    assert entry["speech"] == committed.provenance["speech"]
    assert entry["duration"] == pytest.approx(committed.duration, abs=0.05)
    new = media.read_frames(tmp_path / entry["file"])
    old = media.read_frames(committed.video)
    assert new.shape == old.shape
    assert np.abs(new.astype(int) - old.astype(int)).mean() < 2.0
