"""VQTalker training data read from a built dataset, decoded on the fly.

Clips come from a ``talkbench data build`` catalog (``DIR/catalog.duckdb``, accepted rows,
filtered by split) or, for small runs, from the sample corpus, a folder of videos or a list of
files (``clips_from_source``). Stage 1 draws source/target frame pairs: ``PairBatches`` yields
the picks of step k from a generator seeded by (seed, step, rank, micro-batch), exactly as the
earlier ``PairSampler`` did, so a resumed run sees the same pairs; ``FramePairs`` decodes only
those two frames per pick through ``media.read_frames_at`` (a seek to the nearest keyframe),
in DataLoader worker processes. There is no whole-dataset frame cache. A seek decodes from the
keyframe before the frame, so build training datasets with ``data build --keyint 25``
(docs/vqtalker-training.md, "Loader throughput").

Eye and mouth boxes come from ``prepare.prepare_regions`` (dlib landmarks once per clip):
``REGIONS_DIR/<clip>.npz`` holds the tight boxes as fractions of the frame (float16), so one
file serves every training resolution; ``FramePairs`` scales them to ``size`` and grows them
by ``margin`` as ``losses.region_boxes`` does.

    clips = clips_from_source("runs/data/hdtf", splits=["train"])
    prepare_regions(clips, default_regions_root("runs/data/hdtf"), workers=8)
    loader = pair_loader(clips, 256, batch_size=8, seed=0, rank=0, start_step=0, workers=4,
                         regions_root=default_regions_root("runs/data/hdtf"), margin=0.25)
    for src, tgt, boxes in loader:  # uint8 (B, S, S, 3), uint8, float32 (B, 3, 4)
        src, tgt, boxes = batch_to_model((src, tgt, boxes), device)
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from talkbench import media, util
from talkbench.datasets.catalog import CATALOG_NAME, Catalog
from talkbench.errors import MediaError, TalkbenchError
from talkbench.samples import load_sample_corpus
from talkbench.vqtalker.cache import default_cache_dir

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")
REGIONS_FORMAT = "talkbench-vqtalker-regions/1"


class TrainingDataError(TalkbenchError):
    """Training data that cannot be read as asked (no catalog, an empty split, no regions, …)."""


@dataclass(frozen=True)
class TrainingClip:
    clip_id: str
    path: Path  # absolute
    frames: int  # at ``fps``: how many frames media.iter_frames(path, fps) yields
    fps: float
    width: int
    height: int
    split: str | None = None
    language: str | None = None
    person: str | None = None


@dataclass
class GeneratorSample:
    """One clip's stage-2 training data, all at 25 fps and aligned to ``frames``."""

    clip: str
    speech: np.ndarray  # (T, per_frame) int64 or (T, dim) float32
    controls: np.ndarray  # (T, 7) float32
    targets: np.ndarray  # (G, R, T) int64, or (T, motion_dim) float32 for motion: vector
    global_feature: np.ndarray  # (style_dim,) float32

    @property
    def frames(self) -> int:
        return int(self.speech.shape[0])


def is_built_dataset(source) -> bool:
    return isinstance(source, (str, Path)) and source != "sample" and (Path(source) / CATALOG_NAME).is_file()


def default_regions_root(source, cache_dir: str | Path | None = None) -> Path:
    """Where the eye/mouth boxes of ``source``'s clips live: beside a built dataset
    (``DIR/vqtalker/regions``), else in the VQTalker cache (``cache_dir`` or the default one)."""
    if is_built_dataset(source):
        return Path(source) / "vqtalker" / "regions"
    return (Path(cache_dir) if cache_dir else default_cache_dir()) / "regions"


# ----------------------------------------------------------------------------- clips


def catalog_clips(root: str | Path, splits: Iterable[str] | None = None) -> list[TrainingClip]:
    """The accepted clips of the dataset built in ``root`` whose split is one of ``splits``
    (all accepted clips when None), in clip-id order."""
    root = Path(root)
    if not (root / CATALOG_NAME).is_file():
        raise TrainingDataError(f"{root}: no {CATALOG_NAME} here; build the dataset first with 'talkbench data build'")
    with Catalog(root, read_only=True) as cat:
        rows = [r for r in cat.records() if r.accepted]
    if not rows:
        raise TrainingDataError(f"{root / CATALOG_NAME}: no accepted clips")
    wanted = None if splits is None else {str(s) for s in ([splits] if isinstance(splits, str) else splits)}
    if wanted is not None and not wanted:
        raise TrainingDataError(f"{root / CATALOG_NAME}: an empty list of splits selects no clip (omit it for all)")
    chosen = [r for r in rows if wanted is None or r.splits & wanted]
    if not chosen:
        have = sorted({s for r in rows for s in r.splits}) or ["(none)"]
        raise TrainingDataError(f"{root / CATALOG_NAME}: no accepted clip in split {', '.join(sorted(wanted))}; "
                                f"its splits are {', '.join(have)}")
    clips = []
    for r in chosen:
        path = (root / r.path).resolve()
        if not path.is_file():
            raise TrainingDataError(f"{path}: clip {r.clip_id} of {root / CATALOG_NAME} is missing")
        clips.append(TrainingClip(r.clip_id, path, int(r.frames), float(r.fps), int(r.width), int(r.height),
                                  r.split, r.language, r.person))
    return clips


def file_clip(path: str | Path, fps: float = media.DEFAULT_FPS, language: str | None = None) -> TrainingClip:
    """A video file outside any catalog as a training clip (id: its stem and a hash of its path)."""
    path = Path(path).resolve()
    info = media.probe(path)
    if not info.has_video:
        raise TrainingDataError(f"{path}: has no video stream")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return TrainingClip(f"{path.stem}-{digest}", path, media.frame_count_at(info, fps), float(fps), info.width,
                        info.height, None, language)


def clips_from_source(source, splits: Iterable[str] | None = None, fps: float = media.DEFAULT_FPS) -> list[TrainingClip]:
    """``sample`` (the sample corpus), a built dataset's folder (has catalog.duckdb: accepted
    clips of ``splits``), a folder of videos, one file, or a list of files. Only a catalog knows
    splits: for the other sources ``splits`` is ignored (with a warning)."""
    if is_built_dataset(source):
        return catalog_clips(source, splits)
    if splits:
        log.warning("%s is not a built dataset (no %s): split filtering %s does not apply, all its clips are used",
                    source, CATALOG_NAME, list(splits))
    if isinstance(source, str) and source == "sample":
        return [file_clip(c.video, fps, c.language) for c in load_sample_corpus()]
    if isinstance(source, (list, tuple)):
        return [file_clip(p, fps) for p in source]
    path = Path(source)
    if path.is_dir():
        videos = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise TrainingDataError(f"{path}: no {CATALOG_NAME} and no {'/'.join(VIDEO_SUFFIXES)} clips")
        return [file_clip(p, fps) for p in videos]
    if path.is_file():
        return [file_clip(path, fps)]
    raise TrainingDataError(f"{source}: data.source must be 'sample', a built dataset's folder, a folder of clips, "
                            "or a list of files")


def dataset_splits(source, splits: dict | None) -> tuple[list[TrainingClip], list[TrainingClip]]:
    """(training, validation) clips of a built dataset from ``data.splits``: ``train`` and ``val``
    list split names, or ``val_persons`` holds out that fraction of the training clips' persons
    (chosen by a hash of the person id, so the same persons every run) for datasets without a
    validation split. Without ``train`` every accepted clip trains except the validation ones:
    a held-out clip never leaks into training."""
    splits = dict(splits or {})
    fraction = float(splits.pop("val_persons", 0) or 0)
    if fraction and splits.get("val"):
        raise TrainingDataError(f"data.splits: give val (split names) or val_persons (a fraction), not both: {splits}")
    if not 0 <= fraction < 1:
        raise TrainingDataError(f"data.splits.val_persons={fraction}: a fraction in [0, 1)")
    val = catalog_clips(source, splits["val"]) if splits.get("val") else []
    held = {c.clip_id for c in val}
    train = [c for c in catalog_clips(source, splits.get("train") or None) if c.clip_id not in held]
    if fraction:
        def held_out(clip: TrainingClip) -> bool:
            key = hashlib.sha1((clip.person or clip.clip_id).encode()).digest()
            return int.from_bytes(key[:8], "big") / 2**64 < fraction

        val = [c for c in train if held_out(c)]
        train = [c for c in train if not held_out(c)]
        if not val or not train:
            raise TrainingDataError(f"{source}: data.splits.val_persons={fraction} leaves {len(train)} training and "
                                    f"{len(val)} validation clips")
    return train, val


# ----------------------------------------------------------------------------- regions


def regions_name(clip_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._#+-]", "_", clip_id) + ".npz"


def regions_path(regions_root: str | Path, clip: TrainingClip) -> Path:
    return Path(regions_root) / regions_name(clip.clip_id)


def grow_boxes(tight: np.ndarray, margin: float) -> np.ndarray:
    """Tight (…, 3, 4) boxes grown as ``losses.region_boxes`` grows them: by ``margin`` of their
    size on every side, vertically by at least ``margin`` of their width."""
    tight = np.asarray(tight, dtype=np.float32)
    lo, hi = tight[..., :2], tight[..., 2:]
    size = hi - lo
    grow = margin * np.maximum(size, size[..., :1])
    return np.concatenate([lo - grow, hi + grow], -1)


@functools.lru_cache(maxsize=64)
def _tight_boxes(path: str, mtime_ns: int) -> np.ndarray:  # mtime: a rewritten file is read again
    data = util.load_arrays(path)
    if data is None or "boxes" not in data:
        raise TrainingDataError(f"{path}: not a readable eye/mouth regions file; delete it and run prepare_regions")
    return data["boxes"].astype(np.float32)


def clip_boxes(regions_root: str | Path, clip: TrainingClip, size: int, margin: float) -> np.ndarray:
    """(frames, 3, 4) float32 eye/eye/mouth boxes of a clip in pixels of a size x size frame
    (NaN where the clip has no face)."""
    path = regions_path(regions_root, clip)
    if not path.is_file():
        raise TrainingDataError(f"{path}: no eye/mouth regions for clip {clip.clip_id}; run prepare_regions "
                                "(talkbench.vqtalker.prepare) before training")
    tight = _tight_boxes(str(path), path.stat().st_mtime_ns) * np.float32(size)
    return grow_boxes(tight, margin)


# ----------------------------------------------------------------------------- stage-1 pairs


def pair_picks(frame_counts: Sequence[int], batch_size: int, seed: int, step: int, rank: int = 0,
               micro: int = 0) -> list[tuple[int, int, int]]:
    """(clip, source frame, target frame) picks of one micro-batch, drawn from (seed, step,
    rank, micro) alone: the stream the earlier ``PairSampler.indices`` drew, kept bit-exact so
    checkpoints of either resume the same."""
    rng = np.random.default_rng([seed, step, rank, micro])
    out = []
    for _ in range(batch_size):
        c = int(rng.integers(len(frame_counts)))
        s, t = rng.choice(frame_counts[c], size=2, replace=False)
        out.append((c, int(s), int(t)))
    return out


class PairBatches(Sampler):
    """A DataLoader batch sampler: for step ``start_step``, ``start_step + 1``, … it yields the
    ``micro_batches`` micro-batches of that step, each a list of ``pair_picks``. Endless unless
    ``steps`` is given (then it stops before step ``steps``)."""

    def __init__(self, clips: Sequence[TrainingClip], batch_size: int, seed: int, rank: int = 0, start_step: int = 0,
                 micro_batches: int = 1, steps: int | None = None):
        self.frame_counts = [int(c.frames) for c in clips]
        short = [c.clip_id for c in clips if c.frames < 2]
        if short:
            raise TrainingDataError(f"clips with fewer than 2 frames cannot give a pair: {', '.join(short)}")
        if not self.frame_counts:
            raise TrainingDataError("no training clips")
        self.batch_size, self.seed, self.rank = int(batch_size), int(seed), int(rank)
        self.start_step, self.micro_batches, self.steps = int(start_step), int(micro_batches), steps

    def picks(self, step: int, micro: int = 0) -> list[tuple[int, int, int]]:
        return pair_picks(self.frame_counts, self.batch_size, self.seed, step, self.rank, micro)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        step = self.start_step
        while self.steps is None or step < self.steps:
            for micro in range(self.micro_batches):
                yield self.picks(step, micro)
            step += 1

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an endless PairBatches has no length; give steps=")
        return max(0, self.steps - self.start_step) * self.micro_batches


class FramePairs(Dataset):
    """Map-style dataset indexed by (clip, source frame, target frame): the two frames as
    uint8 (size, size, 3) tensors, decoded by seeking (``media.read_frames_at``), and the
    target's (3, 4) float32 eye/eye/mouth boxes (NaN without ``regions_root``: runs whose eye
    and mouth loss weights are zero need no landmarks).

    A clip whose file decodes, to its end without an error, fewer frames than its catalog row
    says (a truncated file) does not stop training: indices past its decodable end read its
    last decodable frame, with a warning once per clip (per worker process). A clip that
    decodes no frame, or whose decode fails part-way, raises ``TrainingDataError``."""

    def __init__(self, clips: Sequence[TrainingClip], size: int, regions_root: str | Path | None = None,
                 margin: float = 0.25):
        self.clips, self.size, self.margin = list(clips), int(size), float(margin)
        self.regions_root = Path(regions_root) if regions_root is not None else None
        if self.regions_root is not None:
            missing = [c.clip_id for c in self.clips if not regions_path(self.regions_root, c).is_file()]
            if missing:
                raise TrainingDataError(f"{self.regions_root}: no eye/mouth regions for {len(missing)} clip(s) "
                                        f"({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}); "
                                        "run prepare_regions before training")
        self._decodable: dict[int, int] = {}  # clip index -> frames its file decodes, for short files only

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, pick: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c, s, t = pick
        clip = self.clips[c]
        if c in self._decodable:
            s, t = (min(i, self._decodable[c] - 1) for i in (s, t))
        try:
            frames = media.read_frames_at(clip.path, [s, t], fps=clip.fps, size=self.size)
        except MediaError:
            if c in self._decodable or max(s, t) < self._decodable_frames(c):
                raise  # not (only) a short file: a corrupt stream inside the decodable part
            return self[c, s, t]
        if self.regions_root is None:
            boxes = np.full((3, 4), np.nan, np.float32)
        else:
            boxes = clip_boxes(self.regions_root, clip, self.size, self.margin)[t]
        return torch.from_numpy(frames[0]), torch.from_numpy(frames[1]), torch.from_numpy(boxes)

    def _decodable_frames(self, c: int) -> int:
        """How many frames clip ``c``'s file decodes at its fps (one full decode, at a tiny size);
        remembered, so later picks of the clip are clamped before reading. Only a decode that
        reaches the end of the file counts: one that fails on the way (a read error, a corrupt
        packet) raises and records nothing, since clamping then would hide a healthy clip's
        later frames for the life of the worker."""
        clip = self.clips[c]
        count = 0
        try:
            for _ in media.iter_frames(clip.path, fps=clip.fps, size=16):
                count += 1
        except MediaError as exc:
            if count == 0:
                raise TrainingDataError(f"{clip.path}: clip {clip.clip_id} decodes no frame ({exc})") from exc
            raise TrainingDataError(f"{clip.path}: clip {clip.clip_id} fails to decode at frame {count} of "
                                    f"{clip.frames} at {clip.fps:g} fps ({exc}); a read error or a corrupt "
                                    "stream, not a short file, so no pick is clamped") from exc
        if count == 0:
            raise TrainingDataError(f"{clip.path}: clip {clip.clip_id} decodes no frame")
        self._decodable[c] = min(count, clip.frames)
        if count < clip.frames:
            log.warning("%s: decodes %d frames but its catalog row says %d; picks past frame %d read frame %d",
                        clip.path, count, clip.frames, count - 1, count - 1)
        return count


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # decoding threads are PyAV's; torch ops here are tiny


def pair_loader(clips: Sequence[TrainingClip], size: int, batch_size: int, seed: int, rank: int = 0,
                start_step: int = 0, workers: int = 2, regions_root: str | Path | None = None, margin: float = 0.25,
                micro_batches: int = 1, steps: int | None = None, prefetch: int = 2) -> DataLoader:
    """A DataLoader over ``FramePairs`` whose batches are ``PairBatches``' picks, in order:
    (src, tgt, boxes) with src/tgt uint8 (B, size, size, 3) and boxes float32 (B, 3, 4).
    ``workers`` decoding processes (0: in this process). Turn a batch into model tensors on
    the device with ``batch_to_model``."""
    dataset = FramePairs(clips, size, regions_root, margin)
    sampler = PairBatches(clips, batch_size, seed, rank, start_step, micro_batches, steps)
    options = {"prefetch_factor": prefetch, "persistent_workers": True, "worker_init_fn": _worker_init} if workers else {}
    return DataLoader(dataset, batch_sampler=sampler, num_workers=int(workers),
                      pin_memory=torch.cuda.is_available(), **options)


def batch_to_model(batch, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(src, tgt, boxes) of ``pair_loader`` -> float (B, 3, S, S) in [-1, 1] on ``device`` (as
    ``tokenizer.to_model``, converted there: uint8 crosses to the GPU, 4x less than float)."""
    src, tgt, boxes = batch
    device = torch.device(device)

    def to_model(frames: torch.Tensor) -> torch.Tensor:
        return frames.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    return to_model(src), to_model(tgt), boxes.to(device, non_blocking=True)
