"""``talkbench baselines``: list, show, run (a fake method from a fake checkout, end to end to
an accepted submission) and import (the sample corpus as a 'released' folder)."""

from __future__ import annotations

import numpy as np

import json
import sys

import pytest
import yaml
from typer.testing import CliRunner

from talkbench import media
from talkbench.cli import app
from .fakes import FAKE_METHOD, fake_preset

runner = CliRunner()


def test_list_json_has_every_method_with_status():
    result = runner.invoke(app, ["baselines", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in json.loads(result.stdout)}
    assert len(rows) == 19
    assert rows["EMMN"]["status"] == "reported only" and rows["EMMN"]["code"] == ""
    assert rows["SadTalker"]["status"] == "runnable preset"
    assert rows["SadTalker"]["commit"] == "002631bcc722cd3f0d5a18bd1d7435b109fc9bd0"
    assert "flowvqtalker:1" in rows["Wav2Lip"]["tables"]


def test_show_and_refusals(tmp_path):
    result = runner.invoke(app, ["baselines", "show", "PD-FGC"])
    flat = " ".join(result.output.split())
    assert result.exit_code == 0 and "[appearance | generated" in flat and "panel 1 of 5x1" in flat
    result = runner.invoke(app, ["baselines", "show", "EMMN", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["status"] == "reported only"
    # a dry run shows the real commands for the first clip and runs nothing
    result = runner.invoke(app, ["baselines", "run", "SadTalker", "--benchmark", "sample", "--repo", str(tmp_path),
                                 "--python", "/opt/sadtalker/bin/python", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    argv = plan["steps"][0]["argv"]
    assert argv[:2] == ["/opt/sadtalker/bin/python", "inference.py"] and plan["clip_id"] == "ar_001"
    assert argv[argv.index("--driven_audio") + 1].endswith("/audio/ar_001.wav")
    assert list(tmp_path.iterdir()) == []
    # a method without public code cannot be run
    result = runner.invoke(app, ["baselines", "run", "EMMN", "--benchmark", "sample", "--repo", str(tmp_path)])
    assert result.exit_code != 0 and "code is not public" in str(result.exception)


@pytest.fixture()
def fake_checkout(tmp_path):
    repo = tmp_path / "fake-checkout"
    repo.mkdir()
    (repo / "fake_method.py").write_text(FAKE_METHOD)
    preset = tmp_path / "fake.yaml"
    preset.write_text(yaml.safe_dump(json.loads(fake_preset("--fps", "30", "--size", "200").model_dump_json())))
    return repo, preset


@pytest.mark.slow
def test_run_over_the_sample_benchmark_gives_an_accepted_submission(fake_checkout, tmp_path):
    repo, preset = fake_checkout
    out = tmp_path / "Fake-sample"
    result = runner.invoke(app, ["baselines", "run", str(preset), "--benchmark", "sample", "--repo", str(repo),
                                 "--python", sys.executable, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["validator"] == "accepted" and len(data["done"]) == 8 and data["task"] == "speech-driven"
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(f"{c}.mp4" for c in data["done"])
    assert (tmp_path / "Fake-sample-logs" / "runs.json").exists()


def test_run_limit_is_a_trial(fake_checkout, tmp_path):
    repo, preset = fake_checkout
    result = runner.invoke(app, ["baselines", "run", str(preset), "--benchmark", "sample", "--repo", str(repo),
                                 "--python", sys.executable, "--out", str(tmp_path / "trial"), "--limit", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["done"] == ["ar_001"]
    assert any("missing" in p for p in data["validator"])  # a trial is not a full submission


@pytest.mark.slow
def test_import_folder_onto_the_sample_benchmark(sample_clips, tmp_path):
    src = tmp_path / "released"
    src.mkdir()
    for clip in sample_clips:  # a lossy re-encode: the validator refuses copies of the references
        media.write_video(src / f"{clip.id}.mp4", (np.roll(f, 1, axis=1) for f in media.iter_frames(clip.video)), crf=23)
    (src / "README.txt").write_text("not a video")
    out = tmp_path / "EchoMimic-sample"
    result = runner.invoke(app, ["baselines", "import", str(src), "--method", "EchoMimic", "--benchmark", "sample",
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["validator"] == "accepted" and len(data["matched"]) == 8 and not data["missing"]
    assert yaml.safe_load((out / "submission.yaml").read_text())["method"] == "EchoMimic"


def test_task_choice():
    from talkbench.baselines.external import ExternalMethodError
    from talkbench.cli.baselines import _pick_task
    from talkbench.leaderboard.benchmarks import get_benchmark

    spec = get_benchmark("sample")  # speech-driven and reconstruction
    assert _pick_task(spec, ["reconstruction"], None, "FOMM") == "reconstruction"
    assert _pick_task(spec, ["speech-driven"], None, "SadTalker") == "speech-driven"
    assert _pick_task(spec, [], "reconstruction", "AniTalker") == "reconstruction"  # import of released videos
    with pytest.raises(ExternalMethodError, match="does not do reconstruction"):
        _pick_task(spec, ["speech-driven"], "reconstruction", "SadTalker")
    with pytest.raises(ExternalMethodError, match="has no cross"):
        _pick_task(spec, [], "cross-identity", "X")
