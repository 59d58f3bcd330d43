"""GRFSQ and the Table 3 quantizers: shapes, ranges, exact decoding, gradients, the FSQ step
against lucidrains' reference, bitrate and utilisation per variant, and residual refinement on
real facial motion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from talkbench.vqtalker.quantize import (
    GRFSQ,
    PAPER_VARIANT,
    TABLE3,
    QuantizerConfig,
    bitrate,
    build_quantizer,
    utilisation,
)

GRFSQ_VARIANTS = [k for k, v in TABLE3.items() if v.kind == "grfsq"]


@pytest.mark.parametrize("name", list(TABLE3))
def test_indices_shape_range_and_exact_decode(name):
    torch.manual_seed(0)
    cfg = TABLE3[name]
    q = build_quantizer(name).eval()  # VQ codebooks move in train mode (EMA), so decode in eval
    x = torch.randn(3, 17, cfg.dim)
    out = q(x)
    assert out.quantized.shape == x.shape
    assert out.indices.shape == (cfg.groups, cfg.residuals, 3, 17)  # Algorithm 1: (G, R, *)
    assert out.indices.dtype == torch.int64
    assert int(out.indices.min()) >= 0 and int(out.indices.max()) < cfg.codes_per_codebook
    assert torch.equal(q.decode(out.indices), out.quantized)  # bit for bit


def test_grfsq_decode_exact_in_train_mode_and_unbatched():
    torch.manual_seed(1)
    q = GRFSQ()
    x = torch.randn(25, 120) * 3
    out = q(x)
    assert out.indices.shape == (12, 4, 25)
    assert torch.equal(q.decode(out.indices), out.quantized)
    # a single vector
    one = q(x[0])
    assert one.indices.shape == (12, 4)
    assert torch.equal(q.decode(one.indices), one.quantized)
    assert torch.equal(one.quantized, out.quantized[0])


@pytest.mark.parametrize("levels", [(5, 5, 5, 5), (4, 4, 4, 4), (6, 6, 6, 6), (8, 5, 5, 5)])
def test_fsq_step_matches_reference_implementation(levels):
    """Our FSQ rounding and index packing equal vector-quantize-pytorch's FSQ (non-symmetric
    variant, as the FSQ paper's reference code) on the same projected values."""
    from vector_quantize_pytorch import FSQ as ReferenceFSQ

    torch.manual_seed(2)
    ours = GRFSQ(QuantizerConfig(groups=12, residuals=1, levels=levels))
    ref = ReferenceFSQ(levels=list(levels))
    z = torch.randn(64, 12, len(levels)) * 2
    codes, indices = ours._fsq(z)
    ref_codes = ref.quantize(z)
    assert torch.equal(codes, ref_codes)
    assert torch.equal(indices, ref.codes_to_indices(ref_codes).long())
    # every code lies on the level grid, every level is reachable
    for d, level in enumerate(levels):
        grid = (torch.arange(level) - level // 2) / (level // 2)
        assert torch.isin(codes[..., d], grid).all()
    assert int(indices.max()) < math.prod(levels)


def test_codes_of_decoded_indices_cover_the_grid():
    q = GRFSQ()
    all_idx = torch.arange(625).view(1, 1, 625).expand(12, 4, 625)
    codes = q.codes_from_indices(all_idx)  # (625, 12, 4, 4)
    assert codes.shape == (625, 12, 4, 4)
    unique_rows = torch.unique(codes[:, 0, 0], dim=0)
    assert unique_rows.shape[0] == 625  # 625 distinct points: the implicit codebook
    assert set(torch.unique(codes).tolist()) == {-1.0, -0.5, 0.0, 0.5, 1.0}


@pytest.mark.parametrize("name", [PAPER_VARIANT, "grvq"])
def test_gradients_reach_input_and_every_layer(name):
    torch.manual_seed(3)
    q = build_quantizer(name)
    x = torch.randn(8, 120, requires_grad=True)
    out = q(x)
    target = torch.randn_like(x)
    loss = (out.quantized - target).pow(2).mean() + out.aux_loss
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert (x.grad.abs().sum(0) > 0).all()  # every input dimension (every group) gets gradient
    if name == PAPER_VARIANT:
        for proj in (q.project_in, q.project_out):
            g = proj.weight.grad  # (R, G, in, out)
            assert (g.abs().sum(dim=(2, 3)) > 0).all()  # every residual layer of every group


def test_straight_through_gradient_is_the_bounded_jacobian():
    """d quantized / d x equals the gradient of the un-rounded path (STE), checked on one layer."""
    torch.manual_seed(4)
    q = GRFSQ(QuantizerConfig(groups=12, residuals=1))
    x = torch.randn(4, 120, requires_grad=True)
    q(x).quantized.sum().backward()

    x2 = x.detach().clone().requires_grad_(True)
    z = q.project_in(x2.unflatten(-1, (12, 10)), 0)
    soft = (torch.tanh(z + q.shift) * q.half_l - q.offset) / q.half_width
    q.project_out(soft, 0).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


# Table 3's rows as the paper states them: (groups, residual layers, codes per codebook) and
# the bitrate column in kbps, as printed (rounded; "<1" for VQ). The paper's VQ row has 8196
# codes (sic). bit/s = groups x layers x log2(codes) x 25 fps, so e.g. 12 x 4 x log2(625) x 25
# = 11,145.25 bit/s (Table 7: 11.15 kbps; Table 3 prints 11).
PAPER_TABLE3 = {
    "vq": (1, 1, 8196, "<1"),
    "gvq": (32, 1, 1024, "8"),
    "rvq": (1, 32, 1024, "8"),
    "grvq": (12, 4, 1024, "12"),
    "grfsq-8-4-5": (8, 4, 5**4, "7"),
    "grfsq-12-2-5": (12, 2, 5**4, "6"),
    "grfsq-12-4-4": (12, 4, 4**4, "9.6"),
    "grfsq-12-4-6": (12, 4, 6**4, "12"),
    "grfsq-12-4-5": (12, 4, 5**4, "11"),
}
# The same bit/s pinned to 8 decimals, from log2 625 = 4 log2 5 = 9.28771238, log2 1296 =
# 4 log2 6 = 10.33985000, log2 8196 = 13.00070427 (e.g. 48 x 9.28771238 x 25 = 11,145.2549).
EXPECTED_BPS = {
    "vq": 325.01760673,
    "gvq": 8000.0,
    "rvq": 8000.0,
    "grvq": 12000.0,
    "grfsq-8-4-5": 7430.16990364,
    "grfsq-12-2-5": 5572.62742773,
    "grfsq-12-4-4": 9600.0,
    "grfsq-12-4-6": 12407.82000346,
    "grfsq-12-4-5": 11145.25485546,
}


@pytest.mark.parametrize("name", list(TABLE3))
def test_bitrate_per_table3_variant(name):
    groups, layers, codes, printed = PAPER_TABLE3[name]
    cfg = TABLE3[name]
    assert (cfg.groups, cfg.residuals, cfg.codes_per_codebook) == (groups, layers, codes)
    bps = bitrate(name)
    assert bps == pytest.approx(groups * layers * math.log2(codes) * 25, rel=1e-15)
    assert bps == pytest.approx(EXPECTED_BPS[name], abs=1e-6)
    # and it rounds to what the paper prints
    kbps = bps / 1000
    if printed == "<1":
        assert kbps < 1
    else:
        decimals = len(printed.partition(".")[2])
        assert f"{kbps:.{decimals}f}" == printed, f"{name}: {kbps:.3f} kbps, paper {printed}"
    assert bitrate(name, fps=50) == pytest.approx(2 * bps, rel=1e-15)  # linear in the frame rate


def test_paper_bitrate_exact():
    assert bitrate(PAPER_VARIANT) == 12 * 4 * math.log2(625) * 25
    assert round(bitrate(PAPER_VARIANT) / 1000, 2) == 11.15  # Table 7


@pytest.mark.parametrize("name", list(TABLE3))
def test_utilisation_per_variant_counts_distinct_codes(name):
    torch.manual_seed(5)
    cfg = TABLE3[name]
    q = build_quantizer(name).eval()
    out = q(torch.randn(400, cfg.dim))
    u = utilisation(out.indices, name)
    idx = out.indices.numpy()
    expected = np.mean([[np.unique(idx[g, r]).size / cfg.codes_per_codebook for r in range(cfg.residuals)]
                        for g in range(cfg.groups)])
    assert u["overall"] == pytest.approx(expected)
    assert 0 < u["overall"] <= min(1.0, 400 / cfg.codes_per_codebook)
    assert len(u["per_layer"]) == cfg.residuals and len(u["per_group"]) == cfg.groups
    print(f"{name}: utilisation at init on 400 Gaussian vectors {100 * u['overall']:.2f}%")


# ----------------------------------------------------------------------------- real motion


def _landmark_motion(video, frames: int = 150) -> torch.Tensor:
    """120-d real facial motion: the first 60 dlib landmarks of each frame, centred and scaled by
    the face size, minus those of the first frame (f_t - f_s)."""
    from talkbench import media
    from talkbench.face import analyse_image, get_backend

    backend = get_backend("dlib")
    feats = []
    for i, frame in enumerate(media.iter_frames(video, size=256)):
        if i >= frames:
            break
        a = analyse_image(frame, backend)
        if a.found:
            lm = a.landmarks[:60]
            feats.append(((lm - lm.mean(0)) / a.box.size).reshape(-1))
    f = torch.tensor(np.stack(feats), dtype=torch.float32)
    return f - f[0]


@pytest.mark.slow
@pytest.mark.shared_data
def test_reconstruction_error_falls_with_each_residual_layer(shared_data):
    """Fit GRFSQ (12 x 4 x 5^4) to real landmark motion of one talking clip, then decode with 1,
    2, 3, 4 residual layers: the error must fall at every layer (coarse-to-fine)."""
    motion = torch.cat([
        _landmark_motion(shared_data / "video" / "WDA_AlexandriaOcasioCortez_000.mp4"),
        _landmark_motion(shared_data / "video" / "WDA_KatieHill_000.mp4"),
    ])
    motion = motion / motion.std()  # unit scale, as a normalised network feature
    torch.manual_seed(0)
    q = GRFSQ()
    opt = torch.optim.Adam(q.parameters(), lr=3e-3)
    for _ in range(400):
        loss = (q(motion).quantized - motion).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = q(motion)
        errors = [motion.pow(2).mean().item()]
        errors += [(q.decode(out.indices, upto=r) - motion).pow(2).mean().item() for r in range(1, 5)]
    print("MSE after 0..4 residual layers:", [round(e, 5) for e in errors])
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[4] < 0.5 * errors[1]
    u = utilisation(out.indices, PAPER_VARIANT)
    print(f"utilisation on {len(motion)} real frames: {100 * u['overall']:.2f}%, per layer {u['per_layer']}")
