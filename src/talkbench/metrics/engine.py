"""The evaluation engine: one pass per clip.

Each clip is decoded once at the protocol's fps and resolution (generated and ground truth),
face analysis runs once per frame and is shared by CSIM, LMD and MSI, and frames stream into
the FID/FVD accumulators, whose float64 sums merge by addition (``Evaluator.merge``), so a
folder split over many workers gives the same numbers as one process.

Metrics whose weights are not installed, or which need an input that was not given (the
ground truth for SSIM/LPIPS/LMD/FID/FVD, a portrait or ground truth for CSIM), are reported as
unavailable with the reason while the others run. Frames without a face are skipped by the face
metrics and counted; a clip without any face gets the face metrics as unavailable.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import platformdirs

from talkbench import media, weights
from talkbench.errors import MetricError, TalkbenchError
from talkbench.face import available_backends, get_backend
from talkbench.face.types import analyse_image, pick_main_face
from talkbench.metrics import cpbd, csim, fid, fvd, lmd, lpips, msi, ssim
from talkbench.metrics.bitrate import measured_bitrate
from talkbench.metrics.registry import get_metric
from talkbench.protocol import Protocol

DEFAULT_METRICS = ("ssim", "lpips", "csim", "lmd", "cpbd", "msi", "fid", "fvd")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# dlib's ResNet costs ~65 ms a frame on this class of CPU, 10× everything else together;
# identity is constant within a clip, so every 5th frame (5 per second) estimates its mean.
DLIB_CSIM_STRIDE = 5


def stats_cache_dir() -> Path:
    """Cached ground-truth FID/FVD statistics: ``$TALKBENCH_STATS_DIR`` or the user cache."""
    override = os.environ.get("TALKBENCH_STATS_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("talkbench")) / "stats"


_LOADED: dict[str, object] = {}


def _load_model(name: str):
    """Networks from the weights manager, loaded once per process and shared by evaluators."""
    if name not in _LOADED:
        if name == "lpips":
            _LOADED[name] = lpips.LPIPS()
        elif name == "fid":
            _LOADED[name] = fid.load_feature_extractor()
        elif name == "fvd":
            _LOADED[name] = fvd.load_detector()
        elif name == "arcface":
            from talkbench.metrics.arcface import ArcFace

            _LOADED[name] = ArcFace()
        else:
            raise ValueError(f"no model called {name!r}")
    return _LOADED[name]


@dataclass(frozen=True)
class EvalSettings:
    metrics: tuple[str, ...] = DEFAULT_METRICS
    resolution: int = 256
    fps: float = media.DEFAULT_FPS
    face_backend: str = "dlib"
    identity_backend: str = "dlib"  # "dlib" or "arcface"
    csim_reference: str = "auto"  # "portrait", "ground-truth-frame", or "auto": portrait when given
    csim_frame_stride: int | None = None  # None: DLIB_CSIM_STRIDE for dlib, 1 for arcface
    fid_frame_stride: int = 1
    fvd_max_clips_per_video: int | None = None
    seed: int = 0
    cache_reference_stats: bool = True

    def csim_stride(self) -> int:
        if self.csim_frame_stride is not None:
            return self.csim_frame_stride
        return DLIB_CSIM_STRIDE if self.identity_backend == "dlib" else 1


@dataclass
class FaceTrack:
    """Face analysis of every frame of one video, shared by CSIM, LMD and MSI."""

    landmarks: np.ndarray  # (T, 68, 2) float64, NaN where no face
    valid: np.ndarray  # (T,) bool
    sizes: np.ndarray  # (T,) face box side in pixels, NaN where no face
    boxes: list
    digests: list[bytes]  # (T,) each frame's content hash: equal frames are analysed once
    # Identity embeddings of the frames CSIM sampled, by (identity model, frame digest): a
    # reference track is shared by every method scored against it, so each is computed once.
    embeddings: dict[tuple[str, object, bytes], np.ndarray] = field(default_factory=dict)

    @property
    def missing(self) -> int:
        return int((~self.valid).sum())


_TRACKS: OrderedDict[tuple, FaceTrack] = OrderedDict()
TRACK_CACHE_SIZE = 64  # clips; a track is ~100 kB


def frame_digest(frame: np.ndarray) -> bytes:
    digest = hashlib.blake2b(str((frame.shape, frame.dtype.str)).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(frame).data)
    return digest.digest()


def face_track(frames: np.ndarray, backend) -> FaceTrack:
    """``analyse_frames``, remembered by content: a leaderboard scores many methods against the
    same ground truth (and the ground-truth method is its own reference), so each reference
    clip is analysed once per process."""
    # the backend object itself, not its id(): the key holds it, so its address is never reused
    key = (backend.name, backend, frames.shape, hashlib.blake2b(np.ascontiguousarray(frames).data, digest_size=16).hexdigest())
    if key in _TRACKS:
        _TRACKS.move_to_end(key)
        return _TRACKS[key]
    track = _TRACKS[key] = analyse_frames(frames, backend)
    for array in (track.landmarks, track.valid, track.sizes):
        array.flags.writeable = False  # shared between callers
    if len(_TRACKS) > TRACK_CACHE_SIZE:
        _TRACKS.popitem(last=False)
    return track


def analyse_frames(frames: np.ndarray, backend) -> FaceTrack:
    """Detect the main face and its 68 landmarks in every frame. A frame equal to an earlier
    one (a still portrait, a frozen video) gets that frame's result without a second analysis."""
    landmarks = np.full((len(frames), 68, 2), np.nan)
    sizes = np.full(len(frames), np.nan)
    boxes, digests, first_of = [], [], {}
    for i, frame in enumerate(frames):
        digest = frame_digest(frame)
        digests.append(digest)
        if digest in first_of:
            j = first_of[digest]
            boxes.append(boxes[j])
            landmarks[i], sizes[i] = landmarks[j], sizes[j]
            continue
        first_of[digest] = i
        # analyse_image's steps without its per-call model hashing (the engine records the
        # backend's hashes once per clip)
        box, _ = pick_main_face(backend.detect(frame))
        boxes.append(box)
        if box is not None:
            landmarks[i] = backend.landmarks(frame, box)
            sizes[i] = box.size
    return FaceTrack(landmarks, ~np.isnan(sizes), sizes, boxes, digests)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise MetricError(f"{path}: cannot read the portrait image ({exc})") from exc


def _module_fingerprint(model) -> str:
    """A caller-supplied network by content (its tensors), for the statistics cache key."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    state = model.state_dict() if isinstance(model, torch.nn.Module) else {}
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest() if state else f"{type(model).__name__}@{id(model)}"


def _file_key(path: Path) -> str:
    return f"{path.name}:{weights.file_sha256(path)}"


class Evaluator:
    """Runs the metrics over clips and holds the distribution accumulators.

    Use ``evaluate_clip`` for each clip, then ``result()``; ``merge`` adds another evaluator's
    accumulators (from another worker) to this one.
    """

    def __init__(self, settings: EvalSettings = EvalSettings(), models: dict[str, object] | None = None):
        """``models`` supplies loaded networks by name ("lpips", "fid", "fvd", "arcface"), e.g.
        ones built from weights that are not in the weights manager; the protocol then records
        their weights as ``caller-supplied``."""
        self.settings = settings
        for name in settings.metrics:
            get_metric(name)  # unknown names fail here, with the list of known ones
        if settings.identity_backend not in ("dlib", "arcface"):
            raise ValueError(f"unknown identity backend {settings.identity_backend!r}; use dlib or arcface")
        if settings.face_backend not in available_backends():
            raise ValueError(f"unknown face backend {settings.face_backend!r}; use {' or '.join(available_backends())}")
        if settings.csim_reference not in ("auto", "portrait", "ground-truth-frame"):
            raise ValueError(f"unknown CSIM reference {settings.csim_reference!r}; use auto, portrait or ground-truth-frame")
        self.unavailable: dict[str, str] = {}
        self.clips: list[dict] = []
        self.errors: list[dict] = []
        self.fid_generated = fid.GaussianStats.empty(fid.DIMS)
        self.fid_reference = fid.GaussianStats.empty(fid.DIMS)
        self.fvd_generated = fid.GaussianStats.empty(fvd.FEATURES)
        self.fvd_reference = fid.GaussianStats.empty(fvd.FEATURES)
        self.reference_stats_cached = False
        self._models: dict[str, object] = dict(models or {})
        self._portraits: dict[str, np.ndarray | None] = {}
        self._face_models_sha256: dict[str, str] = {}
        self._csim_references: set[str] = set()  # what "auto" resolved to, clip by clip
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.frames = 0
        self._check_weights()

    # -- setup -------------------------------------------------------------------------------

    def _needed_weights(self) -> dict[str, list[str]]:
        needed = {name: list(get_metric(name).weights) for name in self.settings.metrics if name not in self._models}
        if "csim" in self.settings.metrics and self.settings.identity_backend == "arcface" and "arcface" not in self._models:
            needed["csim"] = needed.get("csim", []) + ["arcface-r100"]
        if self.settings.face_backend == "fan" and "face" not in self._models:
            for name in ("csim", "lmd", "msi"):
                if name in self.settings.metrics:
                    needed[name] = needed.get(name, []) + ["fan-2d"]
        return needed

    def _check_weights(self) -> None:
        for name, names in self._needed_weights().items():
            for weight in names:
                status = weights.status(weight)
                if status.state in ("missing", "bad-hash"):
                    self.unavailable[name] = status.detail
                    break

    def wants(self, name: str) -> bool:
        return name in self.settings.metrics and name not in self.unavailable

    def _model(self, name: str):
        if name in self._models:
            return self._models[name]
        if name == "face":
            return get_backend(self.settings.face_backend)
        return _load_model(name)

    def protocol(self) -> Protocol:
        s = self.settings
        used_weights = {}
        for names in self._needed_weights().values():
            for weight in names:
                if weights.is_available(weight):
                    used_weights[weight] = weights.weight_sha256(weight)
        for name in self._models:
            used_weights[f"{name} (model)"] = "caller-supplied"
        return Protocol(
            resolution=s.resolution,
            fps=s.fps,
            metric_versions={name: get_metric(name).version for name in s.metrics},
            weights_sha256=used_weights,
            face_backend=s.face_backend,
            face_models_sha256=dict(self._face_models_sha256),
            identity_backend=s.identity_backend,
            csim_reference=self._csim_reference_used(),
            csim_frame_stride=s.csim_stride(),
            fid_frame_stride=s.fid_frame_stride,
            fvd_max_clips_per_video=s.fvd_max_clips_per_video,
            seed=s.seed,
            frame_counts={c["id"]: c["frames"] for c in self.clips},
        )

    def _csim_reference_used(self) -> str:
        """The identity reference CSIM was measured against: portrait and ground-truth-frame
        values differ systematically, so a run that used both says so in its protocol."""
        used = sorted(self._csim_references)
        if not used:
            return self.settings.csim_reference
        return used[0] if len(used) == 1 else "mixed:" + "+".join(used)

    # -- one clip ----------------------------------------------------------------------------

    def _frames(self, source: str | Path | np.ndarray) -> np.ndarray:
        if isinstance(source, np.ndarray):
            r = self.settings.resolution
            if source.ndim != 4 or source.shape[1:] != (r, r, 3) or source.dtype != np.uint8:
                raise MetricError(f"frames must be uint8 (T, {r}, {r}, 3) at the protocol resolution, got {source.shape}")
            return source
        return media.read_frames(source, fps=self.settings.fps, size=self.settings.resolution)

    def _portrait(self, portrait: str | Path | np.ndarray) -> np.ndarray:
        if isinstance(portrait, np.ndarray):
            return portrait
        return _read_image(Path(portrait))

    def evaluate_clip(
        self,
        clip_id: str,
        generated: str | Path | np.ndarray,
        reference: str | Path | np.ndarray | None = None,
        portrait: str | Path | np.ndarray | None = None,
    ) -> dict:
        """Every selected metric of one clip; updates the FID/FVD accumulators."""
        start, cpu_start = time.perf_counter(), time.process_time()
        s = self.settings
        gen = self._frames(generated)
        ref = self._frames(reference) if reference is not None else None
        counts = {"generated": len(gen), "reference": len(ref) if ref is not None else None}
        if ref is not None:
            if abs(len(gen) - len(ref)) > 2:
                raise MetricError(
                    f"{generated if not isinstance(generated, np.ndarray) else 'generated frames'} has {len(gen)} frames "
                    f"but {reference if not isinstance(reference, np.ndarray) else 'reference frames'} has {len(ref)} "
                    f"at {s.fps:g} fps; the protocol allows a difference of at most 2"
                )
            n = min(len(gen), len(ref))
            whole_reference = ref  # FID/FVD: every ground-truth frame, whatever a method generated
            gen, ref = gen[:n], ref[:n]
        counts["compared"] = len(gen)
        values: dict[str, float] = {}
        unavailable: dict[str, str] = {}

        def skip(name: str, reason: str) -> None:
            if name in s.metrics:
                unavailable[name] = self.unavailable.get(name, reason)

        for name in s.metrics:
            if name in self.unavailable:
                unavailable[name] = self.unavailable[name]
        paired = ("ssim", "lpips", "lmd", "fid", "fvd")
        if ref is None:
            for name in paired:
                skip(name, "no ground-truth video given")

        if ref is not None and self.wants("ssim"):
            values["ssim"] = float(ssim.ssim_frames(gen, ref).mean())
        if ref is not None and self.wants("lpips"):
            values["lpips"] = float(lpips.lpips_frames(self._model("lpips"), gen, ref).mean())
        if self.wants("cpbd"):
            values["cpbd"] = float(cpbd.cpbd_frames(gen).mean())
        if self.wants("bitrate"):
            if isinstance(generated, np.ndarray):
                skip("bitrate", "generated frames were given as an array, not an encoded file")
            else:
                values["bitrate_kbps"] = measured_bitrate(generated) / 1000

        faces = self._face_metrics(gen, ref, portrait, values, unavailable, skip)
        if ref is not None:
            self._stream_distributions(gen, whole_reference)

        self.seconds += time.perf_counter() - start
        self.cpu_seconds += time.process_time() - cpu_start
        self.frames += len(gen)
        record = {
            "id": clip_id,
            "generated": str(generated) if not isinstance(generated, np.ndarray) else None,
            "reference": str(reference) if reference is not None and not isinstance(reference, np.ndarray) else None,
            "frames": counts,
            "faces": faces,
            "values": values,
            "unavailable": unavailable,
        }
        self.clips.append(record)
        return record

    def _face_metrics(self, gen, ref, portrait, values, unavailable, skip) -> dict:
        s = self.settings
        wanted = [m for m in ("csim", "lmd", "msi") if self.wants(m)]
        if ref is None:
            wanted = [m for m in wanted if m != "lmd"]
        mode = s.csim_reference
        if mode == "auto":
            mode = "portrait" if portrait is not None else "ground-truth-frame"
        if "csim" in wanted and mode == "portrait" and portrait is None:
            skip("csim", "CSIM against the source portrait needs --source-portrait")
            wanted.remove("csim")
        if "csim" in wanted and mode == "ground-truth-frame" and ref is None:
            skip("csim", "CSIM needs a source portrait or the ground-truth video")
            wanted.remove("csim")
        if not wanted:
            return {}
        if "csim" in wanted:
            self._csim_references.add(mode)
        backend = self._model("face")
        gen_track = face_track(gen, backend)
        need_ref_track = ref is not None and ("lmd" in wanted or ("csim" in wanted and mode == "ground-truth-frame"))
        ref_track = face_track(ref, backend) if need_ref_track else None
        faces = {"generated_frames_without_face": gen_track.missing}
        if ref_track is not None:
            faces["reference_frames_without_face"] = ref_track.missing

        if not gen_track.valid.any():
            for m in wanted:
                skip(m, "no face found in any generated frame")
            return faces
        if "msi" in wanted:
            got = msi.msi_values(gen_track.landmarks, gen_track.valid, gen_track.sizes)
            if got["msi"] is None:
                skip("msi", "fewer than 3 consecutive frames with a face")
            else:
                values.update(got)
        if "lmd" in wanted:
            both = gen_track.valid & ref_track.valid
            if not both.any():
                skip("lmd", "no frame index where both the generated and the ground-truth frame have a face")
            else:
                values.update(lmd.lmd_values(gen_track.landmarks[both], ref_track.landmarks[both]))
                faces["lmd_frames"] = int(both.sum())
        if "csim" in wanted:
            self._csim(gen, ref, portrait, mode, gen_track, ref_track, values, skip, faces)
        self._face_models_sha256.update(backend.model_sha256())
        return faces

    def _embed(self, image: np.ndarray, box, landmarks: np.ndarray) -> np.ndarray:
        if self.settings.identity_backend == "arcface":
            return self._model("arcface").embed(image, landmarks)
        return self._model("face").embedding(image, box, landmarks)

    def _embed_frame(self, frames: np.ndarray, track: FaceTrack, i: int) -> np.ndarray:
        model = self._model("arcface" if self.settings.identity_backend == "arcface" else "face")
        key = (self.settings.identity_backend, model, track.digests[i])  # the model itself, as in face_track
        if key not in track.embeddings:
            track.embeddings[key] = self._embed(frames[i], track.boxes[i], track.landmarks[i])
        return track.embeddings[key]

    def _csim(self, gen, ref, portrait, mode, gen_track, ref_track, values, skip, faces) -> None:
        stride = self.settings.csim_stride()
        indices = [i for i in range(0, len(gen), stride) if gen_track.valid[i]]
        if mode == "portrait":
            if isinstance(portrait, np.ndarray):
                key = hashlib.sha256(np.ascontiguousarray(portrait).tobytes()).hexdigest()
            else:
                key = str(portrait)
            if key not in self._portraits:
                image = self._portrait(portrait)
                found = analyse_image(image, self._model("face"), landmarks=True)
                self._portraits[key] = self._embed(image, found.box, found.landmarks) if found.found else None
            identity = self._portraits[key]
            if identity is None:
                skip("csim", f"no face found in the source portrait {portrait}")
                return
            targets = [identity] * len(indices)
        else:
            indices = [i for i in indices if ref_track.valid[i]]
            targets = [self._embed_frame(ref, ref_track, i) for i in indices]
        if not indices:
            skip("csim", "no sampled frame with a face")
            return
        embeddings = [self._embed_frame(gen, gen_track, i) for i in indices]
        sims = csim.cosine_similarity(np.stack(embeddings), np.stack(targets))
        values[f"csim_{self.settings.identity_backend}"] = float(sims.mean())
        faces["csim_frames"] = len(indices)

    def _stream_distributions(self, gen: np.ndarray, ref: np.ndarray) -> None:
        s = self.settings
        if self.wants("fid"):
            model = self._model("fid")
            self.fid_generated.update(fid.inception_features(model, gen[:: s.fid_frame_stride]))
            if not self.reference_stats_cached:
                self.fid_reference.update(fid.inception_features(model, ref[:: s.fid_frame_stride]))
        if self.wants("fvd"):
            detector = self._model("fvd")
            cap = s.fvd_max_clips_per_video
            self.fvd_generated.update(fvd.i3d_features(detector, fvd.sample_clips(gen, max_clips=cap)))
            if not self.reference_stats_cached:
                self.fvd_reference.update(fvd.i3d_features(detector, fvd.sample_clips(ref, max_clips=cap)))

    # -- many clips --------------------------------------------------------------------------

    def merge(self, other: Evaluator) -> None:
        """Add another evaluator's clips and accumulators (same settings) to this one."""
        if other.settings != self.settings:
            raise ValueError("cannot merge evaluators with different settings")
        self.clips += other.clips
        self.errors += other.errors
        self._face_models_sha256.update(other._face_models_sha256)
        self._csim_references |= other._csim_references
        self.fid_generated = self.fid_generated.merge(other.fid_generated)
        self.fvd_generated = self.fvd_generated.merge(other.fvd_generated)
        if not self.reference_stats_cached:
            self.fid_reference = self.fid_reference.merge(other.fid_reference)
            self.fvd_reference = self.fvd_reference.merge(other.fvd_reference)
        self.seconds += other.seconds
        self.cpu_seconds += other.cpu_seconds
        self.frames += other.frames

    def _stats_cache_file(self, kind: str, references: list[Path]) -> Path:
        """Ground-truth statistics depend on the reference files, the frame sampling and the
        feature network, nothing else (not on the other metrics, faces or generated lengths)."""
        p = self.protocol().hashed_dict()
        depends = {k: p[k] for k in ("name", "resolution", "fps", "resize_interpolation", "crop", "seed",
                                     "fid_frame_stride", "fvd_clip_frames", "fvd_clip_stride", "fvd_max_clips_per_video")}
        depends["metric_version"] = p["metric_versions"].get(kind)
        depends["weights"] = {w: p["weights_sha256"].get(w) for w in get_metric(kind).weights}
        if kind in self._models:
            depends["weights"] = {"caller-supplied": _module_fingerprint(self._models[kind])}
        key = json.dumps({"kind": kind, "protocol": depends, "references": sorted(_file_key(p) for p in references)},
                         sort_keys=True, default=str)  # fmt: skip
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return stats_cache_dir() / f"{kind}-{digest}.npz"

    def load_reference_stats(self, references: list[Path]) -> bool:
        """Use cached ground-truth FID/FVD statistics for exactly these files and protocol."""
        files = {k: self._stats_cache_file(k, references) for k in ("fid", "fvd") if self.wants(k)}
        if not files or not all(f.is_file() for f in files.values()):
            return False
        if "fid" in files:
            self.fid_reference = fid.GaussianStats.from_npz(files["fid"])
        if "fvd" in files:
            self.fvd_reference = fid.GaussianStats.from_npz(files["fvd"])
        self.reference_stats_cached = True
        return True

    def save_reference_stats(self, references: list[Path]) -> None:
        for kind, stats in (("fid", self.fid_reference), ("fvd", self.fvd_reference)):
            if self.wants(kind) and stats.count:
                path = self._stats_cache_file(kind, references)
                path.parent.mkdir(parents=True, exist_ok=True)
                stats.to_npz(path)

    def distribution_values(self) -> tuple[dict, dict]:
        values, unavailable = {}, {}
        for kind, gen, ref, distance in (
            ("fid", self.fid_generated, self.fid_reference, fid.fid_from_stats),
            ("fvd", self.fvd_generated, self.fvd_reference, fvd.fvd_from_stats),
        ):
            if kind not in self.settings.metrics:
                continue
            if kind in self.unavailable:
                unavailable[kind] = self.unavailable[kind]
            elif gen.count < 2 or ref.count < 2:
                unavailable[kind] = f"needs at least 2 samples on each side, have {gen.count} generated, {ref.count} reference"
            else:
                values[kind] = distance(gen, ref)
                values[f"{kind}_samples"] = {"generated": gen.count, "reference": ref.count}
        return values, unavailable

    def result(self) -> dict:
        """Per-clip values, aggregates (mean over clips), distribution metrics and the protocol."""
        aggregates: dict[str, dict] = {}
        names = sorted({k for c in self.clips for k in c["values"]})
        for name in names:
            got = [c["values"][name] for c in self.clips if name in c["values"]]
            aggregates[name] = {"mean": float(np.mean(got)), "clips": len(got)}
        distribution, dist_unavailable = self.distribution_values()
        protocol = self.protocol()
        return {
            "protocol": protocol.to_dict(),
            "protocol_sha256": protocol.sha256(),
            "clips": self.clips,
            "aggregates": aggregates,
            "distribution": distribution,
            "unavailable": {**self.unavailable, **dist_unavailable},
            "errors": self.errors,
            "timing": {
                "seconds": self.seconds,
                "frames": self.frames,
                "cpu_seconds": self.cpu_seconds,
                "ms_per_frame": 1000 * self.seconds / self.frames if self.frames else None,
                "cpu_ms_per_frame": 1000 * self.cpu_seconds / self.frames if self.frames else None,
                "reference_stats_cached": self.reference_stats_cached,
            },
        }


# -- public entry points ---------------------------------------------------------------------


def evaluate_pair(
    generated: str | Path | np.ndarray,
    reference: str | Path | np.ndarray | None = None,
    portrait: str | Path | np.ndarray | None = None,
    settings: EvalSettings = EvalSettings(),
    clip_id: str | None = None,
    models: dict[str, object] | None = None,
) -> dict:
    """Evaluate one generated video (path or uint8 frames) against its ground truth and/or the
    source portrait. Returns plain dicts: ``clips`` (one), ``aggregates``, ``distribution``
    (FID/FVD over this clip's frames), ``unavailable``, ``protocol`` and ``protocol_sha256``."""
    evaluator = Evaluator(settings, models)
    name = clip_id or (Path(generated).stem if not isinstance(generated, np.ndarray) else "clip")
    evaluator.evaluate_clip(name, generated, reference, portrait)
    return evaluator.result()


def _videos(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES}


def match_folders(generated: Path, reference: Path | None, portrait: Path | None) -> list[tuple[str, Path, Path | None, Path | None]]:
    """(clip id, generated, reference, portrait) by file stem. Every generated clip must have a
    ground truth when a reference folder is given; a portrait may be one image for all clips."""
    gen = _videos(generated)
    if not gen:
        raise MetricError(f"{generated}: no video files ({', '.join(VIDEO_SUFFIXES)})")
    refs = _videos(reference) if reference is not None else {}
    if reference is not None:
        missing = sorted(set(gen) - set(refs))
        if missing:
            raise MetricError(f"{reference}: no ground truth for generated clips {', '.join(missing[:10])}")
    portraits: dict[str, Path] = {}
    if portrait is not None and portrait.is_dir():
        portraits = {p.stem: p for p in sorted(portrait.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    return [
        (cid, path, refs.get(cid), portraits.get(cid) if portrait is not None and portrait.is_dir() else portrait)
        for cid, path in gen.items()
    ]


def evaluate_pairs(
    pairs: Iterable[tuple[str, Path | np.ndarray, Path | np.ndarray | None, Path | np.ndarray | None]],
    settings: EvalSettings = EvalSettings(),
    progress: Callable[[int, int, str], None] | None = None,
    models: dict[str, object] | None = None,
) -> dict:
    """Evaluate (clip id, generated, reference, portrait) tuples as one benchmark: per-clip
    values, means over clips, FID/FVD over all frames, and the protocol. Ground-truth FID/FVD
    statistics are cached per exact set of reference files and protocol."""
    pairs = list(pairs)
    evaluator = Evaluator(settings, models)
    references = [r for _, _, r, _ in pairs if isinstance(r, Path)]
    cacheable = settings.cache_reference_stats and references and len(references) == len(pairs)
    if cacheable:
        evaluator.load_reference_stats(references)
    for done, (cid, gen, ref, portrait) in enumerate(pairs):
        if progress:
            progress(done, len(pairs), cid)
        try:
            evaluator.evaluate_clip(cid, gen, ref, portrait)
        except TalkbenchError as exc:
            evaluator.errors.append({"id": cid, "error": str(exc)})
    if progress:
        progress(len(pairs), len(pairs), "")
    if cacheable and not evaluator.reference_stats_cached and not evaluator.errors:
        evaluator.save_reference_stats(references)
    return evaluator.result()


def evaluate_folders(
    generated: str | Path,
    reference: str | Path | None = None,
    portrait: str | Path | None = None,
    settings: EvalSettings = EvalSettings(),
    progress: Callable[[int, int, str], None] | None = None,
    models: dict[str, object] | None = None,
) -> dict:
    """Evaluate a folder of generated videos against a folder of ground truths matched by file
    stem (and/or portraits: a folder matched by stem, or one image for all)."""
    pairs = match_folders(Path(generated), Path(reference) if reference else None, Path(portrait) if portrait else None)
    return evaluate_pairs(pairs, settings, progress, models)


def with_metrics(settings: EvalSettings, metrics: Iterable[str]) -> EvalSettings:
    return replace(settings, metrics=tuple(metrics))
