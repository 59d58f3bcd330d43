"""Make the tiny checkpoints shipped beside this file: ``python -m talkbench.vqtalker.pretrained.make``.

1. stage 1: ``talkbench vqtalker train-tokenizer --config tiny`` on the sample corpus, then
   more steps with the mouth and eye terms raised (100 and 30): at 64 px the config's weights
   of 10 leave the mouth too blurred for a landmark detector to see it open and close;
2. Whisper units: ``fit-units`` on the training clips (the held-out ones excluded);
3. stage 2: ``train-generator --config tiny`` with that tokenizer;
4. both checkpoints stripped to their weights (no optimiser or discriminator state), their
   ``log.csv`` curves copied, and the held-out lip-sync check (mouth opening vs speech envelope
   of generated videos) written to ``tiny-report.json``.

CPU only; about 20 minutes on 2 cores. The run directory (``--work``) keeps everything else.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from talkbench import media
from talkbench.samples import load_sample_corpus
from talkbench.vqtalker.generator import load_generator_config
from talkbench.vqtalker.inference import GENERATOR_FORMAT, TOKENIZER_FORMAT, generate_video, load_checkpoint
from talkbench.vqtalker.lipsync import mouth_envelope_correlation
from talkbench.vqtalker.pretrained import HERE, TINY_GENERATOR, TINY_TOKENIZER

TOKENIZER_STEPS = 2000
TOKENIZER_REGION_STEPS = 1000  # then, with the raised region weights
REGION_WEIGHTS = ("loss.mouth=100", "loss.eye=30")
GENERATOR_STEPS = 150  # the held-out NLL is flat from ~120 steps on (tiny-generator-log.csv); six clips overfit


def talkbench(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "talkbench", *args], check=True)


def resume_args(run_dir: Path) -> list[str]:
    """Re-running picks up where a run stopped (and does nothing once it reached its steps)."""
    latest = run_dir / "checkpoints" / "latest.pt"
    return ["--resume", str(latest)] if latest.is_file() else []


def strip(checkpoint: Path, out: Path, fmt: str, keep: tuple[str, ...], meta: dict | None = None) -> Path:
    """Only what inference needs, loadable with ``weights_only=True``; read through
    ``load_checkpoint``, so an older run's checkpoint gives today's keys."""
    ckpt = load_checkpoint(checkpoint, fmt)
    missing = [k for k in keep if k not in ckpt]
    if missing:
        raise SystemExit(f"{checkpoint}: no {', '.join(missing)} in this checkpoint; nothing written to {out}")
    small = {k: ckpt[k] for k in keep}
    if meta is not None:
        small["meta"] = {**ckpt.get("meta", {}), **meta}
    torch.save(small, out)
    return out


def held_out_scores(gen_dir: Path) -> dict[str, float]:
    """The last step's held-out per-token NLL (``eval``, scored in windows of the trained length)
    and validation metrics (``val_*``: the metrics engine on the generated held-out clips)."""
    with open(gen_dir / "log.csv", newline="") as fh:
        last = list(csv.DictReader(fh))[-1]
    return {k: float(v) for k, v in last.items() if (k == "eval" or k.startswith("val_")) and v not in ("", None)}


def held_out_lip_sync(work: Path) -> list[dict]:
    """Generate each held-out sample clip from its first frame and audio; correlate the mouth."""
    holdout = load_generator_config("tiny")["data"]["holdout"]
    rows = []
    for clip in load_sample_corpus():
        if clip.id not in holdout:
            continue
        portrait = next(iter(media.iter_frames(clip.video)))
        out = work / "held-out" / f"{clip.id}.mp4"
        generate_video(TINY_GENERATOR, portrait, clip.video, out, controls_from=clip.video,
                       tokenizer_checkpoint=TINY_TOKENIZER)
        rows.append({"clip": clip.id, "language": clip.language, **mouth_envelope_correlation(out)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/tiny"), help="run directory")
    parser.add_argument("--only", choices=["generator"], default=None,
                        help="retrain stage 2 only, from the shipped tiny tokenizer")
    args = parser.parse_args(argv)
    work = args.work
    tok_dir, gen_dir = work / "tokenizer", work / "generator"
    if args.only != "generator":
        train_tokenizer(tok_dir)
    train_generator(gen_dir)

    report = {"tokenizer_steps": [TOKENIZER_STEPS, TOKENIZER_REGION_STEPS, list(REGION_WEIGHTS)],
              "generator_steps": GENERATOR_STEPS,
              "generator_held_out": held_out_scores(gen_dir),
              "held_out_lip_sync": held_out_lip_sync(work)}
    (HERE / "tiny-report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def train_tokenizer(tok_dir: Path) -> None:
    talkbench("vqtalker", "train-tokenizer", "--config", "tiny", "--out", str(tok_dir), "--steps", str(TOKENIZER_STEPS),
              *resume_args(tok_dir))
    talkbench("vqtalker", "train-tokenizer", "--config", "tiny", "--out", str(tok_dir),
              "--steps", str(TOKENIZER_STEPS + TOKENIZER_REGION_STEPS), *resume_args(tok_dir),
              *[a for kv in REGION_WEIGHTS for a in ("--set", kv)])
    strip(tok_dir / "checkpoints" / "latest.pt", TINY_TOKENIZER, TOKENIZER_FORMAT, ("format", "step", "config", "tokenizer"))
    shutil.copyfile(tok_dir / "log.csv", HERE / "tiny-tokenizer-log.csv")


def train_generator(gen_dir: Path) -> None:
    holdout = load_generator_config("tiny")["data"]["holdout"]
    talkbench("vqtalker", "fit-units", *[a for h in holdout for a in ("--exclude", h)])
    talkbench("vqtalker", "train-generator", "--config", "tiny", "--tokenizer", str(TINY_TOKENIZER),
              "--out", str(gen_dir), "--steps", str(GENERATOR_STEPS), *resume_args(gen_dir),
              "--set", f"train.validate_every={GENERATOR_STEPS}")  # held-out metrics once, at the end
    strip(gen_dir / "checkpoints" / "latest.pt", TINY_GENERATOR, GENERATOR_FORMAT, ("format", "step", "config", "model"),
          meta={"tokenizer_checkpoint": TINY_TOKENIZER.name})
    shutil.copyfile(gen_dir / "log.csv", HERE / "tiny-generator-log.csv")


if __name__ == "__main__":
    main()
