"""GRFSQ and the Table 3 quantizers: shapes, ranges, exact decoding, gradients, the FSQ step
against lucidrains' reference, the codebook baselines and the GroupedResidualFSQ option against
calling vector-quantize-pytorch directly, dead-code restarts, bitrate and utilisation per variant,
and residual refinement on real facial motion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from talkbench.vqtalker.quantize import (
    GRFSQ,
    PAPER_VARIANT,
    TABLE3,
    GroupResidualVQ,
    LibraryGRFSQ,
    QuantizerConfig,
    QuantizerError,
    bitrate,
    build_quantizer,
    library_vq_kwargs,
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


# ----------------------------------------------------------------------------- vector-quantize-pytorch


def _library_reference(q: GroupResidualVQ):
    """The library module our codebook baseline wraps, built independently from the same keyword
    arguments and loaded with the same codebooks."""
    import vector_quantize_pytorch as vqp

    cfg = q.config
    kwargs = library_vq_kwargs(cfg)
    if cfg.groups == 1:
        ref = vqp.ResidualVQ(dim=cfg.group_dim, **kwargs)
    else:
        ref = vqp.GroupedResidualVQ(dim=cfg.groups * cfg.group_dim, groups=cfg.groups, **kwargs)
    ref.load_state_dict(q.vq.state_dict())
    return ref


@pytest.mark.parametrize("name", ["vq", "gvq", "rvq", "grvq"])
@pytest.mark.parametrize("training", [True, False])
def test_codebook_variant_forward_equals_the_library(name, training):
    """Same weights, same input, same RNG: quantized output, indices, commitment loss and the
    EMA-updated codebooks equal calling ResidualVQ / GroupedResidualVQ directly."""
    torch.manual_seed(6)
    cfg = TABLE3[name]
    q = build_quantizer(name).train(training)
    ref = _library_reference(q).train(training)
    x = torch.randn(4, 25, cfg.dim, requires_grad=training)  # the straight-through path in training
    h = q.project_in(x).reshape(1, 100, -1)  # identity except GVQ's 120 -> 128

    torch.manual_seed(7)  # the grouped forward draws a dropout seed in training
    out = q(x)
    torch.manual_seed(7)
    ref_q, ref_idx, ref_losses = ref(h)
    if cfg.groups == 1:
        ref_idx, ref_losses = ref_idx.unsqueeze(0), ref_losses.unsqueeze(0)  # (1, 1, N, R), (1, R)
    assert ref_idx.shape == (cfg.groups, 1, 100, cfg.residuals)

    assert torch.equal(out.quantized, q.project_out(ref_q.reshape(4, 25, -1)))
    assert out.indices.shape == (cfg.groups, cfg.residuals, 4, 25)
    # Algorithm 1's layout: indices[g, r, b, t] is the library's code of group g, step r, vector b*25+t
    for g, r, b, t in [(0, 0, 0, 0), (cfg.groups - 1, cfg.residuals - 1, 3, 24), (cfg.groups // 2, 0, 2, 7)]:
        assert out.indices[g, r, b, t] == ref_idx[g, 0, b * 25 + t, r]
    assert torch.equal(out.indices.sort(-1).values.flatten(),
                       ref_idx.squeeze(1).permute(0, 2, 1).reshape(cfg.groups, cfg.residuals, 4, 25)
                       .sort(-1).values.flatten())
    if training:
        assert out.aux_loss.requires_grad and out.aux_loss > 0
        assert torch.equal(out.aux_loss, ref_losses.mean(0).sum())
    else:
        assert out.aux_loss == 0
        assert torch.equal(q.decode(out.indices), out.quantized)
    ref_embed = ref.codebooks.unsqueeze(0) if cfg.groups == 1 else ref.codebooks
    assert torch.equal(q.embed, ref_embed)  # both moved (training) or both stayed (eval) alike


def test_commitment_loss_is_weighted_residual_error():
    """GRVQ's aux loss: commitment x sum over the 4 steps of mean ||residual_r - sg(q_r)||^2,
    recomputed from the indices and codebooks (before the EMA step moves them)."""
    torch.manual_seed(8)
    q = build_quantizer("grvq").train()
    x = torch.randn(64, 120)
    embed = q.embed.clone()  # (G, R, K, d) before this step's update
    out = q(x)
    residual = x.reshape(64, 12, 10)
    expected = torch.zeros(())
    g = torch.arange(12)[:, None]
    for r in range(4):
        code = embed[g, r, out.indices[:, r]].permute(1, 0, 2)  # (64, 12, 10)
        expected = expected + (residual - code).pow(2).mean()
        residual = residual - code
    torch.testing.assert_close(out.aux_loss, 0.25 * expected)


def _skewed_motion(n: int, generator: torch.Generator) -> torch.Tensor:
    """Motion far from every initial code and concentrated: 5 + 0.3 * noise in 120-d."""
    return 5 + 0.3 * torch.randn(n, 120, generator=generator)


def _utilisation_after_training(threshold: float) -> dict:
    from dataclasses import replace

    cfg = replace(TABLE3["grvq"], residuals=2, codebook_size=64, ema_decay=0.9, dead_code_threshold=threshold)
    torch.manual_seed(9)
    q = build_quantizer(cfg).train()
    gen = torch.Generator().manual_seed(10)
    for _ in range(15):
        q(_skewed_motion(256, gen))
    q.eval()
    return utilisation(q(_skewed_motion(512, gen)).indices, cfg)


def test_dead_codes_are_restarted():
    """On skewed input a no-restart codebook keeps almost every first-step code dead; with restarts
    the dead codes are re-seeded from batch vectors and utilisation rises to most of the codebook."""
    without = _utilisation_after_training(0.0)
    restarted = _utilisation_after_training(1.0)
    print(f"utilisation without restarts {100 * without['overall']:.1f}% {without['per_layer']}, "
          f"with {100 * restarted['overall']:.1f}% {restarted['per_layer']}")
    assert without["per_layer"][0] < 0.1  # a handful of the 64 codes
    assert restarted["per_layer"][0] > 0.9
    assert restarted["overall"] > without["overall"] + 0.3


def test_kmeans_init_starts_the_codebooks_on_the_data():
    """kmeans_init: the first training batch's k-means centroids become the codebooks, so the
    skewed motion uses most codes from the first step (random init uses a handful)."""
    from dataclasses import replace

    cfg = replace(TABLE3["grvq"], residuals=1, codebook_size=64, kmeans_init=True, dead_code_threshold=0.0)
    torch.manual_seed(12)
    q = build_quantizer(cfg).train()
    gen = torch.Generator().manual_seed(13)
    q(_skewed_motion(1024, gen))
    assert (q.embed.mean(dim=(1, 2, 3)) - 5).abs().max() < 0.1  # every group's codes sit on the data
    u = utilisation(q.eval()(_skewed_motion(512, gen)).indices, cfg)
    assert u["overall"] > 0.8


_DDP_SCRIPT = """
import sys, torch, torch.distributed as dist, torch.multiprocessing as mp
from dataclasses import replace
from talkbench.vqtalker.quantize import TABLE3, build_quantizer

def work(rank, world, init, out):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    cfg = replace(TABLE3["grvq"], codebook_size=64, dead_code_threshold=1.0, ema_decay=0.9)
    torch.manual_seed(0)
    q = build_quantizer(cfg).train()
    g = torch.Generator().manual_seed(100 + rank)  # each rank sees different motion
    for _ in range(5):
        q(5 + 0.3 * torch.randn(32, 120, generator=g))
    gathered = [torch.empty_like(q.embed) for _ in range(world)]
    dist.all_gather(gathered, q.embed.contiguous())
    if rank == 0:
        torch.save(torch.stack(gathered), out)
    dist.barrier()
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(work, args=(2, sys.argv[1], sys.argv[2]), nprocs=2)
"""


def test_codebooks_stay_identical_across_ranks(tmp_path):
    """Two gloo ranks on different data: the library all-reduces the EMA statistics and samples
    restarts across ranks, so the codebooks stay identical (and differ from one rank's alone)."""
    import subprocess
    import sys
    from dataclasses import replace

    script, out = tmp_path / "ddp_codebooks.py", tmp_path / "codebooks.pt"
    script.write_text(_DDP_SCRIPT)
    result = subprocess.run([sys.executable, str(script), f"file://{tmp_path / 'rendezvous'}", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert out.is_file(), result.stderr[-3000:]
    per_rank = torch.load(out)
    assert per_rank.shape == (2, 12, 4, 64, 10)
    assert torch.equal(per_rank[0], per_rank[1])

    cfg = replace(TABLE3["grvq"], codebook_size=64, dead_code_threshold=1.0, ema_decay=0.9)
    torch.manual_seed(0)
    alone = build_quantizer(cfg).train()
    g = torch.Generator().manual_seed(100)  # rank 0's motion only
    for _ in range(5):
        alone(5 + 0.3 * torch.randn(32, 120, generator=g))
    assert not torch.equal(alone.embed, per_rank[0])


def test_table3_codebook_variants_restart_dead_codes_by_default():
    for name, cfg in TABLE3.items():
        if cfg.kind == "vq":
            kwargs = library_vq_kwargs(cfg)
            assert kwargs["threshold_ema_dead_code"] == cfg.dead_code_threshold > 0, name
            assert (kwargs["decay"], kwargs["commitment_weight"]) == (0.99, 0.25)


def test_grouped_residual_fsq_option():
    """fsq_library: the library's GroupedResidualFSQ in the same 12 x 4 x 5^4 token space: the same
    bitrate as our GRFSQ, its forward equal to the library's, and its indices decode back to the
    quantized output (and to coarser sums with ``upto``)."""
    from dataclasses import replace

    from vector_quantize_pytorch import GroupedResidualFSQ

    cfg = replace(TABLE3[PAPER_VARIANT], fsq_library=True)
    assert bitrate(cfg) == bitrate(PAPER_VARIANT) == 12 * 4 * math.log2(625) * 25
    torch.manual_seed(11)
    q = build_quantizer(cfg).eval()
    assert isinstance(q, LibraryGRFSQ) and q.fsq.codebook_size == 625 == q.codebook_size
    assert isinstance(build_quantizer(PAPER_VARIANT), GRFSQ)  # the paper variant stays ours

    ref = GroupedResidualFSQ(dim=120, groups=12, levels=[5, 5, 5, 5], num_quantizers=4).eval()
    ref.load_state_dict(q.fsq.state_dict())
    x = torch.randn(3, 17, 120)
    out = q(x)
    ref_q, ref_idx = ref(x.reshape(1, 51, 120))
    assert torch.equal(out.quantized, ref_q.reshape(3, 17, 120))
    assert out.indices.shape == (12, 4, 3, 17) and out.indices.dtype == torch.int64
    assert out.indices[5, 2, 1, 4] == ref_idx[5, 0, 17 + 4, 2]
    assert 0 <= int(out.indices.min()) and int(out.indices.max()) < 625
    assert len(torch.unique(out.indices)) > 50
    torch.testing.assert_close(q.decode(out.indices), out.quantized, rtol=0, atol=1e-6)
    torch.testing.assert_close(q.decode(out.indices, upto=4), out.quantized, rtol=0, atol=1e-6)
    coarse = q.decode(out.indices, upto=1)
    assert (coarse - out.quantized).abs().max() > 1e-3  # later steps add detail
    # a single vector, and the tokenizer's (B, 120) batches
    one = q(x[0, 0])
    assert one.indices.shape == (12, 4) and torch.equal(one.indices, out.indices[..., 0, 0])
    torch.testing.assert_close(q.decode(one.indices), one.quantized, rtol=0, atol=1e-6)
    # gradients reach the input through the library's straight-through rounding
    xg = x[0].clone().requires_grad_(True)
    q.train()(xg).quantized.pow(2).sum().backward()
    assert (xg.grad.abs().sum(0) > 0).all()


def test_tokenizer_config_selects_the_library_fsq():
    from talkbench.vqtalker.tokenizer import TokenizerConfig

    cfg = TokenizerConfig.from_dict({"quantizer": {"variant": PAPER_VARIANT, "fsq_library": True}})
    assert cfg.quantizer.fsq_library and cfg.quantizer.groups == 12
    assert TokenizerConfig.from_dict(cfg.to_dict()).quantizer == cfg.quantizer
    assert isinstance(build_quantizer(cfg.quantizer), LibraryGRFSQ)


def test_missing_library_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "vector_quantize_pytorch", None)  # import now raises ImportError
    with pytest.raises(QuantizerError, match=r"pip install 'talkbench\[train\]'"):
        build_quantizer("grvq")
    assert isinstance(build_quantizer(PAPER_VARIANT), GRFSQ)  # ours needs only torch


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
