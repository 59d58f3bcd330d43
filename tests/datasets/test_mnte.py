"""The MNTE builder enforces the paper's rules on candidates and reports the gaps. The
candidates are real faces (a shared HDTF clip) dubbed with real speech in the candidate's
language, or deliberately wrong: English speech labelled Korean, a face far under 512 px, a
2-second clip. Each ends with its reason; the report counts what each language still lacks."""

from __future__ import annotations

import numpy as np
import pytest

from talkbench import media
from talkbench.datasets.pipeline import build_dataset

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
    report = summary["mnte"]
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
