"""The coarse-to-fine generator: shapes, the order of the layer loop, windows on long
sequences, padding, and the configs (paper size, Table 4 ablations)."""

from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest
import torch

from talkbench.vqtalker.generator import (
    CONFIG_NAMES,
    GeneratorConfig,
    MotionGenerator,
    build_generator,
    count_parameters,
    load_generator_config,
    window_starts,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw) -> MotionGenerator:
    torch.manual_seed(0)
    cfg = GeneratorConfig.from_dict({**load_generator_config("tiny")["model"], "dropout": 0.0, **kw})
    return MotionGenerator(cfg).eval()


def inputs(cfg: GeneratorConfig, b: int, t: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if cfg.speech_discrete:
        speech = torch.randint(0, cfg.speech_vocab, (b, t, cfg.speech_per_frame), generator=g)
    else:
        speech = torch.randn(b, t, cfg.speech_dim, generator=g)
    controls = torch.randn(b, t, 7, generator=g)
    f_g = torch.randn(b, cfg.style_dim, generator=g)
    return speech, controls, f_g


def test_forward_shapes_for_every_table4_variant():
    m = tiny()
    s, c, f = inputs(m.config, 2, 10)
    assert m(s, c, f, 0).shape == (2, 12, 10, 625)
    prev = torch.randint(0, 625, (2, 12, 2, 10))
    assert m(s, c, f, 2, prev).shape == (2, 12, 10, 625)
    cont = tiny(speech_discrete=False, speech_dim=24)
    s, c, f = inputs(cont.config, 2, 10)
    assert cont(s, c, f, 0).shape == (2, 12, 10, 625)  # C-D
    vec = tiny(speech_discrete=False, speech_dim=24, motion="vector", motion_dim=120)
    assert vec(s, c, f).shape == (2, 10, 120)  # C-C
    assert vec.generate(s[0], c[0], f[0]).shape == (10, 120)


def test_coarse_to_fine_loop_runs_layers_in_order_feeding_each_its_predecessors():
    m = tiny()
    calls = []
    m.register_forward_hook(lambda mod, args, out: calls.append((args[3], args[4].clone(), out.argmax(-1))))
    s, c, f = inputs(m.config, 1, 9)
    tokens = m.generate(s[0], c[0], f[0])
    assert tokens.shape == (12, 4, 9) and tokens.dtype == torch.long
    assert 0 <= tokens.min() and tokens.max() < 625
    assert [layer for layer, _, _ in calls] == [0, 1, 2, 3]  # coarse to fine, one pass each
    for r, (layer, previous, argmax) in enumerate(calls):
        assert previous.shape == (1, 12, r, 9)  # all frames at once; r layers already done
        for j in range(r):
            assert torch.equal(previous[0, :, j], calls[j][2][0])  # layer j's argmax is fed back
        assert torch.equal(tokens[:, r], argmax[0])


def test_first_layer_sees_zeros_and_layer_indicator_matters():
    m = tiny()
    s, c, f = inputs(m.config, 1, 6)
    zeros = m.embed_codes(None, 0, 1, 6)
    assert zeros.shape == (1, 6, 12 * m.config.code_embed) and not zeros.any()
    prev = torch.randint(0, 625, (1, 12, 1, 6))
    assert not torch.allclose(m(s, c, f, 1, prev), m(s, c, f, 2, torch.cat([prev, prev], 2)))
    # one set of parameters for every layer: nothing is indexed by layer except k and the code table
    assert m.layer_indicator.num_embeddings == 4


def test_padding_does_not_change_the_real_frames():
    m = tiny()
    s, c, f = inputs(m.config, 1, 12)
    alone = m(s[:, :8], c[:, :8], f, 0)
    pad = torch.zeros(1, 12, dtype=torch.bool)
    pad[:, 8:] = True
    padded = m(s, c, f, 0, padding=pad)
    torch.testing.assert_close(padded[:, :, :8], alone, atol=1e-5, rtol=1e-5)


def test_window_starts_cover_the_sequence():
    assert window_starts(10, 32, 8) == [0]
    starts = window_starts(100, 32, 8)
    assert starts[0] == 0 and starts[-1] == 68 and all(b - a <= 24 for a, b in zip(starts, starts[1:]))


def test_long_sequences_are_generated_in_overlapping_windows():
    m = tiny(max_len=32)
    s, c, f = inputs(m.config, 1, 100)
    with pytest.raises(ValueError, match="max_len"):
        m(s, c, f, 0)
    tokens = m.generate(s[0], c[0], f[0], overlap=8)
    assert tokens.shape == (12, 4, 100)
    starts = window_starts(100, 32, 8)
    windows = [m.generate_window(s[:, a : a + 32], c[:, a : a + 32], f)[0] for a in starts]
    for t in range(100):
        candidates = [i for i in range(len(starts)) if starts[i] <= t < starts[i] + 32]
        assert any(torch.equal(tokens[..., t], windows[i][..., t - starts[i]]) for i in candidates)
    # A sequence that fits one window is generated in one window.
    short = m.generate(s[0, :30], c[0, :30], f[0])
    assert torch.equal(short, m.generate_window(s[:, :30], c[:, :30], f)[0])


@pytest.mark.parametrize("frames,window,overlap", [(100, 32, 8), (100, 32, 9), (75, 20, 6), (33, 32, 8)])
def test_each_frame_is_taken_from_the_window_where_it_lies_farthest_from_an_edge(frames, window, overlap):
    """The stitching rule on its own: every window's tokens here name the window they came
    from, so the stitched sequence shows which window each frame was taken from."""
    m = tiny(max_len=window)
    s, c, f = inputs(m.config, 1, frames)

    starts = window_starts(frames, window, overlap)
    calls = []

    def labelled_window(speech, controls, global_feature):  # windows are generated in order
        calls.append(speech.shape[1])
        return torch.full((1, m.config.groups, m.config.residuals, speech.shape[1]), starts[len(calls) - 1])

    m.generate_window = labelled_window
    chosen = m.generate(s[0], c[0], f[0], window=window, overlap=overlap)[0, 0]
    assert calls == [min(window, frames - a) for a in starts]
    for t in range(frames):
        ends = {a: min(a + window, frames) for a in starts}
        distance = {a: min(t - a, ends[a] - 1 - t) for a in starts if a <= t < ends[a]}
        a = int(chosen[t])
        assert a in distance, f"frame {t} taken from window {a}, which does not hold it"
        assert distance[a] == max(distance.values()), f"frame {t}: window {a} is not the farthest from an edge"


def test_teacher_forced_training_fits_a_batch():
    torch.manual_seed(0)
    m = tiny()
    m.train()
    s, c, f = inputs(m.config, 2, 16)
    targets = torch.randint(0, 625, (2, 12, 4, 16))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss, terms = m.loss(s, c, f, targets)
        first = first if first is not None else terms
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert math.isclose(first["nll"], math.log(625), rel_tol=0.05)  # starts at chance
    assert terms["nll"] < 0.6 * first["nll"] and terms["acc_r4"] > 0.3


def expected_parameters(model: dict) -> int:
    """Trainable parameters of the stage-2 BERT, counted from its layer shapes (config fields;
    the defaults of GeneratorConfig fill what a YAML leaves out)."""
    from dataclasses import asdict

    m = {**asdict(GeneratorConfig()), **model}
    W, F, H = m["width"], m["ffn"], m["head_hidden"]
    grfsq = m["motion"] == "grfsq"
    if m["speech_discrete"]:  # one embedding per token slot of a frame, concatenated
        n = m["speech_vocab"] * (m["speech_embed"] // m["speech_per_frame"])
    else:
        n = m["speech_dim"] * m["speech_embed"] + m["speech_embed"]
    n += 7 * m["control_embed"] + m["control_embed"]  # the 7 control numbers
    concat = m["speech_embed"] + m["control_embed"] + (m["groups"] * m["code_embed"] if grfsq else 0)
    if grfsq:  # one code embedding per (layer, group, code)
        n += m["residuals"] * m["groups"] * m["codes"] * m["code_embed"]
    n += concat * W + W  # projection of the concatenation
    n += m["style_dim"] * W + W  # f_g -> prefix token
    n += m["residuals"] * W  # layer indicator k
    n += (m["max_len"] + 2) * W  # learned positions, 2 prefix tokens
    # pre-norm encoder layer: QKV + output projection, two FFN linears, two LayerNorms
    layer = (3 * W * W + 3 * W) + (W * W + W) + (W * F + F) + (F * W + W) + 2 * 2 * W
    n += m["layers"] * layer + 2 * W  # and the final LayerNorm
    if grfsq:  # G heads width -> hidden -> codes
        n += m["groups"] * (W * H + H + H * m["codes"] + m["codes"])
    else:
        n += W * H + H + H * m["motion_dim"] + m["motion_dim"]
    return n


# Pinned from expected_parameters: the paper states 204M; its width 1024 x 12 layers needs an
# FFN of ~5.5x (5632) to get there: 201,785,164 (-1.1 %). BERT's usual 4x (4096) would give
# 164,017,996.
PINNED_PARAMETERS = {
    "generator-tiny": 1_128_780,
    "generator-paper": 201_785_164,
    "generator-c-c": 194_862_968,
    "generator-d-c": 195_648_888,
    "generator-c-d": 200_999_244,
    "generator-d-d": 201_785_164,
}


def test_configs_build_and_the_paper_size_is_reconciled():
    assert set(PINNED_PARAMETERS) == set(CONFIG_NAMES)
    for name in CONFIG_NAMES:
        cfg = load_generator_config(name)
        with torch.device("meta"):
            m = build_generator(cfg["model"])
        assert m.config.groups == 12 and m.config.codes == 625 and m.config.max_len == 4096
        assert count_parameters(m) == expected_parameters(cfg["model"]) == PINNED_PARAMETERS[name], name
    paper = load_generator_config("paper")["model"]
    with torch.device("meta"):
        m = build_generator(paper)
    assert m.config.concat_dim == 1024 and m.config.layers == 12 and m.config.head_hidden == 256
    assert expected_parameters({**paper, "ffn": 4096}) == 164_017_996
    kinds = {n: (load_generator_config(n)["model"]["speech_discrete"], load_generator_config(n)["model"]["motion"])
             for n in ("c-c", "d-c", "c-d", "d-d")}
    assert kinds == {"c-c": (False, "vector"), "d-c": (True, "vector"), "c-d": (False, "grfsq"), "d-d": (True, "grfsq")}


def test_all_layers_in_one_pass_equal_layer_by_layer_teacher_forcing():
    m = tiny()
    s, c, f = inputs(m.config, 2, 7)
    targets = torch.randint(0, 625, (2, 12, 4, 7))
    loss, terms = m.loss(s, c, f, targets)
    for r in range(4):
        logits = m(s, c, f, r, targets[:, :, :r])
        nll = torch.nn.functional.cross_entropy(logits.flatten(0, 2), targets[:, :, r].flatten())
        assert math.isclose(terms[f"nll_r{r + 1}"], float(nll.detach()), rel_tol=1e-4)


# --------------------------------------------------------------------- training on sample clips


@pytest.fixture(scope="module")
def stage2_setup(tmp_path_factory, sample_clips):
    """A tiny stage-1 tokenizer checkpoint (untrained: random weights, real encoder/quantizer),
    the S3 speech path on a tiny ONNX model, and a config using three sample clips."""
    import yaml

    from talkbench.vqtalker import train as stage1
    from talkbench.vqtalker.tokenizer import MotionTokenizer, TokenizerConfig, load_config
    from tests.vqtalker.test_speech import _loudness_tokenizer

    root = tmp_path_factory.mktemp("stage2")
    tok_cfg = load_config("tiny")
    torch.manual_seed(0)
    tokenizer = MotionTokenizer(TokenizerConfig.from_dict(tok_cfg["model"]))
    ckpt = root / "tokenizer.pt"
    torch.save({"format": stage1.CHECKPOINT_FORMAT, "step": 0, "config": tok_cfg,
                "tokenizer": tokenizer.state_dict()}, ckpt)
    onnx_path = _loudness_tokenizer(root / "s3-tiny.onnx")
    cfg = load_generator_config("tiny")
    cfg["model"].update(speech_vocab=4096, dropout=0.0)
    cfg["speech"] = {"backend": "cosyvoice-s3", "onnx_path": str(onnx_path)}
    cfg["data"] = {"source": [str(c.video) for c in sample_clips[:3]], "holdout": [sample_clips[2].video.stem], "fps": 25}
    cfg["train"].update(batch_size=2, window=24, log_every=2, checkpoint_every=100)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    return root, cfg, ckpt


@pytest.mark.slow
def test_trainer_prepares_aligned_clips_learns_and_resumes_exactly(stage2_setup, sample_clips):
    from talkbench.vqtalker.generator_train import build_trainer
    from talkbench.vqtalker.inference import load_generator_checkpoint

    root, cfg, ckpt = stage2_setup
    cache = root / "cache"
    a = build_trainer(cfg, root / "a", ckpt, cache_dir=cache)
    assert len(a.samples) == 2 and len(a.holdout) == 1
    durations = {c.id: c.duration for c in sample_clips}
    for s in a.samples + a.holdout:
        assert s.targets.shape == (12, 4, s.frames) and s.controls.shape == (s.frames, 7)
        assert s.speech.shape == (s.frames, 2) and s.global_feature.shape == (128,)
        assert s.frames == round(durations[s.clip] * 25)  # every frame of the clip, at 25 fps
    rows = a.fit(steps=6)
    assert rows[0]["step"] == 0 and rows[-1]["step"] == 6 and rows[-1]["nll"] < rows[1]["nll"]
    assert (root / "a" / "log.csv").read_text().count("\n") == len(rows) + 1
    assert list((root / "a" / "tensorboard").glob("events.out.tfevents.*")), "stage 2 logs to TensorBoard too"
    saved = load_generator_checkpoint(root / "a" / "checkpoints" / "latest.pt")  # weights_only=True
    assert saved["step"] == 6 and saved["meta"]["holdout_clips"] == [cfg["data"]["holdout"][0]]
    # 3 steps, save, resume in a fresh trainer, 3 more: the same weights as 6 straight.
    b = build_trainer(cfg, root / "b", ckpt, cache_dir=cache)
    b.fit(steps=3)
    c = build_trainer(cfg, root / "c", ckpt, cache_dir=cache)
    c.load(root / "b" / "checkpoints" / "latest.pt")
    c.fit(steps=6)
    for (name, x), y in zip(a.model.state_dict().items(), c.model.state_dict().values()):
        torch.testing.assert_close(x, y, msg=name)


@pytest.mark.slow
def test_generate_video_matches_the_audio_length(stage2_setup, sample_clips, tmp_path):
    from PIL import Image

    from talkbench import media
    from talkbench.vqtalker.generator_train import build_trainer
    from talkbench.vqtalker.inference import generate_video

    root, cfg, ckpt = stage2_setup
    trainer = build_trainer(cfg, root / "g", ckpt, cache_dir=root / "cache")
    trainer.fit(steps=1)
    clip = sample_clips[3]
    portrait = tmp_path / "portrait.png"
    Image.fromarray(next(iter(media.iter_frames(clip.video)))).save(portrait)
    summary = generate_video(root / "g" / "checkpoints" / "latest.pt", portrait, clip.video, tmp_path / "out.mp4",
                             controls_from=sample_clips[4].video)
    info = media.probe(tmp_path / "out.mp4")
    audio_frames = round(len(media.read_audio(clip.video)) / 640)
    assert abs(info.frame_count - audio_frames) <= 1 and summary["frames"] == audio_frames
    assert info.has_audio and info.width == 64 and summary["tokens"] == [12, 4, audio_frames]


@pytest.mark.slow
def test_two_process_torchrun_step(stage2_setup):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from talkbench.vqtalker.generator_train import build_trainer
    from talkbench.vqtalker.inference import load_generator_checkpoint

    root, cfg, ckpt = stage2_setup
    warm = build_trainer(cfg, root / "warm", ckpt, cache_dir=root / "cache")  # fill the cache once
    assert len(warm.holdout) == 1
    held_out = warm.evaluate()["eval"]  # one process, the initial weights
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "talkbench.vqtalker.generator_train",
         "--config", str(root / "config.yaml"), "--tokenizer", str(ckpt), "--out", str(root / "ddp"),
         "--steps", "2", "--cache-dir", str(root / "cache")],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["step"] == 2 and math.isfinite(summary["last"]["nll"])
    assert load_generator_checkpoint(root / "ddp" / "checkpoints" / "latest.pt")["step"] == 2
    # the held-out loss, scored by rank 0 alone (one clip, two ranks) and reduced over both, equals one process's
    with open(root / "ddp" / "log.csv") as f:
        first = next(csv.DictReader(f))
    assert first["step"] == "0" and float(first["eval"]) == pytest.approx(held_out, abs=1e-6)


def test_mouth_envelope_correlation_measures_lip_sync(sample_clips):
    """The check used on generated videos: high on a sample clip (its jaw follows the speech
    envelope by construction), near zero against another clip's audio."""
    from talkbench import media
    from talkbench.vqtalker.lipsync import correlate, mouth_opening, speech_envelope

    en = next(c for c in sample_clips if c.id == "en_001")
    other = next(c for c in sample_clips if c.id == "tr_001")
    frames = round(en.duration * 25)  # samples.json's duration at 25 fps
    opening = mouth_opening(en.video)
    assert opening.shape == (frames,) and np.isfinite(opening).all()  # a face in every frame
    assert correlate(opening, speech_envelope(media.read_audio(en.video), frames)) > 0.7
    assert abs(correlate(opening, speech_envelope(media.read_audio(other.video), frames))) < 0.4


def test_windowed_generation_on_long_audio(tmp_path):
    """31 s of audio through the S3 path (tiny ONNX model) -> 783 frames of tokens from a
    generator whose max length is 256 frames: four overlapping windows, one token per frame."""
    from talkbench.vqtalker.speech import CosyVoiceS3, frame_count
    from tests.vqtalker.test_speech import _bursts, _loudness_tokenizer

    audio = _bursts(31.32, [(1.0, 2.0), (29.5, 30.5)])
    feats = CosyVoiceS3("cosyvoice-s3", onnx_path=_loudness_tokenizer(tmp_path / "tiny.onnx"))(audio)
    assert feats.frames == frame_count(len(audio)) == 783
    m = tiny(speech_vocab=4096, max_len=256)
    controls = torch.zeros(783, 7)
    tokens = m.generate(torch.from_numpy(feats.values), controls, torch.zeros(128), overlap=64)
    assert tokens.shape == (12, 4, 783) and len(window_starts(783, 256, 64)) == 4


def unboxed(text: str) -> str:
    """CLI output without rich's box drawing and without whitespace: a long path that rich
    folds over several lines of an error box at the terminal's width reads whole again."""
    return re.sub(r"[\s\u2500-\u257f]+", "", text)


def test_cli_has_the_stage2_commands_and_names_missing_files(tmp_path):
    from typer.testing import CliRunner

    from talkbench.cli import app

    runner = CliRunner()
    help_text = runner.invoke(app, ["vqtalker", "--help"]).output
    for command in ("fit-units", "train-generator", "generate"):
        assert command in help_text
    portrait = tmp_path / "none.png"
    result = runner.invoke(app, ["vqtalker", "generate", "--portrait", str(portrait), "--audio",
                                 str(tmp_path / "a.wav"), "--checkpoint", str(tmp_path / "g.pt"), "--out", str(tmp_path / "o.mp4")])
    assert result.exit_code == 2, result.output  # a usage error, not a crash
    # The whole path of the missing file, whatever the terminal width (rich folds long paths).
    assert f"{unboxed(str(portrait))}:filenotfound" in unboxed(result.output), result.output
