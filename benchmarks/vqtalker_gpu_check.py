"""A five-minute check of VQTalker at paper size on the GPUs of this machine.

    python benchmarks/vqtalker_gpu_check.py [--steps 200] [--ddp-steps 50] [--entry-point] [--json]

Runs, in bf16 autocast, and prints one table:

- stage 1 (paper-256, paper-512): a few hundred G+D steps, with the VGG19 perceptual pyramid
  and the discriminator, at the per-GPU micro-batch the paper's four GPUs would take of the
  config's ``train.global_batch`` (global batch / (4 x ``train.grad_accum``));
- stage 2 (generator-paper): steps on ``train.window``-frame windows;
- DDP: stage 1 (paper-256) and stage 2 again, one process per visible GPU
  (torch.multiprocessing, NCCL), reporting the global throughput;
- the stage-1 DataLoader (``vqtalker.data.pair_loader``) alone at paper-512's size and per-GPU
  batch, one decoding worker per visible CPU, on a 20-second real clip encoded as
  ``data build --keyint 25`` encodes (benchmarks/vqtalker_loader.py): pairs/s it can feed,
  against the single-GPU stage-1 paper-512 row;
- generation of one 10-second clip (250 frames at 25 fps) through ``talkbench.vqtalker.inference``
  loaders: generator tokens then paper-512 rendering. The speech encoder is not timed (its weights
  are a separate download);
- with ``--entry-point``: a short ``torchrun`` run of ``python -m talkbench.vqtalker.train`` on the
  sample corpus, one process per GPU.

Training inputs are fixed random tensors (compute only: data loading is not measured) and the
weights are random (speed does not depend on them). For each row: steps/s, samples/s, achieved
TFLOP/s (FLOPs per sample measured with FlopCounterMode, as in vqtalker_flops.py) and its share
of ``--peak-tflops`` (default 989, H100/H200 SXM bf16 dense), and peak memory from
``torch.cuda.max_memory_allocated``. A section that runs out of memory says so in its row; one
that fails otherwise shows FAILED and the error, the other rows still run, and the exit code is 1.

On a machine without a usable CUDA GPU it prints that it skipped and why, and exits 0; it
imports torch only after finding an NVIDIA device.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENTRY_POINT_TIMEOUT_S = 240
PAPER_GPUS = 4  # the paper trains on four A100s: the per-GPU batch is global_batch / 4
CLIP_SECONDS = 10
FPS = 25


def skip_reason() -> str | None:
    """Why there is no usable CUDA GPU here, or None. Cheap checks come before importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    if not (Path("/dev/nvidiactl").exists() or Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi")):
        return "no NVIDIA GPU on this machine (no /dev/nvidia* device, no nvidia-smi)"
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA build {torch.version.cuda}) finds no usable CUDA device"
    return None


@dataclass
class Row:
    check: str
    config: str
    gpus: int
    batch_per_gpu: int
    steps: int
    steps_per_s: float | None = None
    samples_per_s: float | None = None
    tflops: float | None = None  # achieved, all GPUs together
    peak_gib: float | None = None  # max over GPUs
    note: str = ""


# ----------------------------------------------------------------------------- training steps


def _configs():
    from talkbench.vqtalker.generator import load_generator_config
    from talkbench.vqtalker.tokenizer import load_config

    return {"paper-256": load_config("paper-256"), "paper-512": load_config("paper-512"),
            "generator-paper": load_generator_config("generator-paper")}


def _micro_batch(config: dict) -> int:
    """Samples per GPU and micro-step when the paper's four GPUs share the recipe's global batch."""
    from talkbench.vqtalker.training import per_process_batch

    train = config["train"]
    return max(1, per_process_batch(train, PAPER_GPUS, int(train.get("grad_accum", 1))))


def _per_sample_flops(name: str, config: dict, device) -> int:
    import vqtalker_flops as vf

    if name.startswith("generator"):
        return vf.generator_step_flops(config, 1, device=device)[0].total
    return vf.tokenizer_step_flops(config, 1, device=device)[0].total


def _trainer_parts(name: str, config: dict, batch: int, device, ddp: bool):
    """(step function, module list) of one bf16 training step with the configs' optimisers."""
    import torch
    import vqtalker_flops as vf
    from torch.nn.parallel import DistributedDataParallel as DDP

    amp = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")  # noqa: E731
    tc = config["train"]
    lr = float(tc["lr"])
    if name.startswith("generator"):
        step = vf.GeneratorStep(config, batch, device=device)
        if ddp:
            step.forward = DDP(step.model, device_ids=_ids(device))
        optim = torch.optim.AdamW(step.model.parameters(), lr=lr, weight_decay=float(tc.get("weight_decay", 0.0)))

        def run():
            optim.zero_grad(set_to_none=True)
            with amp():
                loss = step.loss()
            loss.backward()
            optim.step()

        return run

    step = vf.TokenizerStep(config, batch, device=device)
    if ddp:
        step.tokenizer = DDP(step.tokenizer, device_ids=_ids(device), broadcast_buffers=False)
        if step.disc is not None:
            step.disc = DDP(step.disc_module, device_ids=_ids(device), broadcast_buffers=False)
    g_ratio = tc.get("g_reg_every", 4) / (tc.get("g_reg_every", 4) + 1)
    d_ratio = tc.get("d_reg_every", 16) / (tc.get("d_reg_every", 16) + 1)
    g_optim = torch.optim.Adam(step.tokenizer.parameters(), lr=lr * g_ratio, betas=(0.0, 0.99**g_ratio))
    d_optim = torch.optim.Adam(step.disc.parameters(), lr=lr * d_ratio, betas=(0.0, 0.99**d_ratio)) if step.disc else None

    def run():
        g_optim.zero_grad(set_to_none=True)
        with amp():
            loss = step.g_loss()
        loss.backward()
        g_optim.step()
        if d_optim is None:
            return
        d_optim.zero_grad(set_to_none=True)
        with amp():
            loss = step.d_loss()
        loss.backward()
        d_optim.step()

    return run


def _ids(device) -> list[int] | None:
    return [device.index] if device.type == "cuda" else None


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(run, steps: int, device, warmup: int = 5) -> float:
    for _ in range(warmup):
        run()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        run()
    _sync(device)
    return time.perf_counter() - start


def train_row(check: str, name: str, config: dict, steps: int, flops_per_sample: int, peak_tflops: float) -> Row:
    import torch

    device = torch.device("cuda:0")
    batch = _micro_batch(config)
    row = Row(check, name, 1, batch, steps)
    torch.cuda.reset_peak_memory_stats(device)
    try:
        seconds = _timed(_trainer_parts(name, config, batch, device, ddp=False), steps, device)
    except torch.cuda.OutOfMemoryError:
        row.note = f"out of memory at batch {batch}"
        torch.cuda.empty_cache()
        return row
    _fill(row, seconds, batch, 1, flops_per_sample, torch.cuda.max_memory_allocated(device), peak_tflops)
    torch.cuda.empty_cache()
    return row


def _fill(row: Row, seconds: float, batch: int, world: int, flops_per_sample: int, peak_bytes: int, peak_tflops: float):
    row.steps_per_s = row.steps / seconds
    row.samples_per_s = row.steps_per_s * batch * world
    row.tflops = row.samples_per_s * flops_per_sample / 1e12
    row.peak_gib = peak_bytes / 2**30
    row.note = f"{100 * row.tflops / (peak_tflops * world):.0f}% of {peak_tflops:g} TFLOP/s per GPU"


# ----------------------------------------------------------------------------- DDP


def _ddp_worker(rank: int, world: int, port: int, name: str, config: dict, steps: int, out: str,
                device_type: str = "cuda") -> None:
    import torch
    import torch.distributed as dist

    sys.path.insert(0, str(HERE))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = device_type == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    batch = _micro_batch(config)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    result = {"ok": True}
    try:
        run = _trainer_parts(name, config, batch, device, ddp=True)
        dist.barrier()
        result["seconds"] = _timed(run, steps, device)
    except torch.cuda.OutOfMemoryError:
        result = {"ok": False}
    used = torch.cuda.max_memory_allocated(device) if cuda else 0
    peak = torch.tensor([used], device=device, dtype=torch.float64)
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    if rank == 0:
        result.update(peak=float(peak.item()), batch=batch)
        Path(out).write_text(json.dumps(result))
    dist.destroy_process_group()


def ddp_row(name: str, config: dict, steps: int, flops_per_sample: int, peak_tflops: float,
            device_type: str = "cuda", world: int | None = None) -> Row:
    """Global throughput of ``world`` (default: every visible GPU) DDP processes."""
    import socket

    import torch
    import torch.multiprocessing as mp

    world = world or torch.cuda.device_count()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    batch = _micro_batch(config)
    row = Row("DDP train", name, world, batch, steps)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rank0.json"
        mp.spawn(_ddp_worker, args=(world, port, name, config, steps, str(out), device_type), nprocs=world, join=True)
        result = json.loads(out.read_text())
    if not result["ok"]:
        row.note = f"out of memory at batch {batch} per GPU"
        return row
    _fill(row, result["seconds"], batch, world, flops_per_sample, int(result["peak"]), peak_tflops)
    return row


def entry_point_row(steps: int) -> Row:
    """``torchrun`` on the stage-1 entry point, sample corpus, one process per GPU."""
    import subprocess

    import torch

    world = torch.cuda.device_count()
    row = Row("torchrun entry", "paper-256", world, 0, steps)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
               "-m", "talkbench.vqtalker.train", "--config", "paper-256", "--out", tmp, "--steps", str(steps),
               "--set", "loss.vgg_weights=random", "--set", f"train.global_batch={8 * world}",
               "--set", "train.log_every=1", "--set", "data.source=sample"]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=ENTRY_POINT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            row.note = f"FAILED: no exit after {ENTRY_POINT_TIMEOUT_S} s"
            return row
        seconds = time.perf_counter() - start
    row.note = f"exit {proc.returncode} after {seconds:.0f} s (incl. data preparation)"
    if proc.returncode != 0:
        row.note += ": " + (proc.stderr.strip().splitlines() or ["?"])[-1][:120]
    return row


# ----------------------------------------------------------------------------- generation


def generation_row(configs: dict, device: str = "cuda", tokenizer: str = "paper-512",
                   generator: str = "generator-paper") -> Row:
    """One 10-second clip: stage-2 tokens (coarse to fine, in windows) then rendering."""
    import numpy as np
    import torch

    from talkbench.vqtalker.codec import render_tokens
    from talkbench.vqtalker.generator import MotionGenerator, GeneratorConfig
    from talkbench.vqtalker.inference import (
        GENERATOR_FORMAT,
        TOKENIZER_FORMAT,
        load_generator,
        load_tokenizer,
        resolve_device,
    )
    from talkbench.vqtalker.tokenizer import build_tokenizer, to_model

    device = resolve_device(device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    frames = CLIP_SECONDS * FPS
    row = Row("generate 10 s", f"{generator} + {tokenizer}", 1, 1, frames)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tok_path, gen_path = Path(tmp) / "tokenizer.pt", Path(tmp) / "generator.pt"
        torch.save({"format": TOKENIZER_FORMAT, "step": 0, "config": configs[tokenizer],
                    "tokenizer": build_tokenizer(configs[tokenizer]["model"]).state_dict()}, tok_path)
        gconf = configs[generator]
        torch.save({"format": GENERATOR_FORMAT, "step": 0, "config": gconf, "meta": {},
                    "model": MotionGenerator(GeneratorConfig.from_dict(gconf["model"])).state_dict()}, gen_path)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        tok_model = load_tokenizer(tok_path, device)
        gen_model, _ = load_generator(gen_path, device)
    cfg = gen_model.config
    size = tok_model.config.size
    speech = torch.randint(cfg.speech_vocab, (frames, cfg.speech_per_frame), device=device)
    controls = torch.zeros(frames, 7, device=device)
    portrait = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        f_g = tok_model.encode_source(to_model(portrait[None], device))[0][0].float()
        sync()
        start = time.perf_counter()
        tokens = gen_model.generate(speech, controls, f_g).cpu()
        sync()
        t_tokens = time.perf_counter() - start
        start = time.perf_counter()
        count = sum(1 for _ in render_tokens(tok_model, portrait, tokens.numpy()))
        sync()
        t_render = time.perf_counter() - start
    total = t_tokens + t_render
    row.steps_per_s = count / total
    row.samples_per_s = count / total
    row.peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    row.note = (f"{count} frames at {size}px: tokens {t_tokens:.2f} s + render {t_render:.2f} s = "
                f"{total:.2f} s ({CLIP_SECONDS / total:.1f}x real time; speech encoder not timed)")
    return row


# ----------------------------------------------------------------------------- report


def loader_row(config: dict, train_rate: float | None = None, prefetch: int = 2) -> Row:
    """pairs/s of the stage-1 DataLoader at the config's size and per-GPU batch, with one worker
    per visible CPU. The first workers x prefetch batches are taken untimed: the workers start
    and decode them before the first request is answered, so timing them would count decoding
    done before the clock started. Then max(20, 4 x workers x prefetch) batches are timed, so at
    most a quarter of them can be in flight already when timing starts."""
    import vqtalker_loader as vl

    from talkbench.vqtalker.data import file_clip, pair_loader

    workers = len(os.sched_getaffinity(0))
    warmup = workers * prefetch
    timed = max(20, 4 * warmup)
    size, batch = config["model"]["size"], _micro_batch(config)
    with tempfile.TemporaryDirectory() as tmp:
        clip = file_clip(vl.make_clip(Path(tmp) / "swing.mp4", 20.0, keyint=25))
        batches_iter = iter(pair_loader([clip], size, batch, seed=0, workers=workers, steps=warmup + timed,
                                        prefetch=prefetch))
        for _ in range(warmup):
            next(batches_iter)
        start = time.perf_counter()
        timed = sum(1 for _ in batches_iter)
        seconds = time.perf_counter() - start
    row = Row("loader stage 1", "paper-512", 0, batch, timed, steps_per_s=timed / seconds,
              samples_per_s=timed * batch / seconds)
    row.note = f"{workers} CPU workers, prefetch {prefetch}, {warmup} batches untimed, keyint 25"
    if train_rate:
        row.note += f"; {row.samples_per_s / train_rate:.1f}x the stage-1 paper-512 samples/s of one GPU"
    return row


def format_table(rows: list[Row], gpu: str) -> str:
    head = (f"{'check':<15} {'config':<28} {'GPUs':>4} {'batch/GPU':>9} {'steps':>6} {'it/s':>7} "
            f"{'samples/s':>9} {'TFLOP/s':>8} {'peak GiB':>8}  note")
    lines = [f"VQTalker GPU check on {gpu} (bf16 autocast)", head, "-" * len(head)]
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for r in rows:
        lines.append(f"{r.check:<15} {r.config:<28} {r.gpus:>4} {r.batch_per_gpu:>9} {r.steps:>6} "
                     f"{fmt(r.steps_per_s, '7.2f'):>7} {fmt(r.samples_per_s, '9.1f'):>9} {fmt(r.tflops, '8.1f'):>8} "
                     f"{fmt(r.peak_gib, '8.1f'):>8}  {r.note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per single-GPU training row")
    parser.add_argument("--ddp-steps", type=int, default=50, help="timed steps per DDP row")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak of one GPU")
    parser.add_argument("--entry-point", action="store_true", help="also run torchrun on talkbench.vqtalker.train")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    reason = skip_reason()
    if reason:
        print(f"VQTalker GPU check skipped: {reason}.")
        return 0

    import torch

    sys.path.insert(0, str(HERE))
    configs = _configs()
    device = torch.device("cuda:0")
    gpu = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(device)}"
    flops = {name: _per_sample_flops(name, config, device) for name, config in configs.items()}
    torch.cuda.empty_cache()
    rows = []

    def attempt(check: str, config: str, fn) -> None:
        # one failing section (a driver error, an API change) still leaves the others' rows
        try:
            rows.append(fn())
        except Exception as exc:  # noqa: BLE001
            rows.append(Row(check, config, 0, 0, 0, note=f"FAILED: {type(exc).__name__}: {exc}"[:200]))
        torch.cuda.empty_cache()

    for name in ("paper-256", "paper-512"):
        steps = args.steps if name == "paper-256" else max(1, args.steps // 2)
        attempt("train stage 1", name,
                lambda: train_row("train stage 1", name, configs[name], steps, flops[name], args.peak_tflops))
    attempt("train stage 2", "generator-paper",
            lambda: train_row("train stage 2", "generator-paper", configs["generator-paper"], args.steps,
                              flops["generator-paper"], args.peak_tflops))
    for name in ("paper-256", "generator-paper"):
        attempt("DDP train", name, lambda: ddp_row(name, configs[name], args.ddp_steps, flops[name], args.peak_tflops))
    stage1_512 = next((r.samples_per_s for r in rows if r.config == "paper-512" and r.samples_per_s), None)
    attempt("loader stage 1", "paper-512", lambda: loader_row(configs["paper-512"], train_rate=stage1_512))
    attempt("generate 10 s", "generator-paper + paper-512", lambda: generation_row(configs))
    if args.entry_point:
        attempt("torchrun entry", "paper-256", lambda: entry_point_row(20))
    if args.json:
        print(json.dumps({"gpu": gpu, "rows": [asdict(r) for r in rows]}, indent=2))
    else:
        print(format_table(rows, gpu))
    return 1 if any(r.note.startswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
