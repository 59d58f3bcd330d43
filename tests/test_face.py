"""face: the dlib backend finds faces and landmarks on real clips, picks the main face among
several, and records its model hashes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from talkbench import media
from talkbench.face import analyse_image, available_backends, get_backend
from talkbench.face.dlib_backend import LANDMARK_MODEL, model_dir
from talkbench.face.registry import register_backend

INNER_FACE = slice(27, 48)  # nose and eyes: inside the detector's box (brows, chin, open lips may not be)


def assert_plausible_landmarks(result, image_shape):
    box, lm = result.box, result.landmarks
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    inner = lm[INNER_FACE]
    assert (inner[:, 0] >= box.left).all() and (inner[:, 0] <= box.right).all()
    assert (inner[:, 1] >= box.top).all() and (inner[:, 1] <= box.bottom).all()
    # The jaw line hugs the box; dlib's HOG boxes cut the chin, so allow a margin.
    margin = 0.3 * box.size
    assert (lm[:, 0] >= box.left - margin).all() and (lm[:, 0] <= box.right + margin).all()
    assert (lm[:, 1] >= box.top - margin).all() and (lm[:, 1] <= box.bottom + margin).all()
    # Anatomy: eyes above the mouth, the subject's right eye on the image left.
    assert lm[36:48, 1].mean() < lm[48:68, 1].mean()
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()


def test_registry():
    assert "dlib" in available_backends()
    with pytest.raises(ValueError, match="already registered"):
        register_backend("dlib", lambda: None)
    with pytest.raises(ValueError, match="unknown face backend"):
        get_backend("no-such-backend")


def test_model_hash_is_the_files_sha256():
    path = model_dir() / LANDMARK_MODEL
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert get_backend().model_sha256()[LANDMARK_MODEL] == expected


def test_sample_corpus_faces(sample_clips):
    backend = get_backend()
    for clip in sample_clips:
        frame = next(media.iter_frames(clip.video))
        result = analyse_image(frame, backend)
        assert result.found, clip.id
        assert result.faces_found == 1 and result.note == ""
        assert result.box.size > 150
        assert_plausible_landmarks(result, frame.shape)


def test_no_face_in_blank_image():
    result = analyse_image(np.full((256, 256, 3), 127, np.uint8), get_backend(), embedding=True)
    assert not result.found and result.landmarks is None and result.embedding is None
    assert result.faces_found == 0


def test_several_faces_keeps_the_largest(sample_clips):
    frame = next(media.iter_frames(sample_clips[0].video))
    small = frame[::2, ::2]
    canvas = np.zeros((512, 768, 3), np.uint8)
    canvas[:, :512] = frame
    canvas[128:384, 512:] = small
    result = analyse_image(canvas, get_backend())
    assert result.faces_found == 2
    assert result.note == "2 faces found; kept the largest"
    assert result.box.right <= 512  # the full-size face on the left


def test_identity_embedding_separates_people(sample_clips):
    by_portrait = {}
    for clip in sample_clips:
        by_portrait.setdefault(clip.provenance["portrait"], clip)
    assert len(by_portrait) == 2
    backend = get_backend()
    embeddings = {}
    for name, clip in by_portrait.items():
        frames = media.iter_frames(clip.video)
        first, later = next(frames), [f for i, f in enumerate(frames) if i == 40][0]
        embeddings[name] = [analyse_image(f, backend, embedding=True).embedding for f in (first, later)]
    same = [np.linalg.norm(a - b) for a, b in embeddings.values()]
    (a1, _), (b1, _) = embeddings.values()
    # dlib's model is trained so that one person stays under 0.6 apart and others exceed it.
    assert max(same) < 0.6 < np.linalg.norm(a1 - b1)
    result = analyse_image(first, backend, embedding=True)
    assert result.embedding.shape == (128,)
    assert "dlib_face_recognition_resnet_model_v1.dat" in result.model_sha256


def test_embedding_from_given_landmarks_equals_the_predictors(sample_clips):
    """The engine passes the landmarks it already has; dlib's aligner then gets the same shape
    the predictor would return, so the descriptor is the same, bit for bit."""
    backend = get_backend()
    for frame in list(media.iter_frames(sample_clips[0].video))[:60:20]:
        found = analyse_image(frame, backend, landmarks=True)
        assert np.array_equal(backend.embedding(frame, found.box, found.landmarks), backend.embedding(frame, found.box))


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "name", ["WDA_KatieHill_000.mp4", "WDA_AlexandriaOcasioCortez_000.mp4", "RD_Radio10_0_clip_0.mp4"]
)
def test_face_in_every_frame_of_real_hdtf_clips(shared_data, name):
    backend = get_backend()
    for i, frame in enumerate(media.iter_frames(shared_data / "video" / name)):
        result = analyse_image(frame, backend)
        assert result.found, f"{name}: no face in frame {i}"
        assert_plausible_landmarks(result, frame.shape)


@pytest.mark.shared_data
def test_small_face_in_tall_video(shared_data):
    frame = next(media.iter_frames(shared_data / "video" / "latentsync_demo1_video.mp4"))
    result = analyse_image(frame, get_backend())
    assert result.found and result.box.size < 512 / 2
