"""Stage-2 commands of ``talkbench vqtalker``: ``fit-units``, ``train-generator`` and ``generate``.

They are added to the ``vqtalker`` group of ``talkbench.cli.vqtalker`` (stage 1's commands live
there); importing this module registers them."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from talkbench import media, util
from talkbench.cli.common import console, err_console, print_json
from talkbench.cli.vqtalker import app
from talkbench.vqtalker.speech import fit_units as fit


@app.command(name="fit-units")
def fit_units(
    source: str = typer.Option("sample", "--source", help="'sample', a directory of clips, or one clip."),
    k: int = typer.Option(64, "--k", min=1, help="Number of units (k-means clusters)."),
    exclude: list[str] = typer.Option([], "--exclude", help="Clip stems to leave out (held-out clips)."),
    out: Path = typer.Option(None, "--out", help="Artifact (.npz); default: the VQTalker cache."),
    seed: int = typer.Option(0, "--seed", min=0),
    metric: str = typer.Option("euclidean", "--metric", help="euclidean (keeps loudness) or cosine (direction only)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Fit Whisper units: k-means over the Whisper base encoder features of the clips' audio."""
    from talkbench.vqtalker.data import clips_from_source  # torch: loaded only by the commands that need it

    videos = [c.path for c in clips_from_source(source) if c.path.stem not in set(exclude)]
    path = fit([media.read_audio(v) for v in videos], k=k, out=out, seed=seed, sources=[v.stem for v in videos],
               metric=metric)
    meta = json.loads(str(util.load_arrays(path)["meta"]))
    summary = {"out": str(path), "k": k, "clips": len(videos), "frames": meta["frames"], "bytes": path.stat().st_size}
    if as_json:
        print_json(summary)
    else:
        console.print(f"{path}: {k} units from {meta['frames']} encoder frames of {len(videos)} clips")


@app.command(name="train-generator")
def train_generator(
    config: str = typer.Option("tiny", "--config", help="tiny | paper | c-c | d-c | c-d | d-d, or a YAML file."),
    tokenizer: Path = typer.Option(..., "--tokenizer", help="Stage-1 tokenizer checkpoint (targets, f_g)."),
    out: Path = typer.Option(Path("runs/generator"), "--out", help="Run directory (log.csv, checkpoints/)."),
    steps: int = typer.Option(None, "--steps", min=0, help="Train until this step (default: the config's)."),
    resume: Path = typer.Option(None, "--resume", help="Checkpoint to resume from."),
    overrides: list[str] = typer.Option([], "--set", help="Config override KEY=VALUE, e.g. train.window=32."),
    as_json: bool = typer.Option(False, "--json", help="Print the final summary as JSON."),
) -> None:
    """Train the coarse-to-fine generator. Several processes: `torchrun --nproc_per_node N -m
    talkbench.vqtalker.generator_train --config C --tokenizer CKPT --out DIR`."""
    from talkbench.vqtalker.generator import count_parameters, load_generator_config
    from talkbench.vqtalker.generator_train import build_trainer
    from talkbench.vqtalker.training import apply_overrides, finish_distributed, init_distributed, prepare_timeout

    cfg = apply_overrides(load_generator_config(config), overrides)
    info = init_distributed(prepare_timeout(cfg.get("train", {})))
    err_console.print("preparing clips (stage-1 targets, speech, controls; cached after the first run)…")
    trainer = build_trainer(cfg, out, tokenizer, info)
    if resume:
        trainer.load(resume)
    target = int(steps if steps is not None else cfg["train"]["steps"])
    err_console.print(f"generator {count_parameters(trainer.model) / 1e6:.2f}M parameters, "
                      f"{len(trainer.samples)} training / {len(trainer.holdout)} held-out clips, "
                      f"step {trainer.step} -> {target}, batch {trainer.batch_size} per process")
    key = "nll" if trainer.model.config.motion == "grfsq" else "mse"
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), console=err_console,
                  disable=as_json or not info.is_main) as bar:
        task = bar.add_task("training", total=target, completed=trainer.step, loss="")
        rows = trainer.fit(steps=target, on_step=lambda s, t: bar.update(task, completed=s, loss=f"{key} {t[key]:.4f}"))
    finish_distributed(info)  # leave the process group together (a no-op in one process)
    summary = {"out": str(out), "step": trainer.step, "checkpoint": str(out / "checkpoints" / "latest.pt"),
               "log": str(out / "log.csv"), "first": rows[0] if rows else None, "last": rows[-1] if rows else None}
    if as_json:
        print_json(summary)
    else:
        last = summary["last"] or {}
        console.print(f"step {trainer.step}: {key} {last.get(key, float('nan')):.4f}, held-out {last.get('eval')}; "
                      f"checkpoint {summary['checkpoint']}")


@app.command()
def generate(
    portrait: Path = typer.Option(..., "--portrait", help="Portrait image (the source face)."),
    audio: Path = typer.Option(..., "--audio", help="Speech (wav, or any file with an audio stream)."),
    out: Path = typer.Option(..., "--out", help="Output video (.mp4, 25 fps, with the audio)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Generator checkpoint (train-generator)."),
    controls_from: Path = typer.Option(None, "--controls-from", help="Video whose head pose, gaze and blinks to follow."),
    tokenizer: Path = typer.Option(None, "--tokenizer", help="Stage-1 checkpoint (default: the one it was trained with)."),
    device: str = typer.Option("auto", "--device", help="auto (cuda if available, else mps, else cpu), cuda, cuda:N, cpu or mps."),
    window: int = typer.Option(None, "--window", min=1, help="Frames per generation window (default and at most: "
                               "the generator's trained window; longer audio runs in overlapping windows)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Speech -> motion tokens (coarse to fine) -> rendered talking head with the audio muxed in."""
    from talkbench.vqtalker.inference import generate_video, resolve_device

    target = resolve_device(device)
    for path in (portrait, audio, checkpoint):
        if not path.is_file():
            raise typer.BadParameter(f"{path}: file not found")
    summary = generate_video(checkpoint, portrait, audio, out, controls_from=controls_from, tokenizer_checkpoint=tokenizer,
                             window=window, device=target)
    if as_json:
        print_json(summary)
    else:
        console.print(f"{summary['out']}: {summary['frames']} frames ({summary['audio_seconds']:.2f} s of audio) "
                      f"at {summary['size']}x{summary['size']}, controls from {summary['controls_from']}, "
                      f"on {summary['device']}")
