"""``talkbench vqtalker`` train-tokenizer / encode / reconstruct end to end on a sample clip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from talkbench import media
from talkbench.cli.vqtalker import app
from talkbench.vqtalker.codec import load_tokens


def test_train_encode_reconstruct(one_clip, cache_dir, tmp_path):
    clip = one_clip
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(app, [
        "train-tokenizer", "--config", "tiny", "--out", str(run), "--steps", "2", "--json",
        "--set", "model.size=32", "--set", "train.batch_size=2", "--set", f"data.source=[{clip}]",
        "--set", f"data.cache_dir={cache_dir}", "--set", "loss.eye=0", "--set", "loss.mouth=0",
    ])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["step"] == 2
    ckpt = run / "checkpoints" / "latest.pt"
    assert ckpt.is_file()

    tokens_path = tmp_path / "tokens.npz"
    res = runner.invoke(app, ["encode", str(clip), "--checkpoint", str(ckpt), "--out", str(tokens_path), "--json"])
    assert res.exit_code == 0, res.output
    info = media.probe(clip)
    frames = media.frame_count_at(info)
    tokens = load_tokens(tokens_path)
    assert tokens.indices.shape == (12, 4, frames)
    assert tokens.indices.dtype == np.uint16 and int(tokens.indices.max()) < 625
    assert tokens.meta["codebook_size"] == 625 and tokens.meta["checkpoint_sha256"]
    assert tokens.source.shape == (32, 32, 3)
    summary = json.loads(res.stdout)
    assert summary["frames"] == frames and summary["shape"] == [12, 4, frames] and tokens.fps == 25
    # 12 groups x 4 residual layers x log2(625) bits x 25 frames/s = 11,145.25 bit/s (Table 7: 11.15 kbps)
    assert summary["bitrate_bps"] == 12 * 4 * math.log2(625) * 25
    assert summary["bitrate_bps"] == pytest.approx(11_145.254855, abs=1e-6)

    video = tmp_path / "recon.mp4"
    res = runner.invoke(app, ["reconstruct", str(clip), "--checkpoint", str(ckpt), "--out", str(video)])
    assert res.exit_code == 0, res.output
    out = media.probe(video)
    assert (out.width, out.height) == (32, 32)
    assert out.frame_count == frames
    assert out.has_audio == info.has_audio


def test_encode_frames_streams_and_matches_the_forward_pass():
    import torch

    from talkbench.vqtalker.codec import encode_frames, render_tokens
    from talkbench.vqtalker.tokenizer import TokenizerConfig, build_tokenizer, from_model, load_config, to_model

    torch.manual_seed(0)
    model = build_tokenizer(TokenizerConfig.from_dict({**load_config("tiny")["model"], "size": 32})).eval()
    frames = (np.random.default_rng(0).random((21, 32, 32, 3)) * 255).astype(np.uint8)
    batched = encode_frames(model, frames, batch=8)
    streamed = encode_frames(model, iter(list(frames)), batch=5)
    assert batched.shape == (12, 4, 21)
    assert np.array_equal(batched, streamed)
    with torch.no_grad():
        src = to_model(frames[:1]).expand(21, -1, -1, -1)
        out = model(src, to_model(frames))
    assert (out.indices.numpy() != batched).mean() < 0.01  # same tokens up to float ties at rounding edges
    rendered = np.stack(list(render_tokens(model, frames[0], batched, batch=8)))
    assert rendered.shape == (21, 32, 32, 3)
    same = out.indices.numpy() == batched
    ok = same.all(axis=(0, 1))
    assert np.abs(rendered[ok].astype(int) - from_model(out.image)[ok].astype(int)).max() <= 1
