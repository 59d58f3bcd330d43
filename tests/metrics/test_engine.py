"""The evaluation engine on the sample corpus: values equal the metric modules, faces analysed
once, clear unavailability, frame-count errors per clip, and the protocol record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from talkbench import media
from talkbench.metrics import cpbd, ssim
from talkbench.metrics.engine import ClipJob, EvalSettings, evaluate, evaluate_folders, evaluate_pair

FAST = EvalSettings(metrics=("ssim", "cpbd", "lmd", "msi", "csim"), csim_frame_stride=10)


@pytest.fixture(scope="module")
def clip(sample_clips):
    return sample_clips[0]


@pytest.fixture(scope="module")
def mismatched(sample_clips):
    """Two sample clips whose lengths differ by more than the protocol's 2 frames."""
    first = sample_clips[0]
    frames = media.probe(first.video).frame_count
    other = next(c for c in sample_clips[1:] if abs(media.probe(c.video).frame_count - frames) > 2)
    return first, other


def test_ground_truth_against_itself(clip):
    result = evaluate_pair(clip.video, clip.video, settings=FAST)
    values = result.clips[0].values
    assert values["ssim"] == pytest.approx(1.0, abs=1e-9)
    assert values["lmd"] == 0 and values["m_lmd"] == 0
    assert values["csim_dlib"] == pytest.approx(1.0, abs=1e-6)
    assert 0 < values["msi"] <= 2 and 0 < values["cpbd"] < 1
    assert result.summary["ssim"].mean == values["ssim"] and result.summary["ssim"].clips == 1
    assert result.summary["ssim"].ci95 is None  # no interval from one clip
    assert result.clips[0].faces["generated_frames_without_face"] == 0
    protocol = result.protocol
    assert protocol.resolution == 256 and protocol.fps == 25
    assert protocol.metric_versions["ssim"] == ssim.VERSION
    assert "shape_predictor_68_face_landmarks.dat" in protocol.face_models_sha256
    assert protocol.frame_counts[clip.id]["compared"] == result.clips[0].frames.generated
    assert protocol.csim_frame_stride == 10 and protocol.identity_backend == "dlib"
    json.dumps(result.to_dict())  # plain data all the way down


def test_protocol_fields_come_from_the_metric_modules():
    """A field a metric depends on is set by that metric's module, and only when it runs."""
    from talkbench.metrics import fvd
    from talkbench.metrics.scorer import Scorer

    plain = Scorer(EvalSettings(metrics=("ssim",))).protocol()
    assert (plain.fvd_clip_frames, plain.csim_frame_stride, plain.face_backend) == (None, None, None)
    with_fvd = Scorer(EvalSettings(metrics=("ssim", "fvd"), fvd_max_clips_per_video=3)).protocol()
    assert with_fvd.fvd_clip_frames == with_fvd.fvd_clip_stride == fvd.CLIP_FRAMES
    assert with_fvd.fvd_max_clips_per_video == 3
    assert plain.sha256() != with_fvd.sha256()


def test_values_equal_the_metric_functions_on_the_same_frames(clip):
    gen = media.read_frames(clip.video, size=256)
    ref = gen[::-1].copy()
    result = evaluate_pair(gen, ref, settings=EvalSettings(metrics=("ssim", "cpbd")))
    values = result.clips[0].values
    assert values["ssim"] == pytest.approx(ssim.ssim_frames(gen, ref).mean(), abs=1e-12)
    assert values["cpbd"] == pytest.approx(cpbd.cpbd_frames(gen).mean(), abs=1e-12)


def test_streamed_batches_equal_one_pass_over_the_whole_clip(clip):
    """Frames stream in batches of 64; face metrics over the batches equal the metric
    functions on the whole track (MSI needs the whole sequence, LMD the frame pairs)."""
    from talkbench.face import get_backend
    from talkbench.metrics import lmd, msi
    from talkbench.metrics.analysis import analyse_frames

    gen = media.read_frames(clip.video, size=256)
    assert len(gen) > 64  # more than one batch
    ref = np.roll(gen, 3, axis=0)
    result = evaluate_pair(gen, ref, settings=EvalSettings(metrics=("lmd", "msi")))
    backend = get_backend("dlib")
    g, r = analyse_frames(gen, backend), analyse_frames(ref, backend)
    both = g.valid & r.valid
    expected = {**lmd.lmd_values(g.landmarks[both], r.landmarks[both]), "msi": msi.msi(g.landmarks, g.valid)}
    for name, value in expected.items():
        assert result.clips[0].values[name] == pytest.approx(value, rel=1e-12), name


def test_no_reference_metrics_run_without_ground_truth(clip, tmp_path):
    """Without ground truth and without --source-portrait: the no-reference metrics run, the
    others say why not, and a portrait.png lying beside the video is not picked up (the only
    portrait is the one the caller names)."""
    from PIL import Image

    video = tmp_path / clip.video.name
    shutil.copy(clip.video, video)
    Image.fromarray(next(media.iter_frames(clip.video))).save(tmp_path / "portrait.png")
    Image.fromarray(next(media.iter_frames(clip.video))).save(tmp_path / f"{clip.id}.png")
    result = evaluate_pair(video, None, settings=FAST)
    clip_result = result.clips[0]
    assert set(clip_result.values) == {"cpbd", "msi"}
    assert clip_result.unavailable == {
        "ssim": "no ground-truth video given",
        "lmd": "no ground-truth video given",
        "csim": "CSIM needs a source portrait or the ground-truth video",
    }
    assert result.protocol.csim_reference == "auto"  # CSIM measured against nothing
    assert "csim_frames" not in clip_result.faces
    # the same frames in the shipped folder give the same values, bit for bit
    shipped = evaluate_pair(clip.video, None, settings=FAST).clips[0]
    assert shipped.values == clip_result.values


def test_csim_against_a_portrait(clip, tmp_path):
    from PIL import Image

    Image.fromarray(next(media.iter_frames(clip.video))).save(tmp_path / "portrait.png")
    result = evaluate_pair(clip.video, None, tmp_path / "portrait.png", settings=FAST)
    assert 0.9 < result.clips[0].values["csim_dlib"] <= 1.0
    assert result.protocol.csim_reference == "portrait"  # what "auto" resolved to
    assert result.clips[0].identity_reference == "portrait"


def test_the_protocol_names_the_csim_reference_actually_used(sample_clips, tmp_path):
    """"auto" means the portrait when there is one, else the ground-truth frame; a folder where
    only some clips have portraits mixes the two, and the protocol must say so."""
    from PIL import Image

    settings = EvalSettings(metrics=("csim",), csim_frame_stride=20)
    with_portrait, without = sample_clips[0], sample_clips[1]
    portrait = tmp_path / "portrait.png"
    Image.fromarray(next(media.iter_frames(with_portrait.video))).save(portrait)
    alone = evaluate([ClipJob("m", without.id, without.video, without.video)], settings).evaluations[0]
    assert alone.protocol.csim_reference == "ground-truth-frame"
    mixed = evaluate([ClipJob("m", with_portrait.id, with_portrait.video, with_portrait.video, portrait),
                      ClipJob("m", without.id, without.video, without.video)], settings).evaluations[0]
    assert mixed.protocol.csim_reference == "mixed:ground-truth-frame+portrait"
    assert [c.identity_reference for c in mixed.clips] == ["portrait", "ground-truth-frame"]


def test_missing_weights_make_a_metric_unavailable_not_fatal(clip, tmp_path, monkeypatch):
    from talkbench import weights

    monkeypatch.setenv(weights.ENV_CACHE_DIR, str(tmp_path))  # an empty weights folder
    result = evaluate_pair(clip.video, clip.video, settings=EvalSettings(metrics=("ssim", "fid")))
    assert "fid" not in result.distribution
    assert "talkbench weights fetch inception-fid" in result.unavailable["fid"]
    assert f"not installed in {tmp_path}" in result.unavailable["fid"]  # the folder it looked in
    assert result.clips[0].unavailable["fid"] == result.unavailable["fid"]
    assert result.clips[0].values["ssim"] == pytest.approx(1.0, abs=1e-9)
    assert "inception-fid" not in result.protocol.weights_sha256


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
    from talkbench.metrics.analysis import analyse_frames, clear_memo

    frames = media.read_frames(clip.video, size=256)[:3]
    repeated = frames[[0, 1, 0, 2, 1, 0]]  # a still or frozen stretch of video
    counting = CountingBackend()
    track = analyse_frames(repeated, counting)
    assert counting.detected == 3
    again = analyse_frames(repeated[::-1].copy(), counting)  # the same frames, another clip
    assert counting.detected == 3
    assert np.array_equal(again.landmarks, track.landmarks[::-1])
    clear_memo()
    one_by_one = [analyse_frames(frame[None], counting.backend) for frame in repeated]
    assert np.array_equal(track.landmarks, np.concatenate([t.landmarks for t in one_by_one]))
    assert np.array_equal(track.boxes, np.concatenate([t.boxes for t in one_by_one]))
    assert track.valid.all()


def test_faceless_frames_are_counted_and_reported():
    blank = np.zeros((6, 256, 256, 3), np.uint8)
    result = evaluate_pair(blank, blank, settings=FAST)
    clip_result = result.clips[0]
    assert clip_result.faces["generated_frames_without_face"] == 6
    for metric in ("lmd", "msi", "csim"):
        assert clip_result.unavailable[metric] == "no face found in any generated frame"
    assert clip_result.values["ssim"] == pytest.approx(1.0)


def test_frame_counts_differing_by_more_than_two_name_both_files(mismatched):
    a, b = mismatched[0].video, mismatched[1].video
    result = evaluate_pair(a, b, settings=EvalSettings(metrics=("ssim",)))
    assert result.clips == [] and len(result.errors) == 1
    message = result.errors[0].error
    assert str(a) in message and str(b) in message and "at most 2" in message


def test_folders_matched_by_clip_id_and_errors_collected(mismatched, tmp_path):
    from talkbench.errors import MetricError

    good, bad = mismatched
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    for c in (good, bad):
        shutil.copy(c.video, gen / c.video.name)
    shutil.copy(good.video, ref / good.video.name)
    shutil.copy(good.video, ref / bad.video.name)  # the wrong length for ``bad``
    events = []
    result = evaluate_folders(gen, ref, settings=EvalSettings(metrics=("ssim",)),
                              progress=lambda done, total, label: events.append((done, total, label))).evaluations[0]
    assert result.method == "gen"
    first, second = sorted(p.stem for p in gen.iterdir())
    # one ground truth (both reference files hold the same bytes), then each clip as it finishes
    assert events == [(0, 1, "ground truth"), (1, 1, "ground truth"), (0, 2, "clips"), (1, 2, first), (2, 2, second)]
    assert [c.id for c in result.clips] == [good.id]
    assert result.errors[0].id == bad.id and "at most 2" in result.errors[0].error
    (gen / "extra.mp4").write_bytes(good.video.read_bytes())
    with pytest.raises(MetricError, match="no ground truth for generated clips extra"):
        evaluate_folders(gen, ref)


def test_many_methods_share_one_ground_truth_analysis(sample_clips, monkeypatch):
    """Three methods against one ground truth: the ground truth's frames are analysed once in
    the run, and a later run (another process: memo cleared) reuses it from the disk cache."""
    from talkbench.face.dlib_backend import DlibBackend
    from talkbench.metrics.analysis import clear_memo

    detected = []
    original = DlibBackend.detect
    monkeypatch.setattr(DlibBackend, "detect", lambda self, image: detected.append(1) or original(self, image))
    reference = media.read_frames(sample_clips[0].video, size=256)[:20]
    methods = {"shifted": np.roll(reference, 2, axis=0), "flipped": reference[:, :, ::-1].copy(),
               "darker": (reference * 0.8).astype(np.uint8)}  # fmt: skip
    settings = EvalSettings(metrics=("lmd", "ssim"))
    jobs = [ClipJob(name, "c", frames, reference) for name, frames in methods.items()]
    report = evaluate(jobs, settings)
    # 20 reference frames + the two methods' new frames (the shifted one's are the reference's)
    assert len(detected) == 20 + 20 + 20
    assert [r.method for r in report.evaluations] == list(methods)
    assert report.method("shifted").clips[0].values["lmd"] > 0
    clear_memo()
    detected.clear()
    again = evaluate([ClipJob("again", "c", (reference * 0.7).astype(np.uint8), reference)], settings)
    assert len(detected) == 20  # the generated frames only: the reference came from the cache
    assert again.evaluations[0].clips[0].frames.compared == 20 and again.evaluations[0].errors == []


def test_unknown_names_fail_early_with_a_message():
    from talkbench.metrics.settings import SettingsError

    for settings, message in (
        (EvalSettings(metrics=("sharpness",)), "unknown metric 'sharpness'"),
        (EvalSettings(identity_backend="vgg"), "unknown identity backend 'vgg'"),
        (EvalSettings(face_backend="mtcnn"), "unknown face backend 'mtcnn'"),
        (EvalSettings(csim_reference="mirror"), "unknown CSIM reference 'mirror'"),
        (EvalSettings(csim_frame_stride=0), "csim-frame-stride must be at least 1"),
        (EvalSettings(metrics=("utilisation",)), "utilisation is not a video metric"),
    ):
        with pytest.raises(SettingsError, match=message):
            evaluate([], settings)


def test_arcface_without_weights_is_unavailable_with_the_fix(clip, tmp_path, monkeypatch):
    from talkbench import weights

    monkeypatch.setenv(weights.ENV_CACHE_DIR, str(tmp_path))  # an empty weights folder
    settings = EvalSettings(metrics=("csim", "ssim"), identity_backend="arcface", csim_frame_stride=10)
    result = evaluate_pair(clip.video, clip.video, settings=settings)
    assert "talkbench weights import arcface-r100 PATH" in result.unavailable["csim"]
    assert f"not installed in {tmp_path}" in result.unavailable["csim"]
    assert "csim_dlib" not in result.clips[0].values  # never silently falls back to dlib
    assert "csim_arcface" not in result.clips[0].values
    assert result.clips[0].values["ssim"] == pytest.approx(1.0, abs=1e-9)


def test_cli_eval_json_matches_the_schema(sample_clips, tmp_path):
    """Two methods in one call (-g twice), one report; its JSON validates against the
    documented schema and reads back into the same records."""
    import jsonschema

    from talkbench.cli import app
    from talkbench.metrics.results import EvaluationReport

    gt, a, b = tmp_path / "gt", tmp_path / "a", tmp_path / "b"
    for folder in (gt, a, b):
        folder.mkdir()
    for c in sample_clips[:2]:
        shutil.copy(c.video, gt / c.video.name)
        shutil.copy(c.video, a / c.video.name)
    frames = media.read_frames(sample_clips[0].video, size=256)
    media.write_video(b / sample_clips[0].video.name, frames[:, ::-1].copy(), fps=25)
    result = CliRunner().invoke(app, ["eval", "-g", str(a), "-g", str(b), "-r", str(gt), "-m", "ssim,cpbd",
                                      "--workers", "1", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    repo = Path(__file__).resolve().parents[2]
    schema = json.loads((repo / "docs" / "schemas" / "evaluation-report.schema.json").read_text())
    jsonschema.validate(data, schema)
    report = EvaluationReport.from_dict(data)
    assert [e.method for e in report.evaluations] == ["a", "b"]
    assert report.method("a").summary["ssim"].mean == pytest.approx(1.0)
    assert report.method("a").summary["ssim"].ci95 == pytest.approx((1.0, 1.0))
    assert report.method("b").summary["ssim"].mean < 0.9 and len(report.method("b").clips) == 1
    assert json.loads(json.dumps(report.to_dict())) == data
    table = CliRunner().invoke(app, ["eval", "-g", str(a), "-g", str(b), "-r", str(gt), "-m", "ssim,cpbd", "-w", "1"])
    rows = [line for line in table.stdout.splitlines() if line.startswith("│")]
    assert [r.split("│")[1].strip() for r in rows] == ["a", "b"]  # a row per method
    assert "3 clips (3 from the cache)" in table.stdout  # the JSON run measured them


def test_cli_eval_names_the_file_for_bad_input(tmp_path):
    """Through the console script, as a user meets it: one line naming the file, exit 2."""
    import subprocess
    import sys

    missing = tmp_path / "none.mp4"
    for args, expected in ((["-g", str(missing)], str(missing)),
                           (["-g", str(tmp_path), "--metrics", "foo"], "unknown metric 'foo'"),
                           (["-g", str(tmp_path), "--csim-stride", "0"], "must be at least 1")):  # fmt: skip
        result = subprocess.run([sys.executable, "-m", "talkbench", "eval", *args],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert "error:" in result.stderr and expected in result.stderr.replace("\n", "")


@pytest.mark.slow
def test_fid_streams_frames_and_uses_every_ground_truth_frame(sample_clips, random_fid_state):
    """FID over streamed batches equals pytorch-fid's computation on the same frames; the
    ground-truth side is every reference frame, not cut to what a method generated."""
    from talkbench.metrics.fid import FIDInception, GaussianStats, fid_from_stats, inception_features

    FID_STRIDE = 24  # 5 frames of each 120-frame clip: Inception on a CPU is the cost here
    model = FIDInception(random_fid_state)
    settings = EvalSettings(metrics=("ssim", "fid"), fid_frame_stride=FID_STRIDE, distribution_bootstrap_replicates=0)
    jobs = []
    for c in sample_clips[:2]:
        frames = media.read_frames(c.video, size=256)
        jobs.append(ClipJob("m", c.id, frames[::-1][:-2].copy(), c.video))  # two frames short: allowed
    result = evaluate(jobs, settings, models={"fid": model}).evaluations[0]
    generated, reference = GaussianStats.empty(), GaussianStats.empty()
    for job in jobs:
        generated.update(inception_features(model, job.generated[::FID_STRIDE]))
        reference.update(inception_features(model, media.read_frames(job.reference, size=256)[::FID_STRIDE]))
    assert result.distribution["fid"].value == pytest.approx(fid_from_stats(generated, reference), rel=1e-9)
    assert result.distribution["fid"].reference_samples == reference.count
    assert result.distribution["fid"].generated_samples == generated.count
    assert result.protocol.fid_frame_stride == FID_STRIDE
    assert result.protocol.weights_sha256 == {"fid (model)": "caller-supplied"}


@pytest.mark.shared_data
def test_real_clip_at_another_frame_rate(shared_data):
    """A real HDTF clip recorded at 29.97 fps is resampled to the protocol's 25 fps and 256 px."""
    path = shared_data / "video" / "RD_Radio10_0_clip_0.mp4"
    result = evaluate_pair(path, path, settings=EvalSettings(metrics=("ssim", "cpbd", "lmd", "msi")))
    clip_result = result.clips[0]
    assert clip_result.frames.compared == media.frame_count_at(media.probe(path), 25)
    assert clip_result.values["ssim"] == pytest.approx(1.0) and clip_result.values["lmd"] == 0
    assert clip_result.faces["generated_frames_without_face"] == 0
    assert 0 < clip_result.values["msi"] < 2
