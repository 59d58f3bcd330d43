"""Held-out validation during training: the shipped tiny models render sample clips, the
metrics engine scores them, and the best checkpoint is kept by the registry's direction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from talkbench import media
from talkbench.metrics.engine import evaluate_folders
from talkbench.metrics.registry import get_metric
from talkbench.metrics.settings import EvalSettings
from talkbench.vqtalker.best import BestCheckpoint
from talkbench.vqtalker.inference import load_generator, load_tokenizer, speech_backend_from
from talkbench.vqtalker.pretrained import TINY_GENERATOR, TINY_TOKENIZER
from talkbench.vqtalker.validation import (
    LIP_SYNC,
    ValidationError,
    ValidationResult,
    cut_controls,
    validate_generator,
    validate_tokenizer,
    validation_settings,
)

FRAMES = 6


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TINY_TOKENIZER)


@pytest.fixture(scope="module")
def clips(sample_clips):
    return [c.video for c in sample_clips if c.id in ("en_001", "de_001")]


def test_tokenizer_validation_scores_the_written_renders_like_the_engine(tokenizer, clips, tmp_path):
    tokenizer.train()
    result = validate_tokenizer(tokenizer, clips, tmp_path / "step_0000010", "cpu", metrics=("ssim", "lmd"),
                                max_frames=FRAMES)  # fmt: skip
    assert tokenizer.training  # the training model is back in its mode
    assert result.clip_ids == ["en_001", "de_001"] and not result.errors and not result.skipped
    assert result.size == 64 and result.resolution == 256 and result.frames == 2 * FRAMES
    assert result.metric_versions == {"ssim": get_metric("ssim").version, "lmd": get_metric("lmd").version}
    for clip in result.clips:
        for path in (clip.render, clip.reference):
            info = media.probe(path)
            assert (info.width, info.frame_count) == (256, FRAMES)  # upscaled from 64 px, cut to max_frames

    direct = evaluate_folders(tmp_path / "step_0000010" / "renders", tmp_path / "step_0000010" / "references",
                              settings=EvalSettings(metrics=("ssim",), use_cache=False)).evaluations[0]  # fmt: skip
    assert result.values["ssim"] == pytest.approx(direct.summary["ssim"].mean, abs=1e-12)
    for clip in result.clips:
        assert clip.values["ssim"] == pytest.approx(direct.clip(clip.clip_id).values["ssim"], abs=1e-12)
    assert 0.3 < result.values["ssim"] < 0.95  # a real, imperfect 64 px reconstruction
    assert 0 < result.values["lmd"] < 0.5

    again = ValidationResult.from_dict(json.loads((tmp_path / "step_0000010" / "validation.json").read_text()))
    assert again == result


def test_a_run_writes_references_once_and_keeps_only_the_latest_renders(tokenizer, clips, tmp_path):
    run = tmp_path / "validation"
    first = validate_tokenizer(tokenizer, clips, run / "step_0000010", "cpu", metrics=("ssim",), max_frames=FRAMES,
                               run_dir=run)  # fmt: skip
    references = sorted(run.glob("references/tokenizer-*/*.mp4"))
    assert [p.stem for p in references] == ["de_001", "en_001"] and not (run / "step_0000010" / "references").exists()
    written = {p: p.stat().st_mtime_ns for p in references}
    second = validate_tokenizer(tokenizer, clips, run / "step_0000020", "cpu", metrics=("ssim",), max_frames=FRAMES,
                                run_dir=run)  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in references} == written  # reused, not rewritten
    assert sorted(run.glob("references/*/*.mp4")) == references
    assert [c.reference for c in second.clips] == [c.reference for c in first.clips]
    assert sorted(p.relative_to(run).as_posix() for p in run.glob("*/renders/*.mp4")) == \
        ["step_0000020/renders/de_001.mp4", "step_0000020/renders/en_001.mp4"]  # one set of renders: the latest
    assert (run / "step_0000010" / "validation.json").is_file()  # every step keeps its scores
    assert second.values["ssim"] == pytest.approx(first.values["ssim"], abs=1e-12)
    # Another cut is another reference folder; a rewritten clip file is cut again.
    copy = tmp_path / "en_001.mp4"
    copy.write_bytes(Path(clips[0]).read_bytes())
    validate_tokenizer(tokenizer, [copy], run / "step_0000030", "cpu", metrics=("ssim",), max_frames=FRAMES, run_dir=run)
    again = next(p for p in references if p.stem == "en_001")
    assert again.stat().st_mtime_ns != written[again]  # a different file (the copy) under the same clip id
    assert len(list(run.glob("references/*"))) == 1
    validate_tokenizer(tokenizer, [copy], run / "step_0000040", "cpu", metrics=("ssim",), max_frames=FRAMES - 1,
                       run_dir=run)  # fmt: skip
    assert len(list(run.glob("references/*"))) == 2


def _tokenizer_stage(tokenizer, clip, out_dir):
    """A training stage whose validation is the tiny tokenizer's (the model does not train, so
    every validation scores the same and the first stays the best)."""
    from talkbench.vqtalker.training import Stage

    class TokenizerStage(Stage):
        def train_step(self):
            self.step += 1
            return {"loss": 0.0}

        def validate(self, out_dir):
            return validate_tokenizer(tokenizer, [clip], out_dir, "cpu", metrics=("ssim",), max_frames=FRAMES,
                                      run_dir=self.validation_dir)  # as train.py does

        def state_dict(self):
            return {"format": "tokenizer-stage/1", "step": self.step}

    return TokenizerStage({"train": {"best_metric": "ssim", "validate_metrics": ["ssim"]}}, out_dir)


def test_the_best_checkpoints_renders_survive_later_validations(tokenizer, clips, tmp_path, caplog):
    from talkbench.vqtalker.training import run_fit

    stage = _tokenizer_stage(tokenizer, clips[0], tmp_path)
    rows = run_fit(stage, steps=3, log_every=1, checkpoint_every=3, eval_every=None, validate_every=1)
    assert [r["val_ssim"] for r in rows] == [rows[0]["val_ssim"]] * 3 and rows[0]["val_ssim"] > 0.3
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert best["step"] == 1  # ties do not replace it
    run = tmp_path / "validation"
    assert sorted(p.relative_to(run).as_posix() for p in run.glob("*/renders/*.mp4")) == \
        ["step_0000001/renders/en_001.mp4", "step_0000003/renders/en_001.mp4"]  # the best's and the latest's
    assert all((run / f"step_000000{i}" / "validation.json").is_file() for i in (1, 2, 3))
    # A validation outside the run's validation folder removes nothing there.
    stage.validate(tmp_path / "elsewhere" / "step_0000004")
    assert len(list(run.glob("*/renders/*.mp4"))) == 2 and (tmp_path / "elsewhere" / "step_0000004" / "renders").is_dir()
    assert "is not a folder of the run's validations" in caplog.text
    # Nor does a run whose best.json cannot be read.
    (tmp_path / "checkpoints" / "best.json").write_text("{}")
    stage.validate(run / "step_0000005")
    assert len(list(run.glob("*/renders/*.mp4"))) == 3 and "earlier renders kept" in caplog.text
    # Once the best is another step, the old best's renders go too.
    (tmp_path / "checkpoints" / "best.json").write_text(json.dumps({**best, "step": 5, "validation": str(
        run / "step_0000005" / "validation.json")}))
    stage.validate(run / "step_0000006")
    assert sorted(p.relative_to(run).as_posix() for p in run.glob("*/renders/*.mp4")) == \
        ["step_0000005/renders/en_001.mp4", "step_0000006/renders/en_001.mp4"]


def test_missing_weights_and_bad_clips_are_recorded_not_raised(tokenizer, clips, tmp_path, monkeypatch):
    monkeypatch.setenv("TALKBENCH_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    settings = EvalSettings(identity_backend="arcface", use_cache=False, bootstrap_replicates=0)
    result = validate_tokenizer(tokenizer, [clips[0], broken], tmp_path / "v", metrics=("ssim", "lpips", "csim"),
                                max_frames=3, settings=settings)  # fmt: skip
    assert set(result.values) == {"ssim"}
    assert "alexnet" in result.skipped["lpips"] and "arcface-r100" in result.skipped["csim"]
    assert set(result.errors) == {"broken"} and "broken.mp4" in result.errors["broken"]
    assert result.clips[0].values["ssim"] > 0 and result.clips[1].render is None


def test_unknown_metric_is_an_error_naming_it(tokenizer, clips, tmp_path):
    assert validation_settings("ssim, lmd").metrics == ("ssim", "lmd")  # a config's comma-separated string
    assert validation_settings(None).metrics == ("ssim", "lmd", "csim", "lpips")
    with pytest.raises(ValidationError, match="sharpness"):
        validate_tokenizer(tokenizer, clips, tmp_path, metrics=("ssim", "sharpness"))
    with pytest.raises(ValidationError, match="best_metric 'sharpness'"):
        BestCheckpoint("sharpness", tmp_path)


def _result(values: dict[str, float], tmp_path) -> ValidationResult:
    return ValidationResult("tokenizer", values, [], {}, {}, ("lmd",), {}, None, None, 4, 8, 64, 256, 25.0,
                            str(tmp_path), 0.0)  # fmt: skip


def _saver(tag: int):
    return lambda path: torch.save({"tag": tag}, path)


def test_best_checkpoint_keeps_the_lowest_lmd_and_resumes(tmp_path):
    best = BestCheckpoint("lmd", tmp_path)
    assert not best.higher_is_better and best.best is None
    assert best.update(100, _result({"lmd": 0.30, "ssim": 0.5}, tmp_path), _saver(100))
    assert best.update(200, _result({"lmd": 0.20, "ssim": 0.4}, tmp_path), _saver(200))  # lower LMD replaces
    assert not best.update(300, _result({"lmd": 0.25, "ssim": 0.9}, tmp_path), _saver(300))  # higher does not
    assert not best.update(400, _result({"ssim": 0.9}, tmp_path), _saver(400))  # LMD skipped this time
    assert torch.load(tmp_path / "checkpoints" / "best.pt")["tag"] == 200
    record = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert (record["metric"], record["value"], record["step"]) == ("lmd", 0.20, 200)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.json", "best.pt"]  # no temporaries

    resumed = BestCheckpoint("lmd", tmp_path)
    assert (resumed.best.value, resumed.best.step) == (0.20, 200)
    assert not resumed.update(500, _result({"lmd": 0.21}, tmp_path), _saver(500))
    assert resumed.update(600, _result({"lmd": 0.19}, tmp_path), _saver(600))
    assert torch.load(tmp_path / "checkpoints" / "best.pt")["tag"] == 600


def test_best_checkpoint_direction_comes_from_the_registry(tmp_path):
    ssim = BestCheckpoint("ssim", tmp_path / "a")
    assert ssim.higher_is_better
    assert ssim.update(1, _result({"ssim": 0.5}, tmp_path), _saver(1))
    assert not ssim.update(2, _result({"ssim": 0.4}, tmp_path), _saver(2))
    assert ssim.update(3, _result({"ssim": 0.6}, tmp_path), _saver(3))
    csim = BestCheckpoint("csim", tmp_path / "b")  # a metric name: whichever CSIM value the run gave
    assert csim.higher_is_better and csim.update(1, _result({"csim_dlib": 0.8}, tmp_path), _saver(1))
    assert csim.best.value_name == "csim_dlib"
    assert not BestCheckpoint("lpips", tmp_path / "c").higher_is_better


@pytest.mark.slow
def test_generator_validation_generates_from_first_frame_and_audio(tokenizer, clips, tmp_path):
    generator, ckpt = load_generator(TINY_GENERATOR)
    backend = speech_backend_from(ckpt["config"], meta=ckpt.get("meta"))
    result = validate_generator(generator, tokenizer, backend, clips[:1], tmp_path, "cpu", metrics=("ssim", "lmd"),
                                max_frames=12, controls_cache_dir=tmp_path / "cache")  # fmt: skip
    assert not result.errors and result.stage == "generator" and result.frames == 12
    render = media.probe(result.clips[0].render)
    assert render.frame_count == 12 and render.has_audio
    assert 0.3 < result.values["ssim"] < 0.95 and result.values["lmd"] > 0
    assert LIP_SYNC in result.values or LIP_SYNC in result.skipped
    cached = cut_controls(Path(clips[0]), 12, 25.0, tmp_path / "cache")  # what the run stored
    assert len(list((tmp_path / "cache" / "validation-controls").iterdir())) == 1
    fresh = cut_controls(Path(clips[0]), 12, 25.0)
    np.testing.assert_array_equal(cached.stacked(), fresh.stacked())
