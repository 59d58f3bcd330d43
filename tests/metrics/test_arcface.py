"""ArcFace CSIM backend: checkpoint layout, preprocessing and alignment (the published weights
cannot be downloaded here, so the network runs with random weights)."""

import numpy as np
import pytest
import torch

from talkbench.face import analyse_image, get_backend
from talkbench.metrics.arcface import TEMPLATE, ArcFace, IResNet, align, five_points
from talkbench.metrics.csim import cosine_similarity


def test_iresnet100_has_the_arcface_torch_checkpoint_layout():
    state = IResNet().state_dict()
    assert state["conv1.weight"].shape == (64, 3, 3, 3)
    assert state["layer3.29.bn3.running_var"].shape == (256,)  # 30 blocks in stage 3: r100
    assert state["layer1.0.downsample.0.weight"].shape == (64, 64, 1, 1)
    assert state["fc.weight"].shape == (512, 25088)
    assert state["features.running_mean"].shape == (512,)
    assert "layer4.3.bn1.weight" not in state  # 3 blocks in stage 4


def test_template_landmarks_align_onto_themselves():
    landmarks = np.zeros((68, 2), np.float32)
    landmarks[36:42], landmarks[42:48] = TEMPLATE[0], TEMPLATE[1]
    landmarks[30], landmarks[48], landmarks[54] = TEMPLATE[2], TEMPLATE[3], TEMPLATE[4]
    image = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    assert np.allclose(five_points(landmarks), TEMPLATE, atol=1e-4)
    assert np.abs(align(image, landmarks).astype(int) - image).max() <= 1


@pytest.fixture(scope="module")
def arcface():
    torch.manual_seed(0)
    net = IResNet()
    for module in net.modules():  # keep activations in range through 100 layers
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
            module.weight.data *= 0.5
    return ArcFace(net.state_dict())


def test_embedding_follows_the_face_not_its_place_in_the_frame(arcface, real_frames, other_frames):
    backend = get_backend("dlib")
    frame = real_frames[0]
    shifted = np.zeros_like(frame)
    shifted[:, 12:] = frame[:, :-12]  # the same face 12 px to the right
    embeddings = []
    for image in (frame, shifted, other_frames[0]):
        found = analyse_image(image, backend)
        embeddings.append(arcface.embed(image, found.landmarks))
    same = cosine_similarity(embeddings[0], embeddings[1])
    assert embeddings[0].shape == (512,)
    assert same > 0.99
    assert same > cosine_similarity(embeddings[0], embeddings[2])


def test_degenerate_landmarks_are_a_clear_error():
    from talkbench.errors import MetricError
    from talkbench.metrics.arcface import align

    with pytest.raises(MetricError, match="ArcFace alignment failed: degenerate landmarks"):
        align(np.zeros((256, 256, 3), np.uint8), np.zeros((68, 2)))
