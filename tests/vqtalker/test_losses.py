"""Loss pieces: eye/mouth regions from landmarks, the StyleGAN2 discriminator, the VGG19
pyramid (random init here: pretrained weights come through the weights manager)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talkbench.errors import WeightsError
from talkbench.vqtalker.losses import (
    Discriminator,
    GeneratorLoss,
    LossWeights,
    PerceptualLoss,
    VGG19Features,
    masked_l1,
    region_boxes,
    region_masks,
)


def _face_landmarks():
    """A synthetic 68-point layout on a 64 px canvas: eyes at y=24, mouth at y=46."""
    lm = np.zeros((68, 2), np.float32)
    lm[:36] = [32, 40]
    lm[36:42] = np.stack([np.linspace(18, 26, 6), [24, 23, 23, 24, 25, 25]], 1)
    lm[42:48] = np.stack([np.linspace(38, 46, 6), [24, 23, 23, 24, 25, 25]], 1)
    lm[48:68] = np.stack([np.linspace(24, 40, 20), 46 + 3 * np.sin(np.linspace(0, 2 * np.pi, 20))], 1)
    return lm


def test_region_masks_cover_their_landmarks_only():
    lm = _face_landmarks()
    boxes = torch.from_numpy(region_boxes(lm[None], margin=0.25))
    eye, mouth = region_masks(boxes, 64)
    assert eye.shape == mouth.shape == (1, 1, 64, 64)
    for x, y in lm[36:48].astype(int):
        assert eye[0, 0, y, x] == 1 and mouth[0, 0, y, x] == 0
    for x, y in lm[48:68].astype(int):
        assert mouth[0, 0, y, x] == 1 and eye[0, 0, y, x] == 0
    assert eye[0, 0, 60, 5] == 0 and mouth[0, 0, 5, 5] == 0
    assert 0 < eye.mean() < 0.1 and 0 < mouth.mean() < 0.15


def test_empty_box_gives_empty_mask_and_zero_region_loss():
    boxes = torch.full((2, 3, 4), float("nan"))
    eye, mouth = region_masks(boxes, 16)
    assert eye.sum() == 0 and mouth.sum() == 0
    a, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    assert masked_l1(a, b, eye) == 0


def test_generator_loss_weights_and_terms():
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    lm = torch.from_numpy(region_boxes(_face_landmarks()[None] / 2)).expand(2, 3, 4)
    eye, mouth = region_masks(lm, 32)
    w = LossWeights(l1=1, perceptual=0, adversarial=1, eye=1000, mouth=1000)
    fake_pred = torch.zeros(2, 1)
    total, terms = GeneratorLoss(w, None)(a, b, eye, mouth, fake_pred)
    expected = terms["l1"] + 1000 * terms["eye"] + 1000 * terms["mouth"] + terms["gan_g"]
    torch.testing.assert_close(total.detach(), expected)
    assert terms["gan_g"] == pytest.approx(np.log(2))  # softplus(0)
    assert terms["l1"] == pytest.approx((a - b).abs().mean().item())


@pytest.mark.parametrize("batch", [1, 4, 6])
def test_discriminator_shapes_any_batch(batch):
    torch.manual_seed(1)
    d = Discriminator(32, max_channels=32)
    out = d(torch.randn(batch, 3, 32, 32))
    assert out.shape == (batch, 1)


def test_perceptual_pyramid_random_vgg():
    torch.manual_seed(2)
    loss = PerceptualLoss(scales=(1, 0.5), weights="random")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x, x) == 0
    assert loss(x, x.flip(-1)) > 0
    assert not any(p.requires_grad for p in loss.vgg.parameters())
    y = x.clone().requires_grad_(True)
    loss(y, x.flip(-1)).backward()
    assert y.grad.abs().sum() > 0


def test_pretrained_vgg_comes_from_the_weights_manager(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKBENCH_WEIGHTS_DIR", str(tmp_path))  # an empty cache
    with pytest.raises(WeightsError, match="talkbench weights fetch vgg19"):
        VGG19Features("pretrained")
