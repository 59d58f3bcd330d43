"""The leaderboard half of ``talkbench demo``, end to end on the sample corpus."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_run_demo_leaderboard(tmp_path):
    from talkbench.leaderboard.demo import DEMO_RUNS, run_demo_leaderboard
    from talkbench.leaderboard.store import Store

    messages = []
    result = run_demo_leaderboard(tmp_path, metrics=("ssim", "cpbd"), progress=messages.append)
    assert set(result.run_ids) == set(DEMO_RUNS)
    assert ("vqtalker-tiny", "speech-driven") in result.run_ids
    assert ("vqtalker-tokenizer-tiny", "reconstruction") in result.run_ids
    assert result.site.is_file() and result.site.name == "index.html"
    store = Store(result.store)
    runs = store.runs(provenance="measured")
    assert len(runs) == len(DEMO_RUNS) and {r["benchmark"] for r in runs} == {"sample"}
    assert all(len(store.clip_values(r["run_id"])) == 16 for r in runs)  # 8 clips x 2 metrics
    assert len(store.runs(provenance="reported")) == 73
    boards = {b.task: b for b in result.boards if b.provenance == "measured"}
    assert set(boards) == {"speech-driven", "reconstruction"}
    speech = [r.method for r in boards["speech-driven"].rows]
    assert speech[0] == "ground-truth" and set(speech) == {"ground-truth", "h264", "static-source", "vqtalker-tiny"}
    assert store.methods()["vqtalker-tiny"]["kind"] == "builtin"
    assert "tiny model trained by talkbench" in store.methods()["vqtalker-tiny"]["description"]
    # the bounds hold: the ground truth is perfect, re-encoding costs little, a still portrait a lot
    ssim = {r.method: r.value("non_indo_european", "ssim") for r in boards["speech-driven"].rows}
    assert ssim["ground-truth"] == pytest.approx(1.0) and ssim["h264"] > ssim["static-source"]
    assert 0 < ssim["vqtalker-tiny"] < ssim["h264"]
    assert len(result.rich_tables()) == 6  # two boards, each as IE, non-IE and gap tables
    assert any("evaluating ar_001" in m for m in messages)
    assert (tmp_path / "outputs" / "speech-driven" / "sample" / "h264" / "ar_001.mp4").is_file()
