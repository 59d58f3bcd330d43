"""The MNTE builder enforces the paper's rules on candidates and reports the gaps. The
candidates are real faces (a shared HDTF clip) dubbed with real speech in the candidate's
language, or deliberately wrong: English speech labelled Korean, a face far under 512 px, a
2-second clip. Each ends with its reason; the report counts what each language still lacks.
A build that asks for less than the rules (shorter clips, smaller faces) is refused before
any work, from the library and from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from talkbench import media
from talkbench.cli import app
from talkbench.cli.common import run_guarded
from talkbench.datasets.pipeline import build_dataset
from talkbench.datasets.sources import BuildRuleError, check_build_options
from talkbench.datasets.sources.mnte import MIN_FACE_PX, MIN_SECONDS

RATE = media.AUDIO_RATE


def _dub(shared, out, seconds: float, speech_file: str) -> None:
    frames = media.read_frames(shared / "video" / "WDA_KatieHill_000.mp4")[: int(seconds * 25)]
    audio = media.read_audio(shared / "speech" / speech_file)[: int(seconds * RATE)]
    audio = np.pad(audio, (0, max(0, int(seconds * RATE) - len(audio))))
    media.write_video(out, frames, audio=audio)


@pytest.mark.slow
@pytest.mark.shared_data
def test_mnte_rules_and_report(shared_data, tmp_path):
    cand = tmp_path / "candidates"
    cand.mkdir()
    _dub(shared_data, cand / "ja_dub.mp4", 4.0, "ja/japanese.wav")
    _dub(shared_data, cand / "ko_wrong.mp4", 4.0, "en/RD_Radio31_000.wav")
    _dub(shared_data, cand / "tr_short.mp4", 2.0, "tr/tur-a94314706d130a4eb9496fb4cb481978_48.wav")
    (cand / "manifest.csv").write_text(
        "clip_id,language,source,start,end,note\n"
        "ja_001,ja,ja_dub.mp4,,,HDTF face dubbed with SadTalker japanese.wav\n"
        "ko_001,ko,ko_wrong.mp4,,,English speech labelled Korean (must be caught)\n"
        f"ar_001,ar,{shared_data / 'video' / 'latentsync_demo1_video.mp4'},0,4,face far under 512 px\n"
        "tr_001,tr,tr_short.mp4,,,2 s: under the 3 s minimum\n"
    )
    summary = build_dataset("mnte", cand / "manifest.csv", tmp_path / "mnte", workers=2, progress=False)
    report = summary.mnte
    assert report["ja"] == {"accepted": ["ja_001"], "missing": 4, "rejected": {}}
    assert report["ko"]["rejected"] == {"ko_001": "language_mismatch"}
    assert report["ar"]["rejected"] == {"ar_001": "face_too_small"}
    assert report["tr"]["rejected"] == {"tr_001": "too_short"}
    assert report["sw"] == report["zh"] == {"accepted": [], "missing": 5, "rejected": {}}
    assert sum(r["missing"] for r in report.values()) == 29
    # and the terminal summary shows the curator the same gaps
    from rich.console import Console

    from talkbench.datasets.pipeline import summary_tables

    console = Console(width=200, record=True)
    for table in summary_tables(summary):
        console.print(table)
    text = console.export_text()
    assert "MNTE: 5 clips per language" in text and "ko_001 (language_mismatch)" in text
    assert "ar_001 (face_too_small)" in text


def _one_clip_manifest(folder: Path) -> Path:
    manifest = folder / "manifest.csv"
    manifest.write_text("clip_id,language,source,start,end,note\nja_001,ja,ja.mp4,,,\n")
    return manifest


@pytest.mark.parametrize("option,value,message", [
    ("min_seconds", 2.0, "min_seconds (--min-seconds) = 2 s breaks mnte's rule"),
    ("min_face_px", 256, "min_face_px (--min-face-px) = 256 px breaks mnte's rule"),
    ("check_language", False, "check_language (--no-check-language) breaks mnte's rule"),
])
def test_a_build_below_the_mnte_rules_is_refused(tmp_path, option, value, message):
    """The paper's MNTE clips are at least 3 s with a face of at least 512 px: a build asking
    for less is an error naming the option and the rule, and writes nothing."""
    assert (MIN_SECONDS, MIN_FACE_PX) == (3.0, 512)
    out = tmp_path / "out"
    with pytest.raises(BuildRuleError) as err:
        build_dataset("mnte", _one_clip_manifest(tmp_path), out, workers=0, progress=False, **{option: value})
    assert message in str(err.value)
    assert "at least 3 s with a face of at least 512 px" in str(err.value)
    assert not out.exists()


def test_the_mnte_rules_allow_stricter_builds_and_bind_no_other_source():
    check_build_options("mnte", min_seconds=3.0, min_face_px=512)
    check_build_options("mnte", min_seconds=5.0, min_face_px=1024)
    check_build_options("MNTE", min_seconds=None, min_face_px=None)  # left out: the defaults
    check_build_options("mnte", check_language=True)
    for source in ("hdtf", "voxceleb", "vfhq", "mead", "files"):
        check_build_options(source, min_seconds=0.5, min_face_px=64, check_language=False)
    with pytest.raises(BuildRuleError, match=r"must be at least 512 px"):
        check_build_options("mnte", min_face_px=511)
    with pytest.raises(BuildRuleError, match=r"must be at least 3 s"):
        check_build_options("mnte", min_seconds=2.99)


class Guarded:
    """The console script: ``talkbench.cli.main`` is ``run_guarded(app)`` on the command line."""

    name = "talkbench"

    def main(self, args=(), prog_name=None, **extra) -> None:
        run_guarded(app, list(args))


@pytest.mark.parametrize("args,message", [
    (["--min-seconds", "2"], "min_seconds (--min-seconds) = 2 s breaks mnte's rule"),
    (["--min-face-px", "256"], "min_face_px (--min-face-px) = 256 px breaks mnte's rule"),
    (["--no-check-language"], "check_language (--no-check-language) breaks mnte's rule"),
])
def test_the_cli_refuses_an_mnte_build_below_the_rules(tmp_path, args, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(Guarded(), ["data", "build", "mnte", "--manifest", str(_one_clip_manifest(tmp_path)),
                                            "--out", str(out), "--workers", "0", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert message in " ".join(result.output.split())
    assert not out.exists()  # refused before the output folder is made
