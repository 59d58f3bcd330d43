"""Cold-cache speed of ``talkbench eval`` against the reference-tool chain, like for like.

The workload is a 10-method leaderboard built from real clips; both sides score all of it.

    python benchmarks/eval_workload.py [--clips 4] [--frames 100] [--methods crf28,blur_s3]
                                       [--workdir DIR] [--json [FILE]] [--skip-reference]
                                       [--long-clip-minutes 10]

Workload: ``--clips`` real clips from $TALKBENCH_SHARED_DATA/video, HDTF-style first (WDA_*,
RD_*, then the other clips, each group in name order), keeping square clips that have
``--frames`` frames at 25 fps and a face in the frames checked; each is cut to ``--frames``
frames at 256×256 and written as GT/<clip>.mp4 (H.264 CRF 12). Ten "methods" are made from the
decoded ground truth, one folder each with the same file names: the ground truth re-encoded as
it was (CRF 12), H.264 at CRF 18/28/38/45, Gaussian blur σ 1 and 3, the first frame held,
the frames delayed by 2, and a 128-pixel round trip. Every file has exactly ``--frames`` frames.

Measured, each as its own process (wall clock, process CPU with all threads and children, peak
RSS of the largest process, and summed PSS of the process tree sampled every second):

* the reference chain: one Python process that goes one method folder at a time, every clip,
  every frame, through the tools people run today — scikit-image SSIM, the ``cpbd`` package,
  dlib CSIM against the ground-truth frame (HOG detection without upsampling, 68-point shape,
  ResNet descriptor of both frames, cosine), dlib landmarks for LMD (mean-centred point
  distance: talkbench's ``f_lmd``) and for MSI (StableFace's windowed 1 / (var + 0.5) of
  mouth-point acceleration). Each face tool detects
  for itself, as separate scripts do; every video is decoded once per method and shared.
* ``talkbench eval -g M1/ … -g M10/ -r GT/ --metrics ssim,cpbd,csim,lmd,msi
  --csim-reference ground-truth-frame --csim-stride 1`` with ``--workers 2`` and ``--workers 1``,
  each with a fresh empty TALKBENCH_CACHE_DIR (the analysis cache).
* "ground truth cached": after an untimed run of GT against itself (fresh cache dirs), one more
  method with ``--workers 1`` on the same cache dirs, in ms per generated frame of the engine's
  own wall time (the evaluate() call; the process's start-up and imports are printed beside
  it), against the floor: dlib detection + landmarks + embedding of the same
  frames through ``talkbench.face``, which no evaluation of a new video can skip.
* with ``--long-clip-minutes M``: the peak RSS of ``talkbench eval`` on an M-minute 512² clip
  made by looping a real clip (SSIM, CPBD, LMD, MSI, one worker).

Targets: reference / talkbench wall ≥ 5× with 2 workers and ≥ 2.5× with 1 worker (same
cores), GT-cached time ≤ 1.3× the floor, long-clip peak RSS ≤ 2 GiB. The value-agreement table
compares the two sides' means over clips per method and value (max |diff| is over clips). The
machine is shared, so expect ±30 % noise; the full default run takes the better part of an
hour on 2 cores, most of it the reference chain (``--skip-reference`` for quick checks,
``--reuse-reference`` to keep a finished chain's result in ``--workdir``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

FPS = 25
SIZE = 256
GT_CRF = 12  # near-transparent ground truth, so "crf18" is a real (small) degradation
HDTF_PATTERNS = ("WDA_*.mp4", "RD_*.mp4", "WRA_*.mp4")
METRICS = "ssim,cpbd,csim,lmd,msi"
VALUES = {"ssim": "ssim", "cpbd": "cpbd", "csim": "csim_dlib", "lmd": "f_lmd", "msi": "msi"}  # column: talkbench key
TARGETS = {"workers2": 5.0, "workers1": 2.5, "cached_vs_floor": 1.3, "long_rss_gib": 2.0}
MANIFEST_VERSION = 1


# -- the workload ----------------------------------------------------------------------------


def _blur(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    from scipy.ndimage import gaussian_filter

    def blur(frames: np.ndarray) -> np.ndarray:
        out = gaussian_filter(frames.astype(np.float32), sigma=(0, sigma, sigma, 0))
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    return blur


def _rescale(frames: np.ndarray, low: int = 128) -> np.ndarray:
    from PIL import Image

    def round_trip(frame: np.ndarray) -> np.ndarray:
        small = Image.fromarray(frame).resize((low, low), Image.BILINEAR)
        return np.asarray(small.resize(frame.shape[1::-1], Image.BILINEAR))

    return np.stack([round_trip(f) for f in frames])


def _delay(frames: np.ndarray, by: int = 2) -> np.ndarray:
    return frames[np.maximum(np.arange(len(frames)) - by, 0)]


def _identity(frames: np.ndarray) -> np.ndarray:
    return frames


# method folder name → (what it is, frames transform, H.264 CRF it is written with)
METHODS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray], int]] = {
    "gt_reencoded": ("the ground truth decoded and encoded again", _identity, GT_CRF),
    "crf18": ("H.264 CRF 18", _identity, 18),
    "crf28": ("H.264 CRF 28", _identity, 28),
    "crf38": ("H.264 CRF 38", _identity, 38),
    "crf45": ("H.264 CRF 45", _identity, 45),
    "blur_s1": ("Gaussian blur σ 1", _blur(1.0), GT_CRF),
    "blur_s3": ("Gaussian blur σ 3", _blur(3.0), GT_CRF),
    "static": ("the first frame held", lambda f: np.repeat(f[:1], len(f), axis=0), GT_CRF),
    "shift2": ("frames delayed by 2", _delay, GT_CRF),
    "rescale128": ("down to 128 px and back up", _rescale, GT_CRF),
}
CACHED_METHOD = "crf28"  # the method timed against a cached ground truth, if selected


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def candidate_videos(root: Path) -> list[Path]:
    """HDTF-style clips first (each pattern in name order), then every other clip by name."""
    first = [p for pattern in HDTF_PATTERNS for p in sorted(root.glob(pattern))]
    rest = [p for p in sorted(root.glob("*.mp4")) if p not in first]
    return first + rest


def has_face(frames: Iterable[np.ndarray]) -> bool:
    import dlib

    detector = dlib.get_frontal_face_detector()
    return all(len(detector(np.ascontiguousarray(f), 0)) for f in frames)


def pick_clips(count: int, frames: int) -> list[tuple[str, np.ndarray]]:
    """The first ``count`` usable clips as (stem, (frames, 256, 256, 3) uint8)."""
    from talkbench import media

    root = Path(os.environ.get("TALKBENCH_SHARED_DATA", "/work/shared/data")) / "video"
    picked = []
    for path in candidate_videos(root):
        info = media.probe(path)
        if abs(info.width - info.height) > 0.05 * max(info.width, info.height):
            log(f"skip {path.name}: {info.width}x{info.height} is not square (frames are scaled, not cropped)")
            continue
        if media.frame_count_at(info, FPS) < frames:
            log(f"skip {path.name}: {media.frame_count_at(info, FPS)} frames at {FPS} fps, need {frames}")
            continue
        clip = np.stack(list(itertools.islice(media.iter_frames(path, fps=FPS, size=SIZE), frames)))
        if len(clip) < frames or not has_face(clip[[0, len(clip) // 2, -1]]):
            log(f"skip {path.name}: no face in its first, middle or last frame")
            continue
        picked.append((path.stem, clip))
        if len(picked) == count:
            return picked
    raise SystemExit(f"only {len(picked)} usable clips in {root}, asked for {count}")


@dataclass
class Workload:
    root: Path
    clips: list[str]
    frames: int
    methods: list[str]  # clips are named after their source files in $TALKBENCH_SHARED_DATA/video

    @property
    def gt(self) -> Path:
        return self.root / "GT"

    def method_dir(self, method: str) -> Path:
        return self.root / "methods" / method

    @property
    def generated_frames(self) -> int:
        return len(self.clips) * self.frames * len(self.methods)


def read_video(path: Path) -> np.ndarray:
    """Every frame, decoded plainly with PyAV (the files are already 256² at 25 fps)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def write_checked(path: Path, frames: np.ndarray | Iterable[np.ndarray], crf: int, expected: int) -> None:
    from talkbench import media

    media.write_video(path, frames, fps=FPS, crf=crf)
    got = media.probe(path).frame_count
    if got != expected:
        raise RuntimeError(f"{path}: wrote {got} frames, expected {expected}")


def build_workload(root: Path, clips: int, frames: int, methods: list[str]) -> Workload:
    """GT/<clip>.mp4 and methods/<method>/<clip>.mp4; files already there from a run with the
    same clips and length are kept."""
    manifest_path = root / "manifest.json"
    wanted = {"version": MANIFEST_VERSION, "clips": clips, "frames": frames, "gt_crf": GT_CRF}
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if {k: manifest.get(k) for k in wanted} != wanted:
        for sub in ("GT", "methods"):
            shutil.rmtree(root / sub, ignore_errors=True)
        log(f"picking {clips} clips of {frames} frames")
        picked = pick_clips(clips, frames)
        for stem, clip in picked:
            write_checked(root / "GT" / f"{stem}.mp4", clip, GT_CRF, frames)
        manifest = {**wanted, "clip_ids": [s for s, _ in picked], "methods": {}}
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        manifest_path.write_text(json.dumps(manifest, indent=2))
    workload = Workload(root, manifest["clip_ids"], frames, methods)
    for stem in workload.clips:
        missing = [m for m in methods if not (workload.method_dir(m) / f"{stem}.mp4").is_file()]
        if not missing:
            continue
        gt = read_video(workload.gt / f"{stem}.mp4")
        for method in missing:
            _, transform, crf = METHODS[method]
            write_checked(workload.method_dir(method) / f"{stem}.mp4", transform(gt), crf, frames)
    log(f"workload in {root}: {len(workload.clips)} clips × {frames} frames, GT + {len(methods)} methods")
    return workload


# -- the reference chain (run in its own process by --reference-worker) --------------------------


class DlibTools:
    """dlib as the reference scripts use it: HOG detector without upsampling, first face."""

    def __init__(self) -> None:
        import importlib.util

        import dlib

        models = Path(list(importlib.util.find_spec("face_recognition_models").submodule_search_locations)[0]) / "models"
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
        self.embedder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def shape(self, image: np.ndarray):
        rects = self.detector(image, 0)
        return self.predictor(image, rects[0]) if rects else None

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        shape = self.shape(image)
        return None if shape is None else np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def descriptor(self, image: np.ndarray) -> np.ndarray | None:
        shape = self.shape(image)
        return None if shape is None else np.array(self.embedder.compute_face_descriptor(image, shape))


def ssim_tool(gen: np.ndarray, gt: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(np.mean([
        structural_similarity(g, r, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=255, channel_axis=2)
        for g, r in zip(gen, gt)
    ]))  # fmt: skip


def cpbd_tool(gen: np.ndarray) -> float:
    import cpbd
    from PIL import Image

    return float(np.mean([cpbd.compute(np.asarray(Image.fromarray(g).convert("L"))) for g in gen]))


def csim_tool(tools: DlibTools, gen: np.ndarray, gt: np.ndarray) -> float | None:
    sims = []
    for g, r in zip(gen, gt):
        a, b = tools.descriptor(g), tools.descriptor(r)
        if a is not None and b is not None:
            sims.append(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    return float(np.mean(sims)) if sims else None


def lmd_tool(tools: DlibTools, gen: np.ndarray, gt: np.ndarray) -> float | None:
    distances = []
    for g, r in zip(gen, gt):
        a, b = tools.landmarks(g), tools.landmarks(r)
        if a is not None and b is not None:
            a, b = a - a.mean(axis=0), b - b.mean(axis=0)
            distances.append(float(np.linalg.norm(a - b, axis=1).mean()))
    return float(np.mean(distances)) if distances else None


def msi_tool(tools: DlibTools, gen: np.ndarray) -> float | None:
    """StableFace's MSI: mouth scaled to 64 units wide (first 10 faces), mean over 12-frame
    windows every 6 of 1 / (variance of mouth-point acceleration + 0.5); runs not bridged."""
    runs, run = [], []
    for frame in list(gen) + [None]:
        points = tools.landmarks(frame) if frame is not None else None
        if points is not None:
            run.append(points[48:68])
            continue
        if run:
            runs.append(np.stack(run))
        run = []
    if not runs:
        return None
    first = np.concatenate(runs)[:10]
    scale = 64.0 / float(np.linalg.norm(first[:, 0] - first[:, 6], axis=-1).mean())
    scores = []
    for mouth in runs:
        acc = np.diff(mouth * scale, n=2, axis=0)
        scores += [float((1.0 / (acc[i : i + 12].var(axis=0) + 0.5)).mean()) for i in range(0, len(acc), 6)]
    return float(np.mean(scores)) if scores else None


def reference_chain(workload: Workload) -> dict:
    """{method: {clip: {value: number}}} and seconds per tool, one method folder at a time."""
    tools = DlibTools()
    seconds = dict.fromkeys(("decode", "ssim", "cpbd", "csim", "lmd", "msi"), 0.0)
    values: dict[str, dict[str, dict]] = {}

    def timed(name: str, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        seconds[name] += time.perf_counter() - start
        return out

    for i, method in enumerate(workload.methods):
        log(f"reference chain: {method} ({i + 1}/{len(workload.methods)})")
        values[method] = {}
        for stem in workload.clips:
            gen = timed("decode", read_video, workload.method_dir(method) / f"{stem}.mp4")
            gt = timed("decode", read_video, workload.gt / f"{stem}.mp4")
            values[method][stem] = {
                "ssim": timed("ssim", ssim_tool, gen, gt),
                "cpbd": timed("cpbd", cpbd_tool, gen),
                "csim": timed("csim", csim_tool, tools, gen, gt),
                "lmd": timed("lmd", lmd_tool, tools, gen, gt),
                "msi": timed("msi", msi_tool, tools, gen),
            }
    return {"values": values, "tool_seconds": seconds}


def reference_worker(args: argparse.Namespace) -> None:
    manifest = json.loads((args.workdir / "manifest.json").read_text())
    workload = Workload(args.workdir, manifest["clip_ids"], manifest["frames"], args.methods)
    Path(args.reference_worker).write_text(json.dumps(reference_chain(workload)))


# -- running a process and measuring it ---------------------------------------------------------


PSS_SAMPLE_S = 1.0


@dataclass
class Run:
    command: list[str]
    wall_s: float
    cpu_s: float  # user + system of the process and every child it waited for
    max_rss_mib: float  # the largest single process (ru_maxrss)
    tree_pss_mib: float  # the process tree's summed PSS, sampled every PSS_SAMPLE_S
    returncode: int
    others_cores: float  # cores busy with other processes meanwhile (the machine is shared)
    stdout: str = ""
    stderr_tail: str = ""


def _process_table() -> dict[int, int]:
    """pid → parent pid (this kernel has no /proc/<pid>/task/<tid>/children)."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def tree_pss_kib(root: int) -> int:
    """Summed proportional set size of ``root`` and its descendants: shared pages (libraries,
    forked memory) count once in total, not once per process as summed RSS would."""
    parents = _process_table()
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in tree]
        tree.update(children)
        frontier += children
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def busy_cpu_seconds() -> float:
    """Seconds every core of the machine spent busy (not idle or waiting on I/O) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def run_measured(command: list[str], env: dict | None = None, show_stderr: bool = False) -> Run:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start, busy = time.perf_counter(), busy_cpu_seconds()
        proc = subprocess.Popen(command, stdout=out, stderr=None if show_stderr else err, env=env)
        peak, next_sample = 0, start
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() >= next_sample:  # reading PSS costs ~30 ms of CPU for a 1 GiB process
                peak = max(peak, tree_pss_kib(proc.pid))
                next_sample = time.perf_counter() + PSS_SAMPLE_S
            time.sleep(0.05)
        wall, busy = time.perf_counter() - start, busy_cpu_seconds() - busy
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Run(
            command=command,
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            max_rss_mib=usage.ru_maxrss / 1024,
            tree_pss_mib=peak / 1024,
            returncode=proc.returncode,
            others_cores=max(0.0, busy - (usage.ru_utime + usage.ru_stime)) / wall,
            stdout=out.read(),
            stderr_tail=err.read()[-3000:],
        )


def run_reference(args: argparse.Namespace, workload: Workload) -> tuple[Run, dict]:
    result_file = workload.root / "reference-result.json"
    saved_key = workload.root / "reference-result.key"
    key = json.dumps({"clips": workload.clips, "frames": workload.frames, "methods": workload.methods})
    if args.reuse_reference and result_file.is_file() and saved_key.is_file() and saved_key.read_text() == key:
        saved = json.loads(result_file.read_text())
        log(f"reusing the reference chain's result from {result_file}")
        return Run(**saved["run"]), saved
    log(f"reference chain over {workload.generated_frames} generated frames (one process)")
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = Path(tmp.name)
    command = [sys.executable, __file__, "--reference-worker", str(out), "--workdir", str(workload.root),
               "--methods", ",".join(workload.methods)]  # fmt: skip
    run = run_measured(command, show_stderr=True)
    if run.returncode:
        raise SystemExit(f"reference chain failed ({run.returncode})")
    result = json.loads(out.read_text())
    out.unlink()
    result["run"] = asdict(run)
    result_file.write_text(json.dumps(result))
    saved_key.write_text(key)
    return run, result


# -- the talkbench side -------------------------------------------------------------------------


def talkbench_command() -> list[str]:
    exe = Path(sys.executable).with_name("talkbench")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "talkbench"]


def talkbench_has_workers() -> bool:
    help_text = subprocess.run([*talkbench_command(), "eval", "--help"], capture_output=True, text=True,
                               env={**os.environ, "COLUMNS": "200"}).stdout  # fmt: skip
    return "--workers" in help_text


def cold_env(stack: list[tempfile.TemporaryDirectory]) -> dict:
    """The environment with fresh empty talkbench cache dirs (kept alive by ``stack``)."""
    env = dict(os.environ)
    for var in ("TALKBENCH_CACHE_DIR",):
        stack.append(tempfile.TemporaryDirectory(prefix=f"{var.lower()}-"))
        env[var] = stack[-1].name
    return env


def talkbench_eval(generated: list[Path], reference: Path, workers: int, env: dict,
                   metrics: str = METRICS, extra: tuple[str, ...] = ()) -> tuple[Run, dict]:  # fmt: skip
    command = [*talkbench_command(), "eval", *itertools.chain.from_iterable(("-g", str(g)) for g in generated),
               "-r", str(reference), "--metrics", metrics, *extra, "--workers", str(workers), "--json"]  # fmt: skip
    log("$ " + " ".join(command))
    run = run_measured(command, env=env)
    if run.returncode:
        raise SystemExit(f"talkbench eval failed ({run.returncode}):\n{run.stderr_tail}\n{run.stdout[-2000:]}")
    doc = json.loads(run.stdout)
    run.stdout = ""  # parsed; not repeated in --json
    log(f"  {run.wall_s:.1f} s wall, {run.cpu_s:.1f} s CPU, peak RSS {run.max_rss_mib:.0f} MiB")
    return run, doc


FACE_ARGS = ("--csim-reference", "ground-truth-frame", "--csim-stride", "1")


def evaluations(doc: dict, generated: list[Path]) -> dict[str, dict[str, dict]]:
    """{method: {clip: values}} from ``talkbench eval --json``: the multi-folder shape
    (``evaluations``) or, for one -g, a single result with ``clips``."""
    if "evaluations" in doc:
        return {e["method"]: {c["id"]: c["values"] for c in e["clips"]} for e in doc["evaluations"]}
    return {generated[0].name: {c["id"]: c["values"] for c in doc["clips"]}}


def engine_timing(doc: dict) -> dict:
    """What talkbench itself reports: the call's wall seconds (start-up excluded; the same in
    every evaluation of one call), summed clip seconds, and clips read from its cache."""
    timings = [e.get("timing", {}) for e in doc.get("evaluations", [doc])]
    return {
        "seconds": timings[0].get("seconds") if timings else None,
        "clip_seconds": sum(t.get("clip_seconds") or 0.0 for t in timings),
        "clips_cached": sum(t.get("clips_cached") or 0 for t in timings),
        "workers": timings[0].get("workers") if timings else None,
    }


def run_talkbench(workload: Workload, cached_method: str) -> dict:
    folders = [workload.method_dir(m) for m in workload.methods]
    keep: list[tempfile.TemporaryDirectory] = []
    out: dict = {}
    log("warm-up, untimed, throwaway caches: one clip of one method (numba's compiled kernels, file cache)")
    with tempfile.TemporaryDirectory(prefix="warm-up-") as one:
        shutil.copy(workload.method_dir(workload.methods[0]) / f"{workload.clips[0]}.mp4", one)
        talkbench_eval([Path(one)], workload.gt, 1, cold_env(keep), extra=FACE_ARGS)
    for workers in (2, 1):
        run, doc = talkbench_eval(folders, workload.gt, workers, cold_env(keep), extra=FACE_ARGS)
        out[f"workers{workers}"] = {"run": asdict(run), "values": evaluations(doc, folders), "engine": engine_timing(doc)}
    env = cold_env(keep)
    log("ground truth cached: an untimed run of GT against itself first")
    talkbench_eval([workload.gt], workload.gt, 1, env, extra=FACE_ARGS)
    run, doc = talkbench_eval([workload.method_dir(cached_method)], workload.gt, 1, env, extra=FACE_ARGS)
    frames = len(workload.clips) * workload.frames
    engine = engine_timing(doc)
    out["cached"] = {
        "method": cached_method, "run": asdict(run), "frames": frames, "ms_per_frame": 1000 * run.wall_s / frames,
        "cpu_ms_per_frame": 1000 * run.cpu_s / frames,
        "engine": engine, "engine_ms_per_frame": None if engine["seconds"] is None else 1000 * engine["seconds"] / frames,
    }  # fmt: skip
    for tmp in keep:
        tmp.cleanup()
    return out


# -- the floor ----------------------------------------------------------------------------------


def floor_ms(frames: np.ndarray) -> dict:
    """Wall and CPU ms per frame of detect → main face → landmarks → embedding via talkbench.face."""
    from talkbench.face import get_backend
    from talkbench.face.types import pick_main_face

    backend = get_backend("dlib")

    def analyse(frame: np.ndarray) -> None:
        box, _ = pick_main_face(backend.detect(frame))
        if box is not None:
            backend.embedding(frame, box, backend.landmarks(frame, box))

    analyse(frames[0])  # loads the ResNet
    wall, cpu = time.perf_counter(), time.process_time()
    for frame in frames:
        analyse(frame)
    return {"frames": len(frames), "ms_per_frame": 1000 * (time.perf_counter() - wall) / len(frames),
            "cpu_ms_per_frame": 1000 * (time.process_time() - cpu) / len(frames)}  # fmt: skip


# -- the long clip ------------------------------------------------------------------------------


def looped_frames(source: Path, count: int, size: int) -> Iterator[np.ndarray]:
    """``count`` frames of ``source`` played again and again, decoded as they are needed."""
    from talkbench import media

    made = 0
    while made < count:
        for frame in media.iter_frames(source, fps=FPS, size=size):
            yield frame
            made += 1
            if made == count:
                return


def long_clip(workdir: Path, minutes: float, source: Path) -> dict:
    folder = workdir / "long"
    count = int(round(minutes * 60 * FPS))
    gen, ref = folder / "long.mp4", folder / "long_ref.mp4"
    key = folder / "source.txt"
    wanted = f"{source} {count} 512"
    if not (gen.is_file() and ref.is_file() and key.is_file() and key.read_text() == wanted):
        log(f"writing a {minutes:g}-minute 512² clip ({count} frames) from {source.name}, twice")
        write_checked(ref, looped_frames(source, count, 512), 18, count)
        write_checked(gen, looped_frames(source, count, 512), 35, count)
        key.write_text(wanted)
    keep: list[tempfile.TemporaryDirectory] = []
    run, doc = talkbench_eval([gen], ref, 1, cold_env(keep), metrics="ssim,cpbd,lmd,msi")
    for tmp in keep:
        tmp.cleanup()
    return {"minutes": minutes, "frames": count, "source": source.name, "run": asdict(run),
            "values": evaluations(doc, [gen])}  # fmt: skip


# -- report -------------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def agreement(reference: dict, talkbench: dict, methods: list[str], clips: list[str]) -> list[dict]:
    rows = []
    for method in methods:
        for column, key in VALUES.items():
            ref = [reference[method][c][column] for c in clips]
            ours = [talkbench.get(method, {}).get(c, {}).get(key) for c in clips]
            pairs = [(r, o) for r, o in zip(ref, ours) if r is not None and o is not None]
            rows.append({
                "method": method, "value": column,
                "reference_mean": _mean(ref), "talkbench_mean": _mean(ours),
                "max_abs_diff": max(abs(r - o) for r, o in pairs) if pairs else None,
                "clips_compared": len(pairs),
            })  # fmt: skip
    return rows


def _mean(values: list) -> float | None:
    got = [v for v in values if v is not None]
    return float(np.mean(got)) if got else None


def workers_consistency(tb: dict) -> float | None:
    """Largest |difference| of any value between the 1- and 2-worker runs."""
    a, b = tb["workers1"]["values"], tb["workers2"]["values"]
    diffs = [abs(a[m][c][k] - b[m][c][k]) for m in a for c in a[m] for k in a[m][c]
             if isinstance(a[m][c][k], float) and isinstance(b.get(m, {}).get(c, {}).get(k), float)]  # fmt: skip
    return max(diffs) if diffs else None


def summarise(report: dict) -> dict:
    """Ratios and verdicts from the measured runs."""
    ref, tb, floor = report.get("reference"), report.get("talkbench"), report["floor"]
    checks = {}
    if ref and tb:
        for name in ("workers2", "workers1"):
            ratio = ref["run"]["wall_s"] / tb[name]["run"]["wall_s"]
            checks[name] = {"ratio": ratio, "target": f">= {TARGETS[name]:g}x", "pass": ratio >= TARGETS[name],
                            "cpu_ratio": ref["run"]["cpu_s"] / tb[name]["run"]["cpu_s"]}  # fmt: skip
    if tb:
        # per generated frame: the engine's whole evaluate() call (decode, face analysis,
        # metrics, cache reads and writes), without the interpreter's start-up and imports,
        # a fixed cost per command that 400 frames cannot amortise (printed beside it)
        c = tb["cached"]
        per_frame = c["engine_ms_per_frame"] if c["engine_ms_per_frame"] is not None else c["ms_per_frame"]
        ratio = per_frame / floor["ms_per_frame"]
        checks["cached_vs_floor"] = {"ratio": ratio, "target": f"<= {TARGETS['cached_vs_floor']:g}", "pass": ratio <= TARGETS["cached_vs_floor"]}
    if report.get("long_clip"):
        run = report["long_clip"]["run"]
        gib = max(run["tree_pss_mib"], run["max_rss_mib"]) / 1024  # the larger: samples can miss a spike
        checks["long_rss_gib"] = {"ratio": gib, "target": f"<= {TARGETS['long_rss_gib']:g} GiB", "pass": gib <= TARGETS["long_rss_gib"]}
    return checks


def print_report(report: dict) -> None:
    w = report["workload"]
    ref, tb, floor, checks = report.get("reference"), report.get("talkbench"), report["floor"], report["checks"]
    print(f"workload: {len(w['clips'])} clips × {w['frames']} frames at {SIZE}² {FPS} fps, {len(w['methods'])} methods "
          f"= {w['generated_frames']} generated frames; clips {', '.join(w['clips'])}")  # fmt: skip
    print(f"{os.cpu_count()} CPU cores; times are process wall clock, start-up included; RSS: the largest process; "
          f"tree PSS: the process tree, MiB; others: cores other processes kept busy meanwhile; ratio: reference / talkbench "
          f"wall (the target), CPU x: the same for process CPU, steadier on a busy machine\n")  # fmt: skip
    header = (f"{'run':44} {'wall s':>8} {'CPU s':>8} {'RSS MiB':>8} {'tree PSS':>9} {'others':>7} "
              f"{'ratio':>7} {'target':>9} {'':>5} {'CPU x':>6}")  # fmt: skip
    print(header)
    print("-" * len(header))

    def row(label, run, check=None):
        ratio = "-" if check is None else f"{check['ratio']:.2f}x"
        target = "-" if check is None else check["target"]
        print(f"{label:44} {run['wall_s']:8.1f} {run['cpu_s']:8.1f} {run['max_rss_mib']:8.0f} {run['tree_pss_mib']:9.0f} "
              f"{run['others_cores']:7.2f} {ratio:>7} {target:>9} {verdict(check and check['pass']):>5} "
              f"{'-' if check is None else format(check['cpu_ratio'], '.2f') + 'x':>6}")  # fmt: skip

    if ref:
        row("reference chain (1 process)", ref["run"])
    if tb:
        row("talkbench eval --workers 2, cold", tb["workers2"]["run"], checks.get("workers2"))
        row("talkbench eval --workers 1, cold", tb["workers1"]["run"], checks.get("workers1"))
        c = tb["cached"]
        row(f"talkbench, GT cached, {c['method']} only, 1 worker", c["run"])
    print()
    print(f"floor (talkbench.face dlib detect + landmarks + embedding): {floor['ms_per_frame']:.1f} ms/frame "
          f"({floor['cpu_ms_per_frame']:.1f} CPU ms) over {floor['frames']} frames of {floor['method']}")  # fmt: skip
    if tb:
        c, check = tb["cached"], checks["cached_vs_floor"]
        engine = "" if c["engine_ms_per_frame"] is None else f" (engine's own timing {c['engine_ms_per_frame']:.1f} ms)"
        print(f"GT cached: {c['ms_per_frame']:.1f} ms per generated frame with start-up{engine}; engine / floor = {check['ratio']:.2f} "
              f"(target {check['target']}) {verdict(check['pass'])}; in CPU: {c['cpu_ms_per_frame']:.1f} ms / "
              f"{floor['cpu_ms_per_frame']:.1f} ms = {c['cpu_ms_per_frame'] / floor['cpu_ms_per_frame']:.2f}")  # fmt: skip
        own = ", ".join(f"{k} {tb[k]['engine']['seconds']:.1f} s" for k in ("workers2", "workers1", "cached")
                        if tb[k]["engine"]["seconds"] is not None)  # fmt: skip
        print(f"talkbench's own wall time (start-up excluded): {own}")
        consistency = report.get("workers_max_abs_diff")
        print(f"1 vs 2 workers: max |diff| of any value {'-' if consistency is None else f'{consistency:.1e}'}")
    if ref:
        tools = ", ".join(f"{k} {v:.0f}" for k, v in ref["tool_seconds"].items())
        print(f"reference chain seconds by tool: {tools}")
    if report.get("long_clip"):
        lc, check = report["long_clip"], checks["long_rss_gib"]
        print(f"long clip ({lc['minutes']:g} min, {lc['frames']} frames at 512², ssim,cpbd,lmd,msi, 1 worker): "
              f"{lc['run']['wall_s']:.0f} s, peak RSS {lc['run']['max_rss_mib']:.0f} MiB (tree PSS {lc['run']['tree_pss_mib']:.0f} MiB) "
              f"target {check['target']} {verdict(check['pass'])}")  # fmt: skip
    if report.get("agreement"):
        print()
        header = f"{'method':14} {'value':6} {'reference':>11} {'talkbench':>11} {'max |diff|':>11} {'clips':>5}"
        print(header)
        print("-" * len(header))
        for r in report["agreement"]:
            def fmt(v):
                return "-" if v is None else f"{v:.5f}"

            diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
            print(f"{r['method']:14} {r['value']:6} {fmt(r['reference_mean']):>11} {fmt(r['talkbench_mean']):>11} {diff:>11} {r['clips_compared']:>5}")
    if report.get("notes"):
        print()
        for note in report["notes"]:
            print(f"note: {note}")


# -- main ---------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4, help="real clips in the workload (default 4)")
    parser.add_argument("--frames", type=int, default=100, help="frames per clip (default 100)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--workdir", type=Path, help="keep the workload here (reused when it matches); default a temp dir")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write the numbers as JSON (to FILE, or instead of the table)")
    parser.add_argument("--skip-reference", action="store_true", help="leave out the reference chain (quick checks)")
    parser.add_argument("--reuse-reference", action="store_true", help="use the reference chain's result saved in --workdir when it matches")
    parser.add_argument("--skip-talkbench", action="store_true", help="leave out the talkbench runs")
    parser.add_argument("--long-clip-minutes", type=float, default=0, help="memory check on a clip this long (0 = skip; the issue asks for 10)")
    parser.add_argument("--reference-worker", help=argparse.SUPPRESS)  # internal: run the chain, write JSON here
    args = parser.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    return args


def main() -> None:
    args = parse_args()
    if args.reference_worker:
        reference_worker(args)
        return
    with tempfile.TemporaryDirectory(prefix="talkbench-workload-") as tmp:
        root = (args.workdir or Path(tmp)).resolve()
        workload = build_workload(root, args.clips, args.frames, args.methods)
        report: dict = {"workload": {**asdict(workload), "root": str(root), "generated_frames": workload.generated_frames},
                        "notes": []}  # fmt: skip
        cached_method = CACHED_METHOD if CACHED_METHOD in workload.methods else workload.methods[0]

        if not args.skip_reference:
            run, result = run_reference(args, workload)
            report["reference"] = {"run": asdict(run), "tool_seconds": result["tool_seconds"], "values": result["values"]}
        if args.skip_talkbench:
            pass
        elif talkbench_has_workers():
            report["talkbench"] = run_talkbench(workload, cached_method)
            report["workers_max_abs_diff"] = workers_consistency(report["talkbench"])
            for name in ("workers2", "workers1", "cached"):
                if report["talkbench"][name]["engine"]["clips_cached"]:
                    report["notes"].append(f"{name}: talkbench read clips from its cache in a run meant to measure them")
        else:
            report["notes"].append("talkbench eval has no --workers yet: talkbench runs skipped")

        log(f"floor: talkbench.face on the frames of {cached_method}")
        frames = np.concatenate([read_video(workload.method_dir(cached_method) / f"{c}.mp4") for c in workload.clips])
        report["floor"] = {"method": cached_method, **floor_ms(frames)}

        if args.long_clip_minutes > 0 and "talkbench" in report:
            source = Path(os.environ.get("TALKBENCH_SHARED_DATA", "/work/shared/data")) / "video" / f"{workload.clips[0]}.mp4"
            report["long_clip"] = long_clip(root, args.long_clip_minutes, source)
        elif args.long_clip_minutes > 0:
            report["notes"].append("long clip skipped: it needs talkbench eval --workers")

        if "reference" in report and "talkbench" in report:
            values = report["talkbench"]["workers2"]["values"]
            report["agreement"] = agreement(report["reference"]["values"], values, workload.methods, workload.clips)
        report["checks"] = summarise(report)
        report["self_max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if args.json == "-":
        print(json.dumps(report, indent=2))
        return
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
