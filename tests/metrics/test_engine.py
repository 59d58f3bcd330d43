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


def test_no_reference_metrics_run_without_ground_truth(clip, tmp_path):
    """Without ground truth and without --source-portrait: the no-reference metrics run, the
    others say why not, and a portrait.png lying beside the video is not picked up (the only
    portrait is the one the caller names)."""
    from PIL import Image

    from talkbench import media

    video = tmp_path / clip.video.name
    shutil.copy(clip.video, video)
    Image.fromarray(next(media.iter_frames(clip.video))).save(tmp_path / "portrait.png")
    Image.fromarray(next(media.iter_frames(clip.video))).save(tmp_path / f"{clip.id}.png")
    result = evaluate_pair(video, None, settings=FAST)
    clip_result = result["clips"][0]
    assert set(clip_result["values"]) == {"cpbd", "msi", "msi_face"}
    assert clip_result["unavailable"] == {
        "ssim": "no ground-truth video given",
        "lmd": "no ground-truth video given",
        "csim": "CSIM needs a source portrait or the ground-truth video",
    }
    assert result["protocol"]["csim_reference"] == "auto"  # CSIM measured against nothing
    assert "csim_frames" not in clip_result["faces"]
    # the same frames in the shipped folder give the same values, bit for bit
    shipped = evaluate_pair(clip.video, None, settings=FAST)["clips"][0]
    assert shipped["values"] == clip_result["values"]


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


def test_missing_weights_make_a_metric_unavailable_not_fatal(clip, tmp_path, monkeypatch):
    from talkbench import weights

    monkeypatch.setenv(weights.ENV_CACHE_DIR, str(tmp_path))  # an empty weights folder
    result = evaluate_pair(clip.video, clip.video, settings=EvalSettings(metrics=("ssim", "fid")))
    assert "fid" not in result["distribution"]
    assert "talkbench weights fetch inception-fid" in result["unavailable"]["fid"]
    assert f"not installed in {tmp_path}" in result["unavailable"]["fid"]  # the folder it looked in
    assert result["clips"][0]["unavailable"]["fid"] == result["unavailable"]["fid"]
    assert result["clips"][0]["values"]["ssim"] == pytest.approx(1.0, abs=1e-9)
    assert "inception-fid" not in result["protocol"]["weights_sha256"]


class CountingBackend:
    """The real dlib backend, counting the frames it is asked to analyse."""

    def __init__(self):
        from talkbench.face import get_backend

        self.backend, self.detected = get_backend("dlib"), 0
        self.name = self.backend.name

    def detect(self, frame):
        self.detected += 1
        return self.backend.detect(frame)

    def landmarks(self, frame, box):
        return self.backend.landmarks(frame, box)


def test_equal_frames_are_analysed_once_with_the_same_result(clip):
    from talkbench import media
    from talkbench.metrics.engine import analyse_frames

    frames = media.read_frames(clip.video, size=256)[:3]
    repeated = frames[[0, 1, 0, 2, 1, 0]]  # a still or frozen stretch of video
    counting = CountingBackend()
    track = analyse_frames(repeated, counting)
    assert counting.detected == 3
    one_by_one = [analyse_frames(frame[None], counting.backend) for frame in repeated]
    assert np.array_equal(track.landmarks, np.concatenate([t.landmarks for t in one_by_one]))
    assert np.array_equal(track.sizes, np.concatenate([t.sizes for t in one_by_one]))
    assert track.boxes == [t.boxes[0] for t in one_by_one] and track.valid.all()
    assert len(set(track.digests)) == 3 and track.digests[0] == track.digests[2] == track.digests[5]


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


class StandInI3D:
    """FVD's detector call (uint8 clips (N, 3, 16, H, W) -> (N, 400) features) with fixed random
    weights: the I3D TorchScript cannot be downloaded here, and what is tested is the engine's
    accumulation and merging around the detector, which is the same for any detector."""

    def __init__(self):
        import torch

        self.weight = torch.randn(400, 3 * 2 * 4 * 4, generator=torch.Generator().manual_seed(0))

    def __call__(self, clips, rescale=False, resize=False, return_features=False):
        import torch.nn.functional as F

        x = clips.float() / 127.5 - 1 if rescale else clips.float()
        return F.adaptive_avg_pool3d(x, (2, 4, 4)).flatten(1) @ self.weight.T


@pytest.fixture(scope="module")
def split_clips(sample_clips):
    """Three real clips, 32 frames each (two FVD windows): generated = the reference reversed,
    so every paired metric has a value other than its identity value."""
    from talkbench import media

    out = []
    for c in sample_clips[:3]:
        reference = media.read_frames(c.video, size=256)[:32]
        out.append((c.id, reference[::-1].copy(), reference))
    return out


def _evaluate(settings, models, clips) -> Evaluator:
    evaluator = Evaluator(settings, models)
    for clip_id, generated, reference in clips:
        evaluator.evaluate_clip(clip_id, generated, reference)
    return evaluator


def _assert_same_sums(a, b) -> None:
    assert a.count == b.count
    assert np.array_equal(a.total, b.total) and np.array_equal(a.outer, b.outer)


def test_evaluators_split_across_workers_and_merged_equal_one_evaluator(split_clips):
    """A benchmark split over workers (2 clips + 1 clip) and merged gives one evaluator's result:
    the same per-clip records, means, FVD float64 sums and FVD, and the same protocol. Merged in
    clip order the sums are added in the same order as one evaluator adds them, so everything
    is equal bit for bit; merged the other way round the two partial sums swap operands (float
    addition is commutative), so sums and FVD stay exact and only the means, taken over the
    clips in another order, may differ in the last bit. (Three or more partial sums regroup
    the additions: then the sums, and FVD/FID from them, agree to float64 rounding only.)"""
    settings = EvalSettings(metrics=("ssim", "cpbd", "lmd", "msi", "csim", "fvd"), csim_frame_stride=8)
    models = {"fvd": StandInI3D()}
    whole = _evaluate(settings, models, split_clips)
    workers = [_evaluate(settings, models, split_clips[:2]), _evaluate(settings, models, split_clips[2:])]
    in_order, reversed_ = Evaluator(settings, models), Evaluator(settings, models)
    for w in workers:
        in_order.merge(w)
    for w in workers[::-1]:
        reversed_.merge(w)

    one = whole.result()
    assert set(one["aggregates"]) == {"ssim", "cpbd", "lmd", "f_lmd", "m_lmd", "f_lmd_iod", "m_lmd_iod",
                                      "msi", "msi_face", "csim_dlib"}
    assert all(a["clips"] == 3 for a in one["aggregates"].values())
    assert one["distribution"]["fvd_samples"] == {"generated": 6, "reference": 6}  # 2 windows x 3 clips
    assert one["unavailable"] == {} and one["errors"] == []
    ids = [c["id"] for c in one["clips"]]
    for merged, order in ((in_order, ids), (reversed_, ids[2:] + ids[:2])):
        got = merged.result()
        assert [c["id"] for c in got["clips"]] == order
        by_id = {c["id"]: c for c in got["clips"]}
        assert [by_id[i] for i in ids] == one["clips"]  # every per-clip value and count, exactly
        for kind in ("fvd_generated", "fvd_reference", "fid_generated", "fid_reference"):
            _assert_same_sums(getattr(merged, kind), getattr(whole, kind))
        assert got["distribution"] == one["distribution"]  # FVD from equal sums: equal
        assert got["protocol"] == one["protocol"] and got["protocol_sha256"] == one["protocol_sha256"]
        assert got["timing"]["frames"] == one["timing"]["frames"] == 3 * 32
        assert got["aggregates"].keys() == one["aggregates"].keys()
        for name, agg in one["aggregates"].items():
            assert got["aggregates"][name]["clips"] == agg["clips"]
            values = [by_id[i]["values"][name] for i in order]
            assert got["aggregates"][name]["mean"] == float(np.mean(values))  # mean over its clips
            if merged is in_order:
                assert got["aggregates"][name]["mean"] == agg["mean"]  # bit for bit
            else:
                assert got["aggregates"][name]["mean"] == pytest.approx(agg["mean"], rel=1e-15, abs=0)  # a few ulp
    # a worker's part alone is not the whole: the comparison above can fail
    assert workers[0].result()["distribution"]["fvd_samples"]["generated"] == 4
    with pytest.raises(ValueError, match="different settings"):
        in_order.merge(Evaluator(EvalSettings(metrics=("ssim",))))


def test_fid_sums_split_across_workers_equal_one_evaluator(split_clips, random_fid_state):
    """The same for FID's float64 sums, with the real FID Inception network (random weights: the
    published file cannot be downloaded here). The FID value itself is not compared: a 2048 x
    2048 matrix square root costs about a minute on two shared cores, and equal sums give an
    equal FID (it is a function of the sums only)."""
    from talkbench.metrics.fid import load_feature_extractor

    settings = EvalSettings(metrics=("ssim", "fid"), fid_frame_stride=8)
    models = {"fid": load_feature_extractor(random_fid_state)}
    whole = _evaluate(settings, models, split_clips)
    assert whole.fid_generated.count == whole.fid_reference.count == 3 * 4  # frames 0, 8, 16, 24
    assert whole.fid_generated.outer.shape == (2048, 2048)
    workers = [_evaluate(settings, models, split_clips[:1]), _evaluate(settings, models, split_clips[1:])]
    for order in (workers, workers[::-1]):
        merged = Evaluator(settings, models)
        for w in order:
            merged.merge(w)
        for kind in ("fid_generated", "fid_reference"):
            _assert_same_sums(getattr(merged, kind), getattr(whole, kind))
        assert not np.array_equal(workers[0].fid_generated.total, whole.fid_generated.total)


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


def test_arcface_without_weights_is_unavailable_with_the_fix(clip, tmp_path, monkeypatch):
    from talkbench import weights

    monkeypatch.setenv(weights.ENV_CACHE_DIR, str(tmp_path))  # an empty weights folder
    settings = EvalSettings(metrics=("csim", "ssim"), identity_backend="arcface", csim_frame_stride=10)
    result = evaluate_pair(clip.video, clip.video, settings=settings)
    assert "talkbench weights import arcface-r100 PATH" in result["unavailable"]["csim"]
    assert f"not installed in {tmp_path}" in result["unavailable"]["csim"]
    assert "csim_dlib" not in result["clips"][0]["values"]  # never silently falls back to dlib
    assert "csim_arcface" not in result["clips"][0]["values"]
    assert result["clips"][0]["values"]["ssim"] == pytest.approx(1.0, abs=1e-9)


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

    FID_STRIDE = 24  # 5 frames of each 120-frame clip: Inception on a CPU is the cost here
    monkeypatch.setenv("TALKBENCH_STATS_DIR", str(tmp_path / "stats"))
    model = load_feature_extractor(random_fid_state)
    settings = EvalSettings(metrics=("ssim", "fid"), fid_frame_stride=FID_STRIDE)
    pairs = [(c.id, c.video, c.video, None) for c in sample_clips[:2]]
    shifted = [(cid, media.read_frames(gen, size=256)[::-1].copy(), ref, None) for cid, gen, ref, _ in pairs]

    first = evaluate_pairs(shifted, settings, models={"fid": model})
    generated, reference = GaussianStats.empty(), GaussianStats.empty()
    for (_, gen, ref, _) in shifted:
        generated.update(inception_features(model, gen[::FID_STRIDE]))
        reference.update(inception_features(model, media.read_frames(ref, size=256)[::FID_STRIDE]))
    assert first["distribution"]["fid"] == pytest.approx(fid_from_stats(generated, reference), rel=1e-9)
    assert first["distribution"]["fid_samples"]["reference"] == reference.count
    assert first["protocol"]["fid_frame_stride"] == FID_STRIDE
    assert not first["timing"]["reference_stats_cached"]

    # The cached ground truth is all reference frames: not cut to what a method generated
    # (two frames short here, within the protocol), and not tied to the other metrics chosen.
    shorter = [(cid, gen[:-2], ref, None) for cid, gen, ref, _ in shifted]
    other_metrics = EvalSettings(metrics=("ssim", "fid", "csim"), fid_frame_stride=FID_STRIDE, csim_frame_stride=50)
    third = evaluate_pairs(shorter, other_metrics, models={"fid": model})
    assert third["timing"]["reference_stats_cached"]
    assert third["distribution"]["fid_samples"]["reference"] == reference.count
    # the cached statistics give the FID that recomputing the reference gives (each FID is a
    # scipy sqrtm of a 2048² matrix, ~15 s here: hence one comparison, not one per step)
    fresh = evaluate_pairs(shorter, EvalSettings(metrics=("fid",), fid_frame_stride=FID_STRIDE, cache_reference_stats=False),
                           models={"fid": model})
    assert not fresh["timing"]["reference_stats_cached"]
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
