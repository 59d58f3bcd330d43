"""bf16 autocast checked numerically on CPU: the trained tiny tokenizer and generator under
``inference.autocast`` against their float32 forward. Tolerances are about 3x what was measured
(2-core CPU, torch 2.14): tokenizer image relative error 0.020, motion feature 0.0045; generator
logits 0.0027, with 98.5-99.0 % of the argmax tokens unchanged. The training losses and their
gradients are checked the same way."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from talkbench import media
from talkbench.vqtalker.inference import autocast, load_generator, load_tokenizer
from talkbench.vqtalker.pretrained import TINY_GENERATOR, TINY_TOKENIZER
from talkbench.vqtalker.tokenizer import to_model


pytestmark = pytest.mark.usefixtures("one_thread")


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx.float() - exact.float()).norm() / exact.float().norm())


def generator_inputs(model) -> tuple[torch.Tensor, ...]:
    """Speech units, controls, f_g and (B, G, R, T) codes for two 64-frame sequences."""
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    speech = torch.randint(0, cfg.speech_vocab, (2, 64, cfg.speech_per_frame), generator=g)
    controls = torch.randn(2, 64, 7, generator=g) * 0.1
    f_g = torch.randn(2, cfg.style_dim, generator=g)
    return speech, controls, f_g, torch.randint(0, cfg.codes, (2, cfg.groups, cfg.residuals, 64), generator=g)


def test_tokenizer_bf16_matches_float32(sample_clips):
    model = load_tokenizer(TINY_TOKENIZER)
    frames = np.stack(list(itertools.islice(media.iter_frames(sample_clips[0].video, fps=25, size=model.config.size), 40)))
    source, target = to_model(frames[[0, 0, 0, 0]]), to_model(frames[[10, 20, 30, 39]])
    with torch.no_grad():
        exact = model(source, target).image
        motion = model.motion_feature(target)
        with autocast("cpu"):
            approx = model(source, target).image
            approx_motion = model.motion_feature(target)
        with autocast(torch.device("cpu"), enabled=False):
            unchanged = model(source, target).image
    assert approx_motion.dtype == torch.bfloat16, "autocast did not reach the encoder"
    assert relative_error(approx_motion, motion) < 0.015
    assert 1e-4 < relative_error(approx, exact) < 0.06
    assert torch.equal(unchanged, exact)


def test_generator_bf16_matches_float32():
    model, _ = load_generator(TINY_GENERATOR)
    cfg = model.config
    speech, controls, f_g, previous = generator_inputs(model)
    with torch.no_grad():
        for layer in range(cfg.residuals):
            exact = model(speech, controls, f_g, layer, previous)
            with autocast("cpu"):
                approx = model(speech, controls, f_g, layer, previous)
            assert 1e-4 < relative_error(approx, exact) < 0.008, f"layer {layer}"
            agree = float((approx.argmax(-1) == exact.argmax(-1)).float().mean())
            assert agree >= 0.95, f"layer {layer}: only {agree:.3f} of the argmax tokens agree"


def gradient(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def loss_and_gradient(model: torch.nn.Module, loss_fn, bf16: bool) -> tuple[float, torch.Tensor]:
    model.zero_grad()
    with autocast("cpu", bf16):
        loss = loss_fn()
    loss.backward()
    return float(loss.detach()), gradient(model).clone()


def test_training_losses_and_gradients_in_bf16_match_float32(sample_clips):
    """The backward paths the trainers autocast: the tokenizer's reconstruction L1 (measured: loss
    relative error 1.3e-4, gradient 0.079, cosine 0.997) and the generator's teacher-forced NLL
    over all residual layers (loss 5.8e-6, gradient 0.0027). Eval mode, so no dropout or noise
    differs between the two passes."""
    tokenizer = load_tokenizer(TINY_TOKENIZER).eval()
    frames = np.stack(list(itertools.islice(media.iter_frames(sample_clips[0].video, fps=25, size=tokenizer.config.size), 40)))
    source, target = to_model(frames[[0, 0, 0, 0]]), to_model(frames[[10, 20, 30, 39]])
    l1 = lambda: (tokenizer(source, target).image.float() - target).abs().mean()  # noqa: E731
    (exact, exact_grad), (approx, approx_grad) = (loss_and_gradient(tokenizer, l1, bf16) for bf16 in (False, True))
    assert abs(approx - exact) / exact < 5e-4
    assert 1e-3 < relative_error(approx_grad, exact_grad) < 0.25
    assert float(torch.nn.functional.cosine_similarity(approx_grad, exact_grad, 0)) > 0.98

    generator, _ = load_generator(TINY_GENERATOR)
    generator.eval()
    speech, controls, f_g, targets = generator_inputs(generator)
    nll = lambda: generator.loss(speech, controls, f_g, targets)[0]  # noqa: E731
    (exact, exact_grad), (approx, approx_grad) = (loss_and_gradient(generator, nll, bf16) for bf16 in (False, True))
    assert abs(approx - exact) / exact < 2e-5
    assert 1e-4 < relative_error(approx_grad, exact_grad) < 0.008
