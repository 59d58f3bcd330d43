"""``talkbench vqtalker``: train the stage-1 motion tokenizer, encode videos to motion tokens,
reconstruct videos from their first frame and tokens."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from talkbench.cli.common import console, err_console, print_json

app = typer.Typer(help="VQTalker: motion tokenizer training, encoding and reconstruction.", no_args_is_help=True)


@app.command(name="train-tokenizer")
def train_tokenizer(
    config: str = typer.Option(..., "--config", help="tiny | paper-256 | paper-512, or a YAML file."),
    out: Path = typer.Option(Path("runs/tokenizer"), "--out", help="Run directory (log.csv, checkpoints/)."),
    steps: int = typer.Option(None, "--steps", min=0, help="Train until this step (default: the config's train.steps)."),
    resume: Path = typer.Option(None, "--resume", help="Checkpoint to resume from (e.g. OUT/checkpoints/latest.pt)."),
    overrides: list[str] = typer.Option([], "--set", help="Config override KEY=VALUE, e.g. train.global_batch=32 "
                                        "or data.source=DIR (a built dataset, with data.splits)."),
    as_json: bool = typer.Option(False, "--json", help="Print the final summary as JSON."),
) -> None:
    """Train the tokenizer. Multi-GPU / multi-process: `torchrun --nproc_per_node N -m
    talkbench.vqtalker.train --config C --out DIR`."""
    from talkbench.vqtalker.tokenizer import count_parameters, load_config
    from talkbench.vqtalker.train import Trainer
    from talkbench.vqtalker.training import apply_overrides, finish_distributed, init_distributed, prepare_timeout

    logging.basicConfig(level=logging.WARNING)
    cfg = apply_overrides(load_config(config), overrides)
    info = init_distributed(prepare_timeout(cfg["train"]))
    trainer = Trainer(cfg, out, dist_info=info)
    if resume:
        trainer.load(resume)
    target = int(steps if steps is not None else cfg["train"]["steps"])
    err_console.print(
        f"tokenizer {cfg['model']['size']}px, {count_parameters(trainer.model) / 1e6:.2f}M parameters, "
        f"step {trainer.step} -> {target}, device {trainer.device}, batch {trainer.batch_size} per process"
    )
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[l1]}"), TimeElapsedColumn(), console=err_console,
                  disable=as_json or not info.is_main) as bar:
        task = bar.add_task("training", total=target, completed=trainer.step, l1="")
        rows = trainer.fit(steps=target, on_step=lambda s, t: bar.update(task, completed=s, l1=f"l1 {t['l1']:.4f}"))
    finish_distributed(info)  # leave the process group together (a no-op in one process)
    summary = {
        "out": str(out),
        "step": trainer.step,
        "checkpoint": str(out / "checkpoints" / "latest.pt"),
        "log": str(out / "log.csv"),
        "last": rows[-1] if rows else None,
    }
    if as_json:
        print_json(summary)
    else:
        last = summary["last"] or {}
        console.print(f"step {trainer.step}: l1 {last.get('l1', float('nan')):.4f}; checkpoint {summary['checkpoint']}")


@app.command()
def encode(
    video: Path = typer.Argument(..., help="Video to tokenize (first frame is the source)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Tokenizer checkpoint (.pt)."),
    out: Path = typer.Option(..., "--out", help="Token file (.npz)."),
    device: str = typer.Option("auto", "--device", help="auto (cuda if available, else mps, else cpu), cuda, cuda:N, cpu or mps."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Encode a video into motion tokens: indices (G, R, T) as compact integers + metadata."""
    from talkbench.vqtalker.codec import encode_video, save_tokens
    from talkbench.vqtalker.quantize import bitrate
    from talkbench.vqtalker.inference import load_tokenizer, resolve_device

    model = load_tokenizer(checkpoint, resolve_device(device))
    tokens = encode_video(model, video, checkpoint=checkpoint)
    save_tokens(tokens, out)
    bits = bitrate(model.config.quantizer, tokens.fps)
    summary = {"out": str(out), "frames": tokens.frames, "shape": list(tokens.indices.shape),
               "dtype": str(tokens.indices.dtype), "bitrate_bps": bits}
    if as_json:
        print_json(summary)
    else:
        console.print(f"{out}: {tokens.frames} frames, indices {tuple(tokens.indices.shape)} "
                      f"{tokens.indices.dtype}, {bits / 1000:.2f} kbps")


@app.command()
def reconstruct(
    video: Path = typer.Argument(..., help="Video to reconstruct from its first frame and its tokens."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Tokenizer checkpoint (.pt)."),
    out: Path = typer.Option(..., "--out", help="Output video (.mp4)."),
    device: str = typer.Option("auto", "--device", help="auto (cuda if available, else mps, else cpu), cuda, cuda:N, cpu or mps."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Reconstruct a video: first frame + motion tokens -> video (Table 1's reconstruction task)."""
    from talkbench.vqtalker.codec import reconstruct_video
    from talkbench.vqtalker.inference import load_tokenizer, resolve_device

    model = load_tokenizer(checkpoint, resolve_device(device))
    path, tokens = reconstruct_video(model, video, out)
    summary = {"out": str(path), "frames": tokens.frames, "size": model.config.size}
    if as_json:
        print_json(summary)
    else:
        console.print(f"{path}: {tokens.frames} frames at {model.config.size}x{model.config.size}")
