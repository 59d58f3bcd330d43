"""CPU throughput of talkbench's ArcFace CSIM paths against InsightFace's own code paths, on the
same real faces in one process.

    python benchmarks/arcface_throughput.py [--crops N] [--repeat R] [--json]

Each path goes from a 256×256 frame and its five points to a 512-d embedding: alignment
(``norm_crop``), preprocessing, network. Faces: the first N frames of the first HDTF clip in
$TALKBENCH_SHARED_DATA/video, else the sample corpus, with landmarks from talkbench's dlib
backend (found once, not timed).

- ``arcface`` (torch iresnet100): talkbench's ``ArcFace.embed`` against arcface_torch's
  inference.py preprocessing (cv2 BGR→RGB, transpose, div 255, sub 0.5, div 0.5) after
  insightface's ``norm_crop``, one face at a time, and talkbench's batched ``embed_crops``.
- ``insightface`` (onnxruntime, iresnet50 = w600k_r50's architecture exported as arcface_torch's
  torch2onnx does): talkbench's ``InsightFaceONNX.embed`` against ``norm_crop`` + ``ArcFaceONNX.
  get_feat`` (tests/metrics/reference/insightface_face_align.py), one face at a time as
  ``FaceAnalysis.get`` does, and both batched.

The published weights cannot be downloaded here: both sides of each pair run the same random
weights (a network's speed does not depend on its weights). Times are wall-clock, best of R rounds
after a warm-up, the variants taking turns; the machine may be shared, so expect noise of ±30 %.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the reference transcription in tests/

from talkbench import media  # noqa: E402
from talkbench.face import analyse_image, get_backend  # noqa: E402
from talkbench.metrics.arcface import ArcFace, InsightFaceONNX, IResNet, align, five_points  # noqa: E402
from tests.metrics.reference import insightface_face_align as reference  # noqa: E402

R50 = (3, 4, 14, 3)


def real_faces(count: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    root = os.environ.get("TALKBENCH_SHARED_DATA")
    candidates = sorted(Path(root, "video").glob("WDA_*.mp4")) if root else []
    if not candidates:
        from talkbench.samples import load_sample_corpus

        candidates = [load_sample_corpus()[0].video]
    backend = get_backend("dlib")
    faces = []
    for frame in itertools.islice(media.iter_frames(candidates[0], size=256), count * 2):
        found = analyse_image(frame, backend)
        if found.found:
            faces.append((frame, found.landmarks.astype(np.float32)))
        if len(faces) == count:
            break
    return faces, str(candidates[0])


def random_iresnet(layers, seed: int) -> IResNet:
    torch.manual_seed(seed)
    net = IResNet(layers)
    for module in net.modules():  # activations in range through the depth, as trained weights keep them
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="linear")
            module.weight.data *= 0.5
    return net.eval()


def export_onnx(net: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 3, 112, 112), buffer, dynamo=False, input_names=["data"],
                          dynamic_axes={"data": {0: "None"}}, opset_version=11, do_constant_folding=True)  # fmt: skip
    return buffer.getvalue()


def norm_crop(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """insightface's alignment of the BGR image it reads with cv2."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # SimilarityTransform.estimate, scikit-image 0.26
        return reference.norm_crop(frame[..., ::-1], five_points(landmarks))


@torch.no_grad()
def arcface_torch_inference(net: IResNet, bgr: np.ndarray) -> np.ndarray:
    """recognition/arcface_torch/inference.py after the image is read."""
    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    img = np.transpose(img, (2, 0, 1))
    img = torch.from_numpy(img).unsqueeze(0).float()
    img.div_(255).sub_(0.5).div_(0.5)
    return net(img).numpy()


def timed(variants: dict, repeat: int) -> dict[str, tuple[float, np.ndarray]]:
    """Best wall seconds of each variant over ``repeat`` rounds after a warm-up, and its result.
    The variants take turns within every round, so load from elsewhere falls on all of them."""
    results = {name: fn() for name, fn in variants.items()}
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeat):
        for name, fn in variants.items():
            started = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: (best[name], results[name]) for name in variants}


def relative_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.linalg.norm(ours - theirs, axis=1).max() / np.linalg.norm(theirs, axis=1).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    faces, source = real_faces(args.crops)
    n = len(faces)
    r100 = random_iresnet((3, 13, 30, 3), seed=0)
    arcface = ArcFace(r100.state_dict())
    onnx_model = export_onnx(random_iresnet(R50, seed=1))
    insightface = InsightFaceONNX(onnx_model)
    session = onnxruntime.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    mean, std = insightface.input_mean, insightface.input_std

    def stack(rows) -> np.ndarray:
        return np.concatenate([np.atleast_2d(r) for r in rows])

    paths = {
        "arcface": {
            "talkbench (one at a time)": lambda: stack(arcface.embed(f, lm) for f, lm in faces),
            "talkbench (batched embed_crops)": lambda: arcface.embed_crops(np.stack([align(f, lm) for f, lm in faces])),
            "reference: norm_crop + arcface_torch inference.py": lambda: stack(
                arcface_torch_inference(arcface.net, norm_crop(f, lm)) for f, lm in faces),
        },
        "insightface": {
            "talkbench (one at a time)": lambda: stack(insightface.embed(f, lm) for f, lm in faces),
            "talkbench (batched embed_crops)": lambda: insightface.embed_crops(np.stack([align(f, lm) for f, lm in faces])),
            "reference: norm_crop + get_feat (one at a time)": lambda: stack(
                reference.get_feat(session, mean, std, norm_crop(f, lm)) for f, lm in faces),
            "reference: norm_crop + get_feat (batched)": lambda: reference.get_feat(
                session, mean, std, [norm_crop(f, lm) for f, lm in faces]),
        },
    }  # fmt: skip
    report = {"source": source, "crops": n, "torch_threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "onnxruntime": onnxruntime.__version__, "paths": {}}  # fmt: skip
    for backend, variants in paths.items():
        results = timed(variants, args.repeat)
        reference_rows = next(rows for name, (_, rows) in results.items() if name.startswith("reference"))
        report["paths"][backend] = {
            name: {"crops_per_s": n / seconds, "ms_per_crop": 1000 * seconds / n,
                   "relative_difference_to_reference": relative_difference(rows, reference_rows)}
            for name, (seconds, rows) in results.items()
        }  # fmt: skip

    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{n} faces from {source}; torch threads {report['torch_threads']}, {report['cpu_count']} CPUs")
    for backend, rows in report["paths"].items():
        print(f"\n{backend}")
        for name, row in rows.items():
            print(f"  {name:<52} {row['crops_per_s']:7.1f} crops/s  {row['ms_per_crop']:7.1f} ms/crop  "
                  f"rel. diff {row['relative_difference_to_reference']:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
