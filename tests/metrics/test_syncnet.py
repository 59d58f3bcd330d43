"""LSE-C / LSE-D against syncnet_python (transcribed in reference/syncnet_python.py) with the
same random SyncNet weights (the published syncnet_v2.model cannot be downloaded here), on a
real sample clip with real speech; and the properties that catch window bookkeeping bugs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from talkbench import media, weights
from talkbench.errors import WeightsError
from talkbench.face import get_backend
from talkbench.metrics import syncnet
from talkbench.metrics.analysis import FaceTrack, analyse_frames
from talkbench.metrics.base import Batch, ClipInfo, ModelSource, Unavailable
from talkbench.metrics.engine import ClipJob, EvalSettings, evaluate
from talkbench.metrics.lse import LSE

from tests.metrics.reference import syncnet_python as reference

FRAMES = 40


@pytest.fixture(scope="module")
def clip(sample_clips):
    return next(c for c in sample_clips if c.id == "en_001")  # JFK's speech, 25 fps, 16 kHz


@pytest.fixture(scope="module")
def frames(clip) -> np.ndarray:
    return np.stack(list(itertools.islice(media.iter_frames(clip.video, size=256), FRAMES)))


@pytest.fixture(scope="module")
def faces(frames) -> FaceTrack:
    track = analyse_frames(frames, get_backend("dlib"))
    assert track.valid.all()
    return track


@pytest.fixture(scope="module")
def state_dict() -> dict:
    return syncnet.random_state_dict(seed=0)


@pytest.fixture
def weights_dir(tmp_path, monkeypatch, state_dict):
    """The random weights installed as ``syncnet-v2``, saved the way a 2017 PyTorch saved
    ``syncnet_v2.model``: the legacy (pre-1.6) format, without ``num_batches_tracked``."""
    monkeypatch.setenv(weights.ENV_CACHE_DIR, str(tmp_path / "weights"))
    path = tmp_path / "syncnet_v2.model"
    old = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, path, _use_new_zipfile_serialization=False)
    weights.import_file(syncnet.WEIGHTS, path)
    return path


class BrightnessLoudnessNet(torch.nn.Module):
    """A stand-in for trained weights with a known notion of sync: the lip branch embeds the
    mean brightness of each of a window's 5 crops, the audio branch each frame's log energy
    (MFCC c0, its 4 columns averaged), both centred and scaled to unit length. Its distance is
    smallest at the offset where the crops' brightness follows the audio's loudness."""

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return _unit(x.mean(dim=(1, 3, 4)))

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return _unit(x[:, 0, 0, :].reshape(len(x), syncnet.WINDOW, syncnet.MFCC_PER_FRAME).mean(-1))


def _unit(v: torch.Tensor) -> torch.Tensor:
    v = v - v.mean(dim=1, keepdim=True)
    return v / v.norm(dim=1, keepdim=True)


def _metric(net) -> LSE:
    metric = LSE(EvalSettings(metrics=("lse",)))
    metric.load(ModelSource({"lse": net}))
    return metric


def _stream(metric: LSE, frames, faces, audio, batch: int = 64, fps: float = 25.0):
    state = metric.new_state(ClipInfo("clip", None, None, audio, None, fps))
    for start in range(0, len(frames), batch):
        metric.update(state, Batch(start, frames[start : start + batch], faces=faces[start : start + batch]))
    return state, metric.compute(state)


def _bgr(frames):
    return [f[..., ::-1] for f in frames]


def test_published_file_format_loads_with_weights_only(weights_dir, state_dict):
    """syncnet_v2.model is a plain state dict of ``S``; talkbench reads it without unpickling
    code, and syncnet_python's ``loadParameters`` reads the same file."""
    ours = syncnet.load_syncnet().state_dict()
    ref = reference.SyncNetInstance()
    ref.loadParameters(weights.weight_path(syncnet.WEIGHTS))
    for name, value in getattr(ref, "__S__").state_dict().items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(ours[name], value) and torch.equal(ours[name], state_dict[name]), name
    with pytest.raises(WeightsError, match="not a SyncNet state dict"):
        syncnet.load_syncnet({"netcnnaud.0.weight": torch.zeros(64, 1, 3, 3)})


def test_int16_audio_and_mfcc_as_ffmpeg_and_syncnet_python_read_them(clip):
    ours = syncnet.to_int16(media.read_audio(clip.video, syncnet.AUDIO_RATE))
    ffmpeg = reference.ffmpeg_pcm_s16le(clip.video)
    assert len(ours) > 4 * syncnet.AUDIO_RATE
    np.testing.assert_array_equal(ours, ffmpeg[: len(ours)])
    # the sample scale matters: float samples in [-1, 1] would shift c0 by 2·ln(32768)
    shift = syncnet.mfcc(ours)[0] - syncnet.mfcc(ours.astype(np.float32) / 32768)[0]
    assert np.median(shift) == pytest.approx(2 * np.log(32768), abs=1e-4)


def test_crops_equal_crop_video(frames, faces):
    track = {"frame": np.arange(len(frames)), "bbox": faces.boxes[:, :4]}
    expected = reference.crop_video(_bgr(frames), track)
    centres = syncnet.box_centres(faces.boxes)
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(syncnet.crop_face(frame, syncnet.smoothed_centre(centres, i))[..., ::-1], expected[i])


def test_engine_values_equal_syncnet_python_per_face_track(clip, frames, faces, weights_dir, state_dict):
    """Through ``evaluate`` with the weights from the weights folder: frames 14–16 show no face,
    so the clip is two face tracks, each scored with the audio from its first frame, and the
    values are their window-weighted means."""
    gap = frames[:34].copy()
    gap[14:17] = 110
    result = evaluate([ClipJob("m", clip.id, gap, audio=clip.video)], EvalSettings(metrics=("lse",))).evaluations[0]
    assert result.protocol.weights_sha256[syncnet.WEIGHTS] == weights.file_sha256(weights_dir)
    assert result.clips[0].faces["generated_frames_without_face"] == 3
    values = result.clips[0].values

    instance = reference.SyncNetInstance()
    instance.loadParameters(weights_dir)
    audio = reference.ffmpeg_pcm_s16le(clip.video)
    scores = []
    for run in (np.arange(0, 14), np.arange(17, 34)):
        track = {"frame": run, "bbox": faces.boxes[run, :4]}
        _, conf, minval = instance.evaluate(reference.crop_video(_bgr(gap), track), reference.track_audio(audio, track))
        scores.append((len(run) - 5, float(conf), float(minval)))
    windows = sum(n for n, _, _ in scores)
    assert values["lse_c"] == pytest.approx(sum(n * c for n, c, _ in scores) / windows, abs=1e-5)
    assert values["lse_d"] == pytest.approx(sum(n * d for n, _, d in scores) / windows, abs=1e-5)
    assert values["lse_d"] > 1  # random weights: distances of order sqrt(2 · 1024 · var)


def test_shifting_the_audio_by_k_frames_moves_the_offset_by_k(frames, faces, tmp_path):
    rng = np.random.default_rng(0)
    loudness = rng.uniform(0, 1, FRAMES + 10)
    lit = (frames * (0.5 + 0.5 * loudness[: len(frames), None, None, None])).astype(np.uint8)
    noise = rng.standard_normal((len(loudness), syncnet.SAMPLES_PER_FRAME))
    speech = (noise * (0.02 + 0.3 * loudness[:, None])).astype(np.float32)
    metric = _metric(BrightnessLoudnessNet())
    for k in (0, 3, -2, 9):  # k > 0: the audio leads the video by k frames
        audio = speech[k:] if k >= 0 else np.concatenate([speech[k:], speech])
        path = tmp_path / f"shift{k}.wav"
        wavfile.write(path, syncnet.AUDIO_RATE, audio.reshape(-1))
        state, values = _stream(metric, lit, faces, path)
        assert [s.offset for s in state.scores] == [k]
        assert values["lse_c"] > 0.5 and values["lse_d"] < 0.6  # unit vectors: sqrt(2) when unrelated


def test_streamed_batches_equal_one_pass(clip, frames, faces):
    """Crops wait for the 6 frames after them and windows span batch boundaries: any batching
    gives the same embeddings and values."""
    metric = _metric(BrightnessLoudnessNet())
    whole_state, whole = _stream(metric, frames, faces, clip.video, batch=len(frames))
    for batch in (1, 7, 16):
        state, values = _stream(metric, frames, faces, clip.video, batch=batch)
        np.testing.assert_allclose(state.tracks[0].lip, whole_state.tracks[0].lip, atol=1e-6)
        assert values == pytest.approx(whole, abs=1e-6)
    assert whole_state.tracks[0].lip.shape == (FRAMES - 4, 5)
    assert whole_state.scores[0].windows == FRAMES - 5  # syncnet_python leaves the last window out


def test_audio_shorter_than_the_video_limits_the_windows(clip, frames, faces, tmp_path):
    path = tmp_path / "one_second.wav"
    wavfile.write(path, syncnet.AUDIO_RATE, media.read_audio(clip.video, syncnet.AUDIO_RATE)[: syncnet.AUDIO_RATE])
    state, _ = _stream(_metric(BrightnessLoudnessNet()), frames, faces, path)
    assert state.scores[0].windows == 25 - 5  # min_length = min(frames, floor(samples / 640))


def test_unavailable_with_the_reason(clip, frames, faces, tmp_path):
    metric = _metric(BrightnessLoudnessNet())
    with pytest.raises(Unavailable, match="25 fps"):
        _stream(metric, frames, faces, clip.video, fps=30)
    with pytest.raises(Unavailable, match="no audio"):
        _stream(metric, frames, faces, None)
    no_face = FaceTrack(faces.landmarks * np.nan, np.zeros(FRAMES, bool), faces.sizes * np.nan, faces.boxes * np.nan)
    with pytest.raises(Unavailable, match="no run of 7 consecutive frames with a face"):
        _stream(metric, frames, no_face, clip.video)
    for run, scored in ((6, False), (7, True)):  # a run of 6 has a window but no real crop
        valid = np.arange(FRAMES) < run
        short = FaceTrack(faces.landmarks, valid, faces.sizes, np.where(valid[:, None], faces.boxes, np.nan))
        if scored:
            assert _stream(metric, frames, short, clip.video)[0].scores[0].windows == run - 5
        else:
            with pytest.raises(Unavailable, match="no run of 7"):
                _stream(metric, frames, short, clip.video)
    brief = tmp_path / "brief.wav"
    wavfile.write(brief, syncnet.AUDIO_RATE, np.zeros(1600, np.float32))
    with pytest.raises(Unavailable, match=r"audio \(0.10 s\) ends before"):
        _stream(metric, frames, faces, brief)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    with pytest.raises(Unavailable, match="cannot read the audio"):
        _stream(metric, frames, faces, broken)


def test_engine_drops_it_without_audio(frames):
    job = ClipJob("m", "silent", frames[:8])
    result = evaluate([job], EvalSettings(metrics=("lse",)), models={"lse": BrightnessLoudnessNet()})
    assert "no audio" in result.evaluations[0].clips[0].unavailable["lse"]


def test_a_driving_audio_that_is_missing_silent_or_unreadable_drops_lse_for_that_clip_only(clip, frames, tmp_path):
    """Given driving audio is never replaced by the generated file's own track; each problem
    is named, and the clip's other metrics and the other clips keep their values."""
    speech = media.read_audio(clip.video, media.AUDIO_RATE)[: media.AUDIO_RATE]
    spoken_video = tmp_path / "spoken.mp4"  # carries an audio track of its own
    media.write_video(spoken_video, frames[:8], 25, audio=speech)
    silent = tmp_path / "silent.mp4"
    media.write_video(silent, frames[:8], 25)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    jobs = [ClipJob("m", "gone", spoken_video, spoken_video, audio=tmp_path / "gone.wav"),
            ClipJob("m", "silent", spoken_video, spoken_video, audio=silent),
            ClipJob("m", "broken", spoken_video, spoken_video, audio=broken),
            ClipJob("m", "array", frames[:8], frames[:8]),
            ClipJob("m", "spoken", frames, frames, audio=clip.video)]  # fmt: skip
    result = evaluate(jobs, EvalSettings(metrics=("ssim", "lse"), use_cache=False),
                      models={"lse": BrightnessLoudnessNet()}).evaluations[0]  # fmt: skip
    clips = {c.id: c for c in result.clips}
    assert f"{tmp_path / 'gone.wav'} does not exist" in clips["gone"].unavailable["lse"]
    assert f"{silent} has no audio track" in clips["silent"].unavailable["lse"]
    assert "cannot read the driving audio" in clips["broken"].unavailable["lse"]
    assert "given as an array carry none" in clips["array"].unavailable["lse"]
    assert all(c.values["ssim"] > 0.99 for c in clips.values())
    assert set(clips["spoken"].values) >= {"lse_c", "lse_d"} and not clips["spoken"].unavailable


def test_a_missing_optional_module_makes_lse_unavailable_before_any_clip(frames, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "python_speech_features", None)  # how Python marks a module absent
    result = evaluate([ClipJob("m", "c", frames[:8], frames[:8])], EvalSettings(metrics=("ssim", "lse"), use_cache=False))
    evaluation = result.evaluations[0]
    assert "needs python_speech_features: pip install 'talkbench[metrics]'" in evaluation.unavailable["lse"]
    assert evaluation.clips[0].values["ssim"] == pytest.approx(1.0) and not evaluation.errors


def test_cli_eval_takes_each_clips_audio_from_a_folder_and_names_a_missing_one(clip, frames, tmp_path, weights_dir):
    import json

    from typer.testing import CliRunner

    from talkbench.cli import app

    generated, audio = tmp_path / "generated", tmp_path / "audio"
    generated.mkdir(), audio.mkdir()
    for name in ("a", "b"):
        media.write_video(generated / f"{name}.mp4", frames, 25)
    wavfile.write(audio / "a.wav", syncnet.AUDIO_RATE, media.read_audio(clip.video, syncnet.AUDIO_RATE)[: 2 * syncnet.AUDIO_RATE])
    args = ["eval", "-m", "ssim,lse", "-w", "1", "--no-cache", "--json", "-a", str(audio)]
    result = CliRunner().invoke(app, [*args, "-g", str(generated), "-r", str(generated)])
    assert result.exit_code == 0, result.output
    clips = {c["id"]: c for c in json.loads(result.stdout)["evaluations"][0]["clips"]}
    assert "lse_c" in clips["a"]["values"] and clips["b"]["values"]["ssim"] == pytest.approx(1.0)
    assert f"{audio / 'b'}.* does not exist" in clips["b"]["unavailable"]["lse"]
    single = CliRunner().invoke(app, [*args, "-g", str(generated / "a.mp4"), "-r", str(generated / "a.mp4")])
    assert single.exit_code == 0, single.output  # one video, its audio found in the folder by name
    assert "lse_c" in json.loads(single.stdout)["evaluations"][0]["clips"][0]["values"]
