"""Size and speed of the VQTalker stage-1 tokenizer at 256 and 512 on this machine.

    python benchmarks/vqtalker_tokenizer.py [--sizes 256 512] [--batch 2] [--repeats 2] [--json]

Per resolution (paper-256 / paper-512 configs, random weights: speed does not depend on them):
trainable parameters (total, encoder + motion MLP + quantizer, renderer), FLOPs per frame
(torch's FlopCounterMode: 2 x multiply-accumulates of convolutions and matmuls) and frames/s
for the two halves a codec runs:

- encode: image -> appearance encoder -> motion MLP -> GRFSQ indices (one target frame)
- render: decoded indices + the source's f_g and skip features -> image (one output frame)

There is no official VQTalker implementation to compare against; the numbers are ours. Times
are wall-clock on a shared CPU (expect +-30 % noise); threads: torch's default.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from talkbench.vqtalker.tokenizer import build_tokenizer, count_parameters


def _flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def _fps(fn, frames: int, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return frames * repeats / (time.perf_counter() - start)


@torch.no_grad()
def measure(size: int, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = build_tokenizer(f"paper-{size}").eval()
    source = torch.rand(1, 3, size, size) * 2 - 1
    frames = torch.rand(batch, 3, size, size) * 2 - 1
    f_g, feats, f_s = model.encode_source(source)

    def encode(x):
        return model.quantizer(model.motion_feature(x) - f_s).indices

    indices = encode(frames)

    def render(idx):
        n = idx.shape[-1]
        q = model.quantizer.decode(idx)
        return model.render(f_g.expand(n, -1), [f.expand(n, -1, -1, -1) for f in feats], q)

    params = {
        "params": count_parameters(model),
        "params_encode": sum(count_parameters(getattr(model, k)) for k in ("encoder", "motion", "quantizer")),
        "params_render": count_parameters(model.renderer) + count_parameters(model.to_latent),
    }
    model.requires_grad_(False)  # FlopCounterMode's module tracker hooks tensors that need grad
    return {
        "size": size,
        **params,
        "gflops_encode_per_frame": _flops(lambda: encode(frames[:1])) / 1e9,
        "gflops_render_per_frame": _flops(lambda: render(indices[..., :1])) / 1e9,
        "fps_encode": _fps(lambda: encode(frames), batch, repeats),
        "fps_render": _fps(lambda: render(indices), batch, repeats),
        "batch": batch,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch", type=int, default=2, help="frames per call")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls after one warm-up")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(s, args.batch, args.repeats) for s in args.sizes]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    header = f"{'size':>5} {'params':>9} {'enc params':>10} {'ren params':>10} {'enc GFLOP/f':>11} {'ren GFLOP/f':>11} {'enc f/s':>8} {'ren f/s':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['size']:>5} {r['params'] / 1e6:>8.2f}M {r['params_encode'] / 1e6:>9.2f}M {r['params_render'] / 1e6:>9.2f}M "
              f"{r['gflops_encode_per_frame']:>11.2f} {r['gflops_render_per_frame']:>11.2f} "
              f"{r['fps_encode']:>8.2f} {r['fps_render']:>8.2f}")
    print(f"(CPU, {rows[0]['threads']} threads, batch {args.batch}, {args.repeats} timed calls; paper: 47.7M parameters)")


if __name__ == "__main__":
    main()
