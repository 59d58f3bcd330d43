"""ArcFace CSIM backends: alignment, preprocessing and network against InsightFace's own code
(transcribed in tests/metrics/reference/insightface_face_align.py), the ONNX backend against
the torch network it was exported from, and the engine's handling of the weights and portrait.
The published weights cannot be downloaded here, so every network runs with random weights,
the same on both sides of each comparison."""

import hashlib
import io
import itertools
import warnings

import cv2
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from talkbench import media, weights
from talkbench.face import analyse_image, get_backend
from talkbench.metrics.analysis import DlibIdentity
from talkbench.metrics.arcface import (
    INSIGHTFACE_WEIGHTS,
    TEMPLATE,
    ArcFace,
    InsightFaceONNX,
    IResNet,
    align,
    five_points,
    input_normalisation,
)
from talkbench.metrics.csim import cosine_similarity
from talkbench.metrics.engine import EvalSettings, evaluate_pair
from talkbench.metrics.scorer import Scorer
from tests.metrics.reference import insightface_face_align as reference


def reference_norm_crop(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # SimilarityTransform.estimate is deprecated in scikit-image 0.26
        warnings.simplefilter("ignore", FutureWarning)
        return reference.norm_crop(image, points)


def export_onnx(net: torch.nn.Module) -> bytes:
    """The network as arcface_torch's torch2onnx.py exports it: input "data", opset 11, batch "None"."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), torch.zeros(1, 3, 112, 112), buffer, dynamo=False, input_names=["data"],
                          dynamic_axes={"data": {0: "None"}}, opset_version=11, do_constant_folding=True)  # fmt: skip
    return buffer.getvalue()


def small_iresnet(seed: int = 0) -> IResNet:
    torch.manual_seed(seed)
    return IResNet(layers=(1, 1, 1, 1), num_features=64).eval()


@pytest.fixture(scope="module")
def dlib():
    return get_backend("dlib")


@pytest.fixture(scope="module")
def faces(real_frames, other_frames, dlib):
    """(frame, 68 landmarks) of real frames of two people, landmarks from talkbench's dlib backend."""
    found = []
    for frame in (*real_frames[::3], *other_frames[::3]):
        analysis = analyse_image(frame, dlib)
        assert analysis.found
        found.append((frame, analysis.landmarks))
    return found


@pytest.fixture(scope="module")
def crops(faces) -> np.ndarray:
    return np.stack([align(frame, landmarks) for frame, landmarks in faces])


# -- alignment ------------------------------------------------------------------------------------


def test_template_landmarks_align_onto_themselves():
    landmarks = np.zeros((68, 2), np.float32)
    landmarks[36:42], landmarks[42:48] = TEMPLATE[0], TEMPLATE[1]
    landmarks[30], landmarks[48], landmarks[54] = TEMPLATE[2], TEMPLATE[3], TEMPLATE[4]
    image = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    assert np.allclose(five_points(landmarks), TEMPLATE, atol=1e-4)
    assert np.abs(align(image, landmarks).astype(int) - image).max() <= 1


def test_template_is_insightface_arcface_dst():
    assert np.array_equal(TEMPLATE, reference.arcface_dst)


def test_alignment_equals_insightface_norm_crop_on_real_frames(faces):
    for frame, landmarks in faces:
        points = five_points(landmarks)
        ours = align(frame, landmarks)
        assert np.array_equal(ours, reference_norm_crop(frame, points))
        # insightface warps cv2's BGR images: the same crop, channels reversed
        assert np.array_equal(ours, reference_norm_crop(np.ascontiguousarray(frame[..., ::-1]), points)[..., ::-1])


@pytest.mark.shared_data
def test_alignment_equals_insightface_norm_crop_on_shared_clips(shared_data, dlib):
    """Other people, poses and sources: HDTF, retalking and LivePortrait clips, frames 0 and 40."""
    compared = 0
    for name in ("WDA_KatieHill_000", "RD_Radio10_0_clip_0", "retalking_2", "liveportrait_d3", "liveportrait_d13"):
        for frame in itertools.islice(media.iter_frames(shared_data / "video" / f"{name}.mp4", size=256), 0, 41, 40):
            analysis = analyse_image(frame, dlib)
            if analysis.found:
                assert np.array_equal(align(frame, analysis.landmarks), reference_norm_crop(frame, five_points(analysis.landmarks)))
                compared += 1
    assert compared >= 8


def test_degenerate_landmarks_are_a_clear_error():
    from talkbench.errors import MetricError

    with pytest.raises(MetricError, match="ArcFace alignment failed: degenerate landmarks"):
        align(np.zeros((256, 256, 3), np.uint8), np.zeros((68, 2)))


# -- torch iresnet100 (backend "arcface") ------------------------------------------------------------


def test_iresnet100_has_the_arcface_torch_checkpoint_layout():
    state = IResNet().state_dict()
    assert state["conv1.weight"].shape == (64, 3, 3, 3)
    assert state["layer3.29.bn3.running_var"].shape == (256,)  # 30 blocks in stage 3: r100
    assert state["layer1.0.downsample.0.weight"].shape == (64, 64, 1, 1)
    assert state["fc.weight"].shape == (512, 25088)
    assert state["features.running_mean"].shape == (512,)
    assert "layer4.3.bn1.weight" not in state  # 3 blocks in stage 4


@pytest.fixture(scope="module")
def arcface():
    torch.manual_seed(0)
    net = IResNet()
    for module in net.modules():  # keep activations in range through 100 layers
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
            module.weight.data *= 0.5
    return ArcFace(net.state_dict())


def test_embedding_follows_the_face_not_its_place_in_the_frame(arcface, real_frames, other_frames, dlib):
    frame = real_frames[0]
    shifted = np.zeros_like(frame)
    shifted[:, 12:] = frame[:, :-12]  # the same face 12 px to the right
    embeddings = []
    for image in (frame, shifted, other_frames[0]):
        found = analyse_image(image, dlib)
        embeddings.append(arcface.embed(image, found.landmarks))
    same = cosine_similarity(embeddings[0], embeddings[1])
    assert embeddings[0].shape == (512,)
    assert same > 0.99
    assert same > cosine_similarity(embeddings[0], embeddings[2])


def test_iresnet_exported_to_onnx_embeds_alike_through_the_insightface_backend(faces, crops):
    """The same random iresnet in torch (backend "arcface") and exported to ONNX as
    arcface_torch does, run by the backend "insightface" code path, frame and landmarks in."""
    torch.manual_seed(1)
    net = IResNet(layers=(1, 1, 1, 1))
    torch_backend = ArcFace(net.state_dict(), layers=(1, 1, 1, 1))
    onnx_backend = InsightFaceONNX(export_onnx(net))
    assert (onnx_backend.input_mean, onnx_backend.input_std) == (127.5, 127.5)  # a torch export: no Sub/Mul prologue
    torch_rows = np.stack([torch_backend.embed(frame, landmarks) for frame, landmarks in faces])
    onnx_rows = np.stack([onnx_backend.embed(frame, landmarks) for frame, landmarks in faces])
    assert onnx_rows.shape == (len(faces), 512)
    assert np.linalg.norm(onnx_rows - torch_rows, axis=1).max() <= 1e-4 * np.linalg.norm(torch_rows, axis=1).min()
    assert np.array_equal(onnx_backend.embed_crops(crops), onnx_rows)  # batched as one by one


def test_iresnet100_exported_to_onnx_embeds_alike(arcface, crops):
    """The real architecture's depth and shapes (iresnet100, 512-d), on two crops."""
    onnx_backend = InsightFaceONNX(export_onnx(arcface.net))
    torch_rows, onnx_rows = arcface.embed_crops(crops[:2]), onnx_backend.embed_crops(crops[:2])
    assert onnx_rows.shape == (2, 512)
    assert np.linalg.norm(onnx_rows - torch_rows, axis=1).max() <= 1e-4 * np.linalg.norm(torch_rows, axis=1).min()


# -- ONNX backend "insightface" against ArcFaceONNX.get_feat -------------------------------------------


@pytest.fixture(scope="module")
def small_onnx() -> bytes:
    return export_onnx(small_iresnet())


def test_preprocessing_equals_insightface_get_feat(small_onnx, crops):
    ours = InsightFaceONNX(small_onnx)
    session = onnxruntime.InferenceSession(small_onnx, providers=["CPUExecutionProvider"])
    mean, std = reference.input_normalisation(onnx.load_model_from_string(small_onnx))
    bgr = [np.ascontiguousarray(c[..., ::-1]) for c in crops]  # what insightface holds: cv2's BGR
    blob = cv2.dnn.blobFromImages(bgr, 1.0 / std, (112, 112), (mean, mean, mean), swapRB=True)
    assert np.array_equal(ours.blob(crops), blob)
    # the network sees RGB scaled to [-1, 1]
    assert np.allclose(ours.blob(crops)[:, 0], (crops[..., 0].astype(np.float32) - 127.5) / 127.5, atol=1e-6)
    assert np.array_equal(ours.embed_crops(crops), reference.get_feat(session, mean, std, bgr))
    assert np.array_equal(ours.embed_crops(crops[:1])[0], reference.get_feat(session, mean, std, bgr[0])[0])


def _normalising_graph(sub_name: str, mul_name: str) -> bytes:
    """A model with mxnet-style input normalisation in its graph: (x − 127.5) × 0.0078125, then
    global average pooling; only the normalisation choice is under test."""
    nodes = [
        helper.make_node("Sub", ["data", "mean"], ["centred"], name=sub_name),
        helper.make_node("Mul", ["centred", "scale"], ["scaled"], name=mul_name),
        helper.make_node("GlobalAveragePool", ["scaled"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["fc1"], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes, "normalising", [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["None", 3])],
        [helper.make_tensor("mean", TensorProto.FLOAT, [], [127.5]), helper.make_tensor("scale", TensorProto.FLOAT, [], [0.0078125])],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]).SerializeToString()


def test_input_normalisation_follows_arcface_onnx(small_onnx, crops):
    """mxnet-converted models (Sub and Mul among the first nodes) get raw pixels, as in
    ArcFaceONNX.__init__; a model whose first nodes merely resemble that does not."""
    for model, expected in ((small_onnx, (127.5, 127.5)), (_normalising_graph("_minus0", "_mul0"), (0.0, 1.0)),
                            (_normalising_graph("Sub_3", "Mul_4"), (0.0, 1.0)),
                            (_normalising_graph("minus", "times"), (127.5, 127.5))):  # fmt: skip
        proto = onnx.load_model_from_string(model)
        assert input_normalisation(proto) == reference.input_normalisation(proto) == expected
    mxnet_style = InsightFaceONNX(_normalising_graph("_minus0", "_mul0"))
    rows = mxnet_style.embed_crops(crops)
    assert np.allclose(rows, (crops.astype(np.float64).mean(axis=(1, 2)) - 127.5) / 128, atol=1e-4)


# -- the engine ----------------------------------------------------------------------------------------


def test_insightface_without_weights_is_unavailable_with_the_fix(sample_clips, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_CACHE_DIR, str(tmp_path))  # an empty weights folder
    settings = EvalSettings(metrics=("csim", "ssim"), identity_backend="insightface", csim_frame_stride=10)
    result = evaluate_pair(sample_clips[0].video, sample_clips[0].video, settings=settings)
    assert "talkbench weights import insightface-w600k-r50 PATH" in result.unavailable["csim"]
    assert "buffalo_l.zip" in result.unavailable["csim"]
    assert not {"csim_dlib", "csim_arcface", "csim_insightface"} & set(result.clips[0].values)
    assert result.clips[0].values["ssim"] == pytest.approx(1.0, abs=1e-9)


def test_insightface_weights_are_used_and_recorded(sample_clips, small_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_CACHE_DIR, str(tmp_path / "weights"))
    model = tmp_path / "w600k_r50.onnx"
    model.write_bytes(small_onnx)
    weights.import_file(INSIGHTFACE_WEIGHTS, model)
    sha = hashlib.sha256(small_onnx).hexdigest()
    settings = EvalSettings(metrics=("csim",), identity_backend="insightface", csim_frame_stride=10, use_cache=False)
    assert Scorer(settings).identity().key == f"insightface:{sha}"
    result = evaluate_pair(sample_clips[0].video, sample_clips[0].video, settings=settings)
    assert result.clips[0].values["csim_insightface"] == pytest.approx(1.0, abs=1e-6)
    assert result.protocol.weights_sha256[INSIGHTFACE_WEIGHTS] == sha
    assert result.protocol.identity_backend == "insightface"


def test_portrait_is_embedded_at_the_evaluation_resolution(sample_clips, tmp_path, dlib):
    """The portrait goes through the frames' resize (swscale, AREA) before landmarks and
    embedding: what the decoder does to a 512-px frame, so a portrait cut from the clip and
    the clip's frame are embedded from the same pixels."""
    full = next(media.iter_frames(sample_clips[0].video))  # 512×512
    portrait = tmp_path / "portrait.png"
    Image.fromarray(full).save(portrait)
    resized = media.resize_image(full, 256)
    assert np.array_equal(resized, next(media.iter_frames(portrait, fps=None, size=256)))

    scorer = Scorer(EvalSettings(metrics=("csim",), resolution=256))
    embedded = scorer._portrait_identity(portrait)
    identity = DlibIdentity(dlib)
    at_256 = analyse_image(resized, dlib)
    at_512 = analyse_image(full, dlib)
    assert np.array_equal(embedded, np.asarray(identity.embed(resized, at_256.box, at_256.landmarks), np.float32))
    assert not np.array_equal(embedded, np.asarray(identity.embed(full, at_512.box, at_512.landmarks), np.float32))
