"""Work done once per clip before training, in parallel.

* ``prepare_regions`` (stage 1): dlib landmarks of every frame -> tight eye/eye/mouth boxes as
  fractions of the frame, float16, ``REGIONS/<clip>.npz``; on the dataset engines (local
  processes or Ray), one clip per task, atomic files, so a killed run resumes where it stopped
  and a finished one does nothing the second time.
* ``prepare_generator_samples`` (stage 2): the tokenizer's targets, speech features and
  controls of every clip; each rank encodes its shard on its own device into the cache, then
  all ranks read every clip from it (a clip another rank encoded that is not in this node's
  cache is an error, not encoded again). The shard's controls (dlib landmarks of every frame)
  come first, in parallel on the dataset engines (``prepare_controls``).

Under torchrun the ranks wait for each other's preparation on ``training.preparing``'s gloo
group (timeout ``train.prepare_timeout_s``), and a failure on one rank is raised on all. Both
the regions folder and the stage-2 cache must be on storage every node sees.
"""

from __future__ import annotations

import logging
import time
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from talkbench import media, util
from talkbench.datasets.engines import map_tasks
from talkbench.face import analyse_image, get_backend
from talkbench.vqtalker.cache import clip_cache_dir, default_cache_dir
from talkbench.vqtalker.codec import encode_frames
from talkbench.vqtalker.controls import Controls, clip_controls
from talkbench.vqtalker.controls import cache_file as controls_cache_file
from talkbench.vqtalker.data import REGIONS_FORMAT, GeneratorSample, TrainingClip, TrainingDataError, regions_path
from talkbench.vqtalker.losses import region_boxes
from talkbench.vqtalker.speech import clip_speech
from talkbench.vqtalker.tokenizer import to_model
from talkbench.vqtalker.training import DistInfo, TrainingError, local_world_size, preparing

log = logging.getLogger(__name__)

STALE_TEMP_SECONDS = 3600  # a temp file older than this is a killed run's, not a live writer's


# ----------------------------------------------------------------------------- regions


@dataclass(frozen=True)
class RegionsDone:
    clip_id: str
    frames: int
    face_frames: int  # frames where dlib found a face (0: the boxes are NaN)
    decoded: int  # frames decoded (differs from ``frames`` only for an odd file)
    error: str | None = None  # why this clip has no regions file


def fill_nearest(found: list[np.ndarray | None]) -> np.ndarray:
    """(T, 68, 2) landmarks: frames without a face take the nearest frame's (the earlier one on
    a tie); all NaN when no frame has a face."""
    out = np.full((len(found), 68, 2), np.nan, dtype=np.float32)
    valid = np.array([i for i, lm in enumerate(found) if lm is not None], dtype=np.int64)
    if len(valid) == 0:
        return out
    i = np.arange(len(found))
    right = np.clip(np.searchsorted(valid, i), 0, len(valid) - 1)
    left = np.clip(right - 1, 0, len(valid) - 1)
    take = np.where(np.abs(i - valid[left]) <= np.abs(valid[right] - i), valid[left], valid[right])
    stacked = {int(j): np.asarray(found[j], dtype=np.float32) for j in valid}
    for k, j in enumerate(take):
        out[k] = stacked[int(j)]
    return out


def clip_regions(clip: TrainingClip, target: Path) -> RegionsDone:
    """Landmarks of every frame of ``clip`` -> ``target`` (written atomically)."""
    backend = get_backend("dlib")
    found, shape = [], None
    for frame in media.iter_frames(clip.path, fps=clip.fps):
        shape = frame.shape
        a = analyse_image(frame, backend, landmarks=True)
        found.append(a.landmarks if a.found else None)
    decoded = len(found)
    if decoded < clip.frames:  # pad with the last frame's, so every index the sampler draws has boxes
        found += [found[-1] if found else None] * (clip.frames - decoded)
    landmarks = fill_nearest(found[: clip.frames])
    h, w = shape[:2] if shape else (clip.height, clip.width)
    tight = region_boxes(landmarks, 0.0) / np.array([w, h, w, h], dtype=np.float32)
    util.save_arrays(target, {"boxes": tight.astype(np.float16), "format": np.asarray(REGIONS_FORMAT),
                              "clip_id": np.asarray(clip.clip_id), "frames": np.asarray(clip.frames),
                              "source_size": np.asarray(clip.path.stat().st_size)})
    return RegionsDone(clip.clip_id, clip.frames, sum(lm is not None for lm in found[:decoded]), decoded)


def _regions_task(job: tuple[TrainingClip, Path]) -> RegionsDone:
    """One clip in a worker; its failure comes back in the result, so the other clips go on."""
    clip, target = job
    try:
        return clip_regions(clip, target)
    except Exception as exc:  # noqa: BLE001 - a bad file must not end the other clips' preparation
        return RegionsDone(clip.clip_id, clip.frames, 0, 0, error=f"{clip.path}: {type(exc).__name__}: {exc}")


def regions_fresh(target: Path, clip: TrainingClip) -> bool:
    """A finished regions file of this very clip file (same frame count and byte size)."""
    data = util.load_arrays(target) if target.is_file() else None
    if data is None:
        return False
    try:
        return (str(data["format"]) == REGIONS_FORMAT and int(data["frames"]) == clip.frames
                and int(data["source_size"]) == clip.path.stat().st_size)
    except (OSError, ValueError, KeyError):
        return False


def prepare_regions(clips: Sequence[TrainingClip], out_root: str | Path, *, engine: str = "local", workers: int = 2,
                    ray_address: str | None = None,
                    progress: bool | util.ProgressCallback = True) -> list[RegionsDone]:
    """Eye/mouth boxes of every clip into ``out_root`` (e.g. ``DIR/vqtalker/regions``), clips
    in parallel on ``engine``; clips whose file is already there are skipped. Returns what this
    call computed. A clip without any face gets NaN boxes (its eye/mouth losses are zero) and
    a warning naming it.

    ``progress``: True draws a bar on stderr while there are clips to prepare, False nothing; a
    ``ProgressCallback`` gets ``(done, total, clip id)`` as clips finish (``(0, total, "")``
    first)."""
    out_root = Path(out_root)
    todo = [(c, regions_path(out_root, c)) for c in clips if not regions_fresh(regions_path(out_root, c), c)]
    if not todo:
        return []
    out_root.mkdir(parents=True, exist_ok=True)
    # a killed run's partial files (util.atomic_path's; older); only old ones, as the folder may
    # be shared with another run writing its own right now
    cutoff = time.time() - STALE_TEMP_SECONDS
    for pattern in (".*.npz.*.npz", ".*.tmp.npz"):
        for stale in out_root.glob(pattern):
            try:
                if stale.stat().st_mtime < cutoff:
                    stale.unlink()
            except FileNotFoundError:
                pass
    log.info("eye/mouth regions: %d of %d clips to prepare in %s", len(todo), len(clips), out_root)
    done = run_clip_tasks(_regions_task, todo, "eye/mouth regions", "regions", engine, workers, ray_address, progress)
    for result in done:
        if result.face_frames == 0:
            log.warning("%s: no face found in any frame; eye/mouth losses are zero for this clip", result.clip_id)
        if result.decoded != result.frames:
            log.warning("%s: %d frames decode, the catalog says %d", result.clip_id, result.decoded, result.frames)
    return done


def run_clip_tasks(task, todo: list, what: str, label: str, engine: str, workers: int, ray_address: str | None,
                   progress: bool | util.ProgressCallback) -> list:
    """``task`` over ``todo`` on the dataset engines, with a bar named ``label`` (``progress``
    as for ``prepare_regions``); returns the results without an ``error``. A clip that fails
    costs only itself: the others are stored, then ``TrainingDataError`` names the failed ones
    (a re-run after fixing or dropping them redoes only them)."""
    done, failed = [], []
    with (progress_bar(label) if progress is True else nullcontext(progress or None)) as report:
        if report is not None:
            report(0, len(todo), "")
        with closing(map_tasks(task, todo, engine=engine, workers=workers, ray_address=ray_address)) as it:
            for finished, result in enumerate(it, 1):
                if report is not None:
                    report(finished, len(todo), result.clip_id)
                (failed if result.error else done).append(result)
    if failed:
        raise TrainingDataError(f"{what} failed for {len(failed)} of {len(todo)} clips: "
                                + "; ".join(r.error for r in failed[:5]) + (" …" if len(failed) > 5 else ""))
    return done


@contextmanager
def progress_bar(label: str) -> Iterator[util.ProgressCallback]:
    """A rich bar named ``label`` on stderr while the block runs, as a ``ProgressCallback``."""
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None, clip_id: str) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def check_regions(clips: Sequence[TrainingClip], out_root: str | Path) -> None:
    """Raise ``TrainingDataError`` naming the clips whose regions file in ``out_root`` is missing
    or not of this clip file: on the ranks that did not prepare them, once rank 0 has."""
    missing = [regions_path(out_root, c) for c in clips if not regions_fresh(regions_path(out_root, c), c)]
    if missing:
        raise TrainingDataError(
            f"{len(missing)} of {len(clips)} eye/mouth regions files are missing or stale after rank 0 prepared "
            f"them: {', '.join(str(p) for p in missing[:5])}{' …' if len(missing) > 5 else ''}; every node must see "
            f"the regions folder {out_root} (a shared filesystem: put the dataset or data.cache_dir there)")


# ----------------------------------------------------------------------------- stage-2 samples


def stage1_path(video: Path, tokenizer_sha: str, fps: float, cache_dir: Path) -> Path:
    return clip_cache_dir(video, cache_dir) / f"stage1_{tokenizer_sha[:16]}_{fps:g}fps.npz"


@torch.no_grad()
def stage1_targets(tokenizer, video: Path, tokenizer_sha: str, fps: float, cache_dir: Path) -> dict[str, np.ndarray]:
    """Stage-1 indices (G, R, T), motion f_t - f_0 (T, d) and f_g (style_dim,) of a clip on the
    tokenizer's device, frames streamed from the file (no frame cache), cached as an npz."""
    target = stage1_path(video, tokenizer_sha, fps, cache_dir)
    cached = util.load_arrays(target) if target.is_file() else None
    if cached is not None:
        return cached
    size = tokenizer.config.size
    device = next(tokenizer.parameters()).device
    indices = encode_frames(tokenizer, media.iter_frames(video, fps=fps, size=size))
    f_g = f_s = None
    motion, chunk = [], []

    def flush():
        motion.append(tokenizer.motion_feature(to_model(np.stack(chunk), device)) - f_s)
        chunk.clear()

    for frame in media.iter_frames(video, fps=fps, size=size):
        if f_s is None:
            f_g, _, f_s = tokenizer.encode_source(to_model(frame[None], device))
        chunk.append(frame)
        if len(chunk) == 16:
            flush()
    if chunk:
        flush()
    out = {"indices": indices.astype(np.int64), "motion": torch.cat(motion).float().cpu().numpy(),
           "global_feature": f_g[0].float().cpu().numpy()}
    util.save_arrays(target, out)
    return out


def _video(v) -> tuple[Path, str]:
    if isinstance(v, TrainingClip):
        return v.path, v.clip_id
    return Path(v), Path(v).stem


def _sample(tokenizer, video: Path, name: str, tokenizer_sha: str, speech_backend, motion: str, fps: float,
            cache_dir: Path) -> GeneratorSample:
    stage1 = stage1_targets(tokenizer, video, tokenizer_sha, fps, cache_dir)
    speech = clip_speech(speech_backend, video, cache_dir)
    controls = clip_controls(video, fps, cache_dir)
    t = min(speech.frames, len(controls), stage1["indices"].shape[-1])
    if t < 2:
        raise TrainingDataError(f"{video}: fewer than 2 aligned frames")
    targets = stage1["indices"][..., :t] if motion == "grfsq" else stage1["motion"][:t]
    return GeneratorSample(name, speech.values[:t], controls.stacked()[:t], targets, stage1["global_feature"])


@dataclass(frozen=True)
class ControlsDone:
    clip_id: str
    path: Path
    frames: int = 0
    face_frames: int = 0  # frames where dlib found a face (0: neutral controls)
    error: str | None = None  # why this clip has no controls file


def _controls_task(job: tuple[Path, str, float, Path]) -> ControlsDone:
    """One clip's controls in a worker, cached where ``_sample``'s ``clip_controls`` reads them;
    its failure comes back in the result, so the other clips go on."""
    path, name, fps, cache_dir = job
    try:
        controls = clip_controls(path, fps, cache_dir)
        return ControlsDone(name, path, len(controls), int(controls.found.sum()))
    except Exception as exc:  # noqa: BLE001 - a bad file must not end the other clips' preparation
        return ControlsDone(name, path, error=f"{path}: {type(exc).__name__}: {exc}")


def controls_cached(path: Path, fps: float, cache_dir: Path) -> bool:
    """A readable controls file of this very clip file (the cache key holds its size and mtime)."""
    try:
        target = controls_cache_file(path, fps, cache_dir)
    except OSError:  # a missing clip: its task reports it
        return False
    return target.is_file() and Controls.load(target) is not None


def prepare_controls(videos: Sequence, cache_dir: str | Path, fps: float = media.DEFAULT_FPS, *,
                     engine: str = "local", workers: int = 2, ray_address: str | None = None,
                     progress: bool | util.ProgressCallback = False) -> list[ControlsDone]:
    """Head pose, gaze and blink (``controls.clip_controls``: dlib landmarks of every frame) of
    ``videos`` (paths or ``TrainingClip``s) into ``cache_dir``, clips in parallel on ``engine``;
    clips whose controls file is already there are skipped. Returns what this call computed. A
    clip that raises costs only itself: the others are stored, then ``TrainingDataError`` names
    the failed ones (a worker process that dies stops the call; a re-run skips what is stored).
    ``progress`` as for ``prepare_regions``."""
    cache_dir, videos = Path(cache_dir), list(videos)
    todo = [(video.resolve(), name, float(fps), cache_dir.resolve()) for video, name in map(_video, videos)
            if not controls_cached(video, fps, cache_dir)]  # absolute: a remote Ray worker has its own cwd
    if not todo:
        return []
    log.info("controls: %d of %d clips to prepare in %s", len(todo), len(videos), cache_dir)
    done = run_clip_tasks(_controls_task, todo, "controls", "controls", engine, workers, ray_address, progress)
    for result in done:
        if result.face_frames == 0:
            log.warning("%s: no face found in any frame; its controls are neutral", result.clip_id)
    return done


def prepare_generator_samples(videos: Sequence, tokenizer, tokenizer_sha: str, speech_backend, motion: str = "grfsq",
                              fps: float = media.DEFAULT_FPS, cache_dir: str | Path | None = None, device=None,
                              dist_info: DistInfo | None = None, timeout_s: float | None = None,
                              engine: str = "local", workers: int = 2,
                              ray_address: str | None = None) -> list[GeneratorSample]:
    """Stage-2 samples of ``videos`` (paths or ``TrainingClip``s). Rank r of ``dist_info``
    encodes clips i with i % world_size == r on ``device`` (the tokenizer is moved there) into
    ``cache_dir``; the ranks then wait for each other and every rank reads all samples from the
    cache, in ``videos`` order, both steps in ``training.preparing`` blocks (the long group's
    timeout, ``train.prepare_timeout_s``, which ``timeout_s`` must equal when given; a failure on
    one rank raises ``TrainingError`` on all). ``cache_dir`` must be on storage every node sees:
    a clip another rank encoded that is not there raises ``TrainingDataError`` naming its file
    (``check_stage1``), rather than encoding it again outside the wait. Each rank first prepares
    its shard's controls in parallel on the dataset engines (``prepare_controls`` with
    ``engine``, ``workers``, ``ray_address``), so the encoding loop finds them cached."""
    info = dist_info or DistInfo()
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if device is not None:
        tokenizer = tokenizer.to(device)
    tokenizer.eval()
    videos = list(videos)
    items = [_video(v) for v in videos]
    if not items:
        raise TrainingDataError("no clips for stage-2 preparation")
    if info.enabled and engine == "ray" and not ray_address:
        raise TrainingError("data.engine=ray with several ranks needs data.ray_address (a running cluster): "
                            "each rank would otherwise start and shut down a Ray of its own")
    # data.prepare_workers counts processes per node, as in stage 1 (where rank 0 alone prepares)
    per_rank = max(1, workers // local_world_size()) if workers else 0
    with preparing(info, "stage-2 preparation", timeout_s):
        mine = [i for i in range(len(items)) if i % info.world_size == info.rank]
        prepare_controls([videos[i] for i in mine], cache_dir, fps, engine=engine, workers=per_rank,
                         ray_address=ray_address, progress=info.is_main)
        for video, name in (items[i] for i in mine):
            _sample(tokenizer, video, name, tokenizer_sha, speech_backend, motion, fps, cache_dir)
    with preparing(info, "reading the stage-2 samples", timeout_s):
        if info.enabled:
            others = [video for i, (video, _) in enumerate(items) if i % info.world_size != info.rank]
            check_stage1(others, tokenizer_sha, fps, cache_dir)
        samples = [_sample(tokenizer, video, name, tokenizer_sha, speech_backend, motion, fps, cache_dir)
                   for video, name in items]
    return samples


def check_stage1(videos: Sequence[Path], tokenizer_sha: str, fps: float, cache_dir: Path) -> None:
    """Raise ``TrainingDataError`` naming the stage-1 files of ``videos`` missing from
    ``cache_dir``, then their controls files: on each rank, for the clips other ranks encoded."""
    missing = [stage1_path(v, tokenizer_sha, fps, cache_dir) for v in videos]
    missing = [p for p in missing if not p.is_file()]
    what = "stage-1"
    if not missing:
        missing = [controls_cache_file(v, fps, cache_dir) for v in videos if not controls_cached(v, fps, cache_dir)]
        what = "controls"
    if missing:
        raise TrainingDataError(
            f"{len(missing)} of {len(videos)} {what} files other ranks encoded are missing from the stage-2 cache: "
            f"{', '.join(str(p) for p in missing[:5])}{' …' if len(missing) > 5 else ''}; every node must see the "
            f"stage-2 cache {cache_dir} (a shared filesystem: put --cache-dir or TALKBENCH_CACHE_DIR there)")
