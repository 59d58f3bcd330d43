"""The evaluation engine on the sample corpus: one pass, shared face analysis, clear
unavailability, frame-count errors and the protocol record."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from talkbench.errors import MetricError
from talkbench.metrics import cpbd, ssim
from talkbench.metrics.engine import EvalSettings, Evaluator, evaluate_folders, evaluate_pair

FAST = EvalSettings(metrics=("ssim", "cpbd", "lmd", "msi", "csim"), csim_frame_stride=10)


@pytest.fixture(scope="module")
def clip(sample_clips):
    return sample_clips[0]


@pytest.fixture(scope="module")
def mismatched(sample_clips):
    """Two sample clips whose lengths differ by more than the protocol's 2 frames."""
    from talkbench import media

    first = sample_clips[0]
    frames = media.probe(first.video).frame_count
    other = next(c for c in sample_clips[1:] if abs(media.probe(c.video).frame_count - frames) > 2)
    return first, other


def test_ground_truth_against_itself(clip):
    result = evaluate_pair(clip.video, clip.video, settings=FAST)
    values = result["clips"][0]["values"]
    assert values["ssim"] == pytest.approx(1.0, abs=1e-9)
    assert values["lmd"] == 0 and values["m_lmd"] == 0
    assert values["csim_dlib"] == pytest.approx(1.0, abs=1e-6)
    assert 0 < values["msi"] <= 1 and 0 < values["cpbd"] < 1
    assert result["aggregates"]["ssim"] == {"mean": values["ssim"], "clips": 1}
    assert result["clips"][0]["faces"]["generated_frames_without_face"] == 0
    protocol = result["protocol"]
    assert protocol["resolution"] == 256 and protocol["fps"] == 25
    assert protocol["metric_versions"]["ssim"] == ssim.VERSION
    assert "shape_predictor_68_face_landmarks.dat" in protocol["face_models_sha256"]
    assert protocol["frame_counts"][clip.id]["compared"] == result["clips"][0]["frames"]["generated"]
    json.dumps(result)  # plain data all the way down


def test_values_equal_the_metric_functions_on_the_same_frames(clip, sample_clips):
    from talkbench import media

    gen = media.read_frames(clip.video, size=256)
    ref = gen[::-1].copy()
    result = evaluate_pair(gen, ref, settings=EvalSettings(metrics=("ssim", "cpbd")))
    values = result["clips"][0]["values"]
    assert values["ssim"] == pytest.approx(ssim.ssim_frames(gen, ref).mean(), abs=1e-12)
    assert values["cpbd"] == pytest.approx(cpbd.cpbd_frames(gen).mean(), abs=1e-12)


def test_no_reference_metrics_run_without_ground_truth(clip):
    portrait = clip.video.parent / "portrait.png"
    result = evaluate_pair(clip.video, None, settings=FAST)
    clip_result = result["clips"][0]
    assert set(clip_result["values"]) >= {"cpbd", "msi", "msi_face"}
    assert clip_result["unavailable"]["ssim"] == "no ground-truth video given"
    assert "portrait" in clip_result["unavailable"]["csim"]
    assert not portrait.exists()


def test_csim_against_a_portrait(clip, tmp_path):
    from PIL import Image

    from talkbench import media

    first = next(media.iter_frames(clip.video))
    Image.fromarray(first).save(tmp_path / "portrait.png")
    result = evaluate_pair(clip.video, None, tmp_path / "portrait.png", settings=FAST)
    assert 0.9 < result["clips"][0]["values"]["csim_dlib"] <= 1.0
    assert result["protocol"]["csim_reference"] == "portrait"  # what "auto" resolved to


def test_the_protocol_names_the_csim_reference_actually_used(sample_clips, tmp_path):
    """"auto" means the portrait when there is one, else the ground-truth frame; a folder where
    only some clips have portraits mixes the two, and the protocol must say so."""
    from PIL import Image

    from talkbench import media

    settings = EvalSettings(metrics=("csim",), csim_frame_stride=20)
    with_portrait, without = sample_clips[0], sample_clips[1]
    portrait = tmp_path / "portrait.png"
    Image.fromarray(next(media.iter_frames(with_portrait.video))).save(portrait)
    alone = Evaluator(settings)
    alone.evaluate_clip(without.id, without.video, without.video)
    assert alone.protocol().csim_reference == "ground-truth-frame"
    mixed = Evaluator(settings)
    mixed.evaluate_clip(with_portrait.id, with_portrait.video, with_portrait.video, portrait)
    assert mixed.protocol().csim_reference == "portrait"
    mixed.merge(alone)
    assert mixed.protocol().csim_reference == "mixed:ground-truth-frame+portrait"
    assert Evaluator(settings).protocol().csim_reference == "auto"  # nothing measured yet


def test_missing_weights_make_a_metric_unavailable_not_fatal(clip):
    result = evaluate_pair(clip.video, clip.video, settings=EvalSettings(metrics=("ssim", "fid")))
    if "fid" in result["distribution"]:
        pytest.skip("FID weights are installed on this machine")
    assert "talkbench weights fetch inception-fid" in result["unavailable"]["fid"]
    assert "ssim" in result["clips"][0]["values"]


def test_faceless_frames_are_counted_and_reported():
    blank = np.zeros((6, 256, 256, 3), np.uint8)
    result = evaluate_pair(blank, blank, settings=FAST)
    clip_result = result["clips"][0]
    assert clip_result["faces"]["generated_frames_without_face"] == 6
    for metric in ("lmd", "msi", "csim"):
        assert clip_result["unavailable"][metric] == "no face found in any generated frame"
    assert clip_result["values"]["ssim"] == pytest.approx(1.0)


def test_frame_counts_differing_by_more_than_two_name_both_files(mismatched):
    a, b = mismatched[0].video, mismatched[1].video
    with pytest.raises(MetricError) as info:
        evaluate_pair(a, b, settings=EvalSettings(metrics=("ssim",)))
    assert str(a) in str(info.value) and str(b) in str(info.value) and "at most 2" in str(info.value)


def test_folders_matched_by_clip_id_and_errors_collected(mismatched, tmp_path):
    good, bad = mismatched
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    for c in (good, bad):
        shutil.copy(c.video, gen / c.video.name)
    shutil.copy(good.video, ref / good.video.name)
    shutil.copy(good.video, ref / bad.video.name)  # the wrong length for ``bad``
    result = evaluate_folders(gen, ref, settings=EvalSettings(metrics=("ssim",)))
    assert [c["id"] for c in result["clips"]] == [good.id]
    assert result["errors"][0]["id"] == bad.id and "at most 2" in result["errors"][0]["error"]
    (gen / "extra.mp4").write_bytes(good.video.read_bytes())
    with pytest.raises(MetricError, match="no ground truth for generated clips extra"):
        evaluate_folders(gen, ref)


def test_evaluators_merge_by_addition(sample_clips):
    settings = EvalSettings(metrics=("ssim",))
    one, two, whole = Evaluator(settings), Evaluator(settings), Evaluator(settings)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(20, 2048))
    one.fid_generated.update(features[:7])
    two.fid_generated.update(features[7:])
    whole.fid_generated.update(features)
    one.merge(two)
    assert one.fid_generated.count == 20
    assert np.allclose(one.fid_generated.mean_cov()[1], whole.fid_generated.mean_cov()[1], atol=1e-12)


def test_each_clip_is_face_analysed_once_per_process(clip):
    """Scoring several methods against one ground truth analyses the ground truth once; the
    ground-truth method, being its own reference, costs one analysis, not two."""
    from talkbench.face import get_backend
    from talkbench.metrics import engine

    class Counting:  # the real dlib backend, counting its detector calls
        name = "dlib"

        def __init__(self):
            self.inner, self.detected = get_backend("dlib"), 0

        def detect(self, image):
            self.detected += 1
            return self.inner.detect(image)

        def __getattr__(self, item):
            return getattr(self.inner, item)

    backend = Counting()
    frames = engine.media.read_frames(clip.video, size=256)[:20]
    first = engine.face_track(frames, backend)
    again = engine.face_track(frames.copy(), backend)
    assert backend.detected == 20 and again is first
    assert not first.landmarks.flags.writeable
    engine.face_track(frames[::-1].copy(), backend)  # other content: analysed
    assert backend.detected == 40


def test_merged_evaluator_keeps_the_face_model_hashes(clip):
    """The leaderboard merges per-language-group evaluators into a fresh one: the protocol it
    stores must still name the face models that produced the landmarks."""
    settings = EvalSettings(metrics=("lmd",))
    part, merged = Evaluator(settings), Evaluator(settings)
    part.evaluate_clip(clip.id, clip.video, clip.video)
    merged.merge(part)
    hashes = merged.protocol().face_models_sha256
    assert hashes and hashes == part.protocol().face_models_sha256
    assert all(len(h) == 64 for h in hashes.values())


def test_unknown_names_fail_early():
    with pytest.raises(ValueError, match="unknown metric 'sharpness'"):
        Evaluator(EvalSettings(metrics=("sharpness",)))
    with pytest.raises(ValueError, match="unknown identity backend 'vgg'"):
        Evaluator(EvalSettings(identity_backend="vgg"))


def test_arcface_without_weights_is_unavailable_with_the_fix(clip):
    from talkbench import weights

    if weights.is_available("arcface-r100"):
        pytest.skip("ArcFace weights are installed on this machine")
    settings = EvalSettings(metrics=("csim", "ssim"), identity_backend="arcface", csim_frame_stride=10)
    result = evaluate_pair(clip.video, clip.video, settings=settings)
    assert "talkbench weights import arcface-r100 PATH" in result["unavailable"]["csim"]
    assert "csim_dlib" not in result["clips"][0]["values"]  # never silently falls back to dlib


def test_cli_eval_json(clip):
    from talkbench.cli import app

    result = CliRunner().invoke(
        app, ["eval", "-g", str(clip.video), "-r", str(clip.video), "-m", "ssim,cpbd", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["aggregates"]["ssim"]["mean"] == pytest.approx(1.0)
    assert len(data["protocol_sha256"]) == 64


def test_cli_eval_names_the_file_for_bad_input(tmp_path):
    """Through the console script, as a user meets it: one line naming the file, exit 2."""
    import subprocess
    import sys

    missing = tmp_path / "none.mp4"
    result = subprocess.run([sys.executable, "-m", "talkbench", "eval", "-g", str(missing)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr and str(missing) in result.stderr.replace("\n", "")


@pytest.mark.slow
def test_fid_streams_frames_and_caches_ground_truth_statistics(sample_clips, random_fid_state, tmp_path, monkeypatch):
    from talkbench import media
    from talkbench.metrics.engine import evaluate_pairs
    from talkbench.metrics.fid import GaussianStats, fid_from_stats, inception_features, load_feature_extractor

    monkeypatch.setenv("TALKBENCH_STATS_DIR", str(tmp_path / "stats"))
    model = load_feature_extractor(random_fid_state)
    settings = EvalSettings(metrics=("ssim", "fid"), fid_frame_stride=12)
    pairs = [(c.id, c.video, c.video, None) for c in sample_clips[:2]]
    shifted = [(cid, media.read_frames(gen, size=256)[::-1].copy(), ref, None) for cid, gen, ref, _ in pairs]

    first = evaluate_pairs(shifted, settings, models={"fid": model})
    generated, reference = GaussianStats.empty(), GaussianStats.empty()
    for (_, gen, ref, _) in shifted:
        generated.update(inception_features(model, gen[::12]))
        reference.update(inception_features(model, media.read_frames(ref, size=256)[::12]))
    assert first["distribution"]["fid"] == pytest.approx(fid_from_stats(generated, reference), rel=1e-9)
    assert first["distribution"]["fid_samples"]["reference"] == reference.count
    assert first["protocol"]["fid_frame_stride"] == 12
    assert not first["timing"]["reference_stats_cached"]

    again = evaluate_pairs(shifted, settings, models={"fid": model})
    assert again["timing"]["reference_stats_cached"]
    assert again["distribution"]["fid"] == pytest.approx(first["distribution"]["fid"], rel=1e-12)

    # The cached ground truth is all reference frames: not cut to what a method generated
    # (two frames short here, within the protocol), and not tied to the other metrics chosen.
    shorter = [(cid, gen[:-2], ref, None) for cid, gen, ref, _ in shifted]
    other_metrics = EvalSettings(metrics=("ssim", "fid", "csim"), fid_frame_stride=12, csim_frame_stride=50)
    third = evaluate_pairs(shorter, other_metrics, models={"fid": model})
    assert third["timing"]["reference_stats_cached"]
    assert third["distribution"]["fid_samples"]["reference"] == reference.count
    fresh = evaluate_pairs(shorter, EvalSettings(metrics=("fid",), fid_frame_stride=12, cache_reference_stats=False),
                           models={"fid": model})
    assert fresh["distribution"]["fid"] == pytest.approx(third["distribution"]["fid"], rel=1e-9)


@pytest.mark.shared_data
def test_real_clip_at_another_frame_rate(shared_data):
    """A real HDTF clip recorded at 29.97 fps is resampled to the protocol's 25 fps and 256 px."""
    from talkbench import media

    path = shared_data / "video" / "RD_Radio10_0_clip_0.mp4"
    result = evaluate_pair(path, path, settings=EvalSettings(metrics=("ssim", "cpbd", "lmd", "msi")))
    clip_result = result["clips"][0]
    assert clip_result["frames"]["compared"] == media.frame_count_at(media.probe(path), 25)
    assert clip_result["values"]["ssim"] == pytest.approx(1.0) and clip_result["values"]["lmd"] == 0
    assert clip_result["faces"]["generated_frames_without_face"] == 0
    assert 0 < clip_result["values"]["msi_face"] < 1
