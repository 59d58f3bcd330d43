"""An emotional benchmark end to end: clips labelled with emotions (as ``mead-emotion`` labels
MEAD's), a built-in method generated and scored for emotion accuracy, and the board's accuracy
per emotion. Real sample clips stand in for MEAD: their two portraits show a smiling face
(astronaut) and a neutral one (Grace Hopper)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from talkbench.cli import app
from talkbench.leaderboard.benchmarks import clip_list_sha256, get_benchmark
from talkbench.leaderboard.evaluate import run_methods
from talkbench.leaderboard.ranking import leaderboard
from talkbench.leaderboard.tables import boards_csv, boards_markdown
from talkbench.metrics.settings import EvalSettings

# the portrait each clip animates shows: tr_001 happy is a wrong label on purpose
LABELS = {"zh_001": "happy", "tr_001": "happy", "de_001": "neutral"}


@pytest.fixture(scope="module")
def emotional_spec():
    sample = get_benchmark("sample")
    clips = [c.model_copy(update={"emotion": LABELS[c.id], "intensity": 3}) for c in sample.clips if c.id in LABELS]
    return sample.model_copy(update={"name": "sample-emotion", "clips": clips, "labels": ["emotion"], "main_score": "acc_emo",
                                     "board_values": ["m_lmd"], "clip_list_sha256": clip_list_sha256(clips)})


def test_labels_change_the_clip_list_hash(emotional_spec):
    relabelled = [c.model_copy(update={"emotion": "sad"}) for c in emotional_spec.clips]
    assert clip_list_sha256(relabelled) != emotional_spec.clip_list_sha256
    unlabelled = [c.model_copy(update={"emotion": None, "intensity": None}) for c in emotional_spec.clips]
    assert clip_list_sha256(unlabelled) == clip_list_sha256([c for c in get_benchmark("sample").clips if c.id in LABELS])


def test_the_board_breaks_emotion_accuracy_down_by_emotion(emotional_spec, tmp_path, monkeypatch):
    from talkbench import weights
    from talkbench.leaderboard.store import Store

    monkeypatch.setenv(weights.ENV_CACHE_DIR, str(tmp_path / "no-weights"))  # SyncNet absent: LSE unmeasured
    store = Store(tmp_path / "lb.duckdb")
    settings = EvalSettings(metrics=("ssim", "lmd", "emotion", "lse"), bootstrap_replicates=10)
    run_methods(store, ["static-source"], emotional_spec, "speech-driven", tmp_path / "out", settings=settings)
    [board] = leaderboard(store, "sample-emotion")
    [row] = board.rows
    assert "acc_emo" in board.metrics and row.value("indo_european", "ssim") is not None
    assert "m_lmd" in board.metrics and "f_lmd" not in board.metrics  # the spec's board_values show M-LMD only
    [breakdown] = board.breakdowns
    assert (breakdown.label, breakdown.metric, breakdown.groups) == ("emotion", "acc_emo", ["happy", "neutral"])
    # static-source repeats the labelled portrait: the smiling face is happy, Grace Hopper neutral
    assert breakdown.rows[0].values == {"happy": 0.5, "neutral": 1.0}
    assert breakdown.rows[0].clips == {"happy": 2, "neutral": 1}
    assert "#### Acc_emo per emotion (mean, clips)" in boards_markdown([board])
    assert "| static-source | 0.500 (2) | 1.000 (1) |" in boards_markdown([board])
    assert "emotion=happy,acc_emo,0.5" in boards_csv([board])
    assert list(board.unmeasured) == ["lse"] and "talkbench weights fetch syncnet-v2" in board.unmeasured["lse"]
    assert "Not measured: lse (" in boards_markdown([board])
    assert board.rank_by == "acc_emo"  # the spec's main score
    assert leaderboard(store, "sample-emotion@2") and not leaderboard(store, "sample-emotion@9")
    assert json.loads(json.dumps(board.to_dict()))["breakdowns"][0]["rows"][0]["values"]["neutral"] == 1.0


def test_score_cli_stores_runs_and_refuses_a_protocol_for_another_table(tmp_path):
    store = tmp_path / "lb.duckdb"
    args = ["score", "ground-truth", "-b", "sample-v2", "--store", str(store), "-o", str(tmp_path / "out"), "-w", "1"]
    refused = CliRunner().invoke(app, [*args, "--protocol", "flowvqtalker-t1", "--metrics", "ssim"])
    assert refused.exit_code != 0 and "flowvqtalker-t1-v1 reproduces FlowVQTalker Table 1" in str(refused.exception)
    unknown = CliRunner().invoke(app, [*args, "no-such-method", "--metrics", "ssim"])
    assert unknown.exit_code != 0 and "no-such-method" in str(unknown.exception)
    assert not (tmp_path / "out").exists()  # refused before generating anything
    result = CliRunner().invoke(app, [*args, "--metrics", "ssim"])
    assert result.exit_code == 0, result.output
    assert "stored run" in result.output and "ground-truth on sample@2" in result.output
    board = CliRunner().invoke(app, ["leaderboard", "--benchmark", "sample-v2", "--store", str(store), "-f", "json"])
    [row] = json.loads(board.stdout)[0]["rows"]
    assert row["method"] == "ground-truth" and row["values"]["indo_european:ssim"] == 1.0
