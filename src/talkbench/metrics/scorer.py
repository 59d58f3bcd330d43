"""Scoring one ground truth or one clip: the selected metrics, loaded, with the face backend
and the identity model, planned from what the metric modules declare.

``Scorer.analyse_reference`` analyses a ground truth once for every method (face track,
identity embeddings, FID/FVD feature rows of all its frames); ``Scorer.score`` streams one
(method, clip) job in batches of ``BATCH`` frames through the face analysis and every metric's
``update``. Both read and write the on-disk analysis cache (``talkbench.metrics.cache``).
"""

from __future__ import annotations

import ctypes
import importlib.util
import itertools
import logging
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from talkbench import media, weights
from talkbench.errors import MediaError, MetricError, WeightsError
from talkbench.face import get_backend
from talkbench.face.types import analyse_image
from talkbench.metrics import bootstrap, cache
from talkbench.metrics.analysis import ANALYSIS_VERSION, ArcFaceIdentity, DlibIdentity, FaceTrack, VideoAnalyser, face_backend_key
from talkbench.metrics.base import Batch, ClipInfo, DistributionMetric, FrameMeans, Metric, ModelSource, Need, Unavailable
from talkbench.metrics.registry import metric_class
from talkbench.metrics.results import ClipResult, FrameCounts
from talkbench.metrics.settings import EvalSettings
from talkbench.protocol import Protocol

BATCH = 64  # frames per batch: a multiple of every metric's window (FVD: 16)
FACE_BACKEND_WEIGHTS = {"fan": ("fan-2d",)}  # supplied as models["face"]
# supplied as models[backend name]
IDENTITY_BACKEND_WEIGHTS = {"arcface": ("arcface-r100",), "insightface": ("insightface-w600k-r50",)}
# Optional modules (the "metrics" extra) the identity backends import; pip names where they differ.
IDENTITY_BACKEND_MODULES = {"arcface": ("cv2",), "insightface": ("cv2", "onnxruntime")}
PIP_NAMES = {"cv2": "opencv-python-headless"}
MAX_FRAME_DIFFERENCE = 2
# glibc's malloc: blocks of at least this many bytes get their own mapping (see keep_heap_flat)
MMAP_THRESHOLD = 128 * 1024
M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
log = logging.getLogger(__name__)


def keep_heap_flat() -> None:
    """Fix glibc malloc's mmap threshold at ``MMAP_THRESHOLD`` for this process.

    By default glibc raises the threshold to the size of each large block freed, so after the
    first decoded frame is freed, frames (192 KiB at 256²) and the face backend's image
    buffers come from the heap. The per-frame analysis that outlives them (landmarks, memo
    entries) then lands in the holes they leave, each pinning a frame-sized gap the next frame
    does not fit in: ``talkbench eval``'s peak grew ~230 MiB per minute of video (150 KiB a
    frame) with no frame held. A fixed threshold keeps every large block in its own mapping,
    returned when freed: ~8 MiB per minute, the per-frame analysis itself
    (``benchmarks/eval_memory.py``). A no-op off glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # a libc without mallopt keeps its own policy
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


@dataclass(frozen=True)
class ClipJob:
    """One method's output for one clip. ``group`` splits FID/FVD (e.g. by language family).
    ``audio`` is the driving speech (a wav or any media file); when None, lip-sync metrics use
    the generated file's own audio track. ``emotion`` is the clip's label (MEAD's names)."""

    method: str
    clip_id: str
    generated: Path | np.ndarray
    reference: Path | np.ndarray | None = None
    portrait: Path | np.ndarray | None = None
    group: str = "all"
    audio: Path | None = None
    emotion: str | None = None


@dataclass
class ReferenceAnalysis:
    """A ground truth analysed once for every method scored against it."""

    frames: int
    faces: FaceTrack | None
    identity: np.ndarray | None
    features: dict[str, np.ndarray] = field(default_factory=dict)  # distribution metric → rows
    error: str | None = None

    def for_clips(self) -> ReferenceAnalysis:
        """What the clip tasks need (feature rows stay with the caller)."""
        return replace(self, features={})


@dataclass
class ClipOutcome:
    result: ClipResult | None
    features: dict[str, np.ndarray] = field(default_factory=dict)
    error: str | None = None


def _content_key(source: Path | np.ndarray | None) -> str | None:
    return None if source is None else cache.content_sha256(source)


class Scorer:
    """The selected metrics, loaded, with the face backend and identity model: scores one
    reference or one clip at a time. One per process."""

    def __init__(self, settings: EvalSettings, supplied: dict[str, object] | None = None) -> None:
        settings.check()
        self.settings = settings
        self.supplied = dict(supplied or {})
        self.metrics: dict[str, Metric] = {}
        for name in settings.metrics:
            self.metrics[name] = metric_class(name)(settings)
            window = getattr(self.metrics[name], "window", 1)
            if BATCH % window:
                raise ValueError(f"{name}: batches of {BATCH} frames would not start on its {window}-frame windows")
        self.unavailable = self._unavailable_metrics()
        self.load_failures: dict[str, str] = {}  # metric → why its weights did not load: never cached
        self._loaded = False
        self._backend = None
        self._identity = None
        self._portraits: dict[str, np.ndarray | None] = {}
        self._protocol_sha256: str | None = None

    # -- plan --------------------------------------------------------------------------------

    def _needs(self, name: str) -> frozenset[Need]:
        return self.metrics[name].spec.needs

    def uses_faces(self, name: str) -> bool:
        return bool(self._needs(name) & {Need.FACES, Need.REFERENCE_FACES, Need.IDENTITY})

    def _weights_of(self, name: str) -> list[tuple[str, str]]:
        """(weight file, name of the supplied model that replaces it) for one metric: its own,
        and those of the face and identity analysis it needs."""
        s = self.settings
        pairs = [(w, name) for w in self.metrics[name].weights()]
        if self.uses_faces(name):
            pairs += [(w, "face") for w in FACE_BACKEND_WEIGHTS.get(s.face_backend, ())]
        if Need.IDENTITY in self._needs(name):
            pairs += [(w, s.identity_backend) for w in IDENTITY_BACKEND_WEIGHTS.get(s.identity_backend, ())]
        return pairs

    def _modules_of(self, name: str) -> tuple[str, ...]:
        modules = self.metrics[name].spec.modules
        if Need.IDENTITY in self._needs(name):
            modules += IDENTITY_BACKEND_MODULES.get(self.settings.identity_backend, ())
        return modules

    def _unavailable_metrics(self) -> dict[str, str]:
        """Metrics that cannot run here, with why: an optional module not installed, or weights
        missing, with a bad hash, or unpinned and unrecorded. Decided before any clip is read,
        so a missing dependency never fails clip after clip."""
        missing = {}
        for name in self.metrics:
            absent = [m for m in self._modules_of(name) if importlib.util.find_spec(m) is None]
            if absent:
                packages = " and ".join(PIP_NAMES.get(m, m) for m in absent)
                missing[name] = f"needs {packages}: pip install 'talkbench[metrics]'"
                continue
            for weight, supplied_as in self._weights_of(name):
                if supplied_as in self.supplied:
                    continue
                status = weights.status(weight)
                if not status.usable:  # missing, bad-hash, or unpinned and unrecorded
                    missing[name] = status.detail
                    break
        return missing

    def active(self) -> dict[str, Metric]:
        return {n: m for n, m in self.metrics.items() if n not in self.unavailable}

    def protocol(self, csim_references: set[str] | None = None, frame_counts: dict | None = None) -> Protocol:
        s = self.settings
        fields: dict = {}
        for metric in self.metrics.values():
            fields.update(metric.protocol_fields())
        used = {}
        for name in self.metrics:
            for weight, supplied_as in self._weights_of(name):
                if supplied_as in self.supplied:
                    used[f"{supplied_as} (model)"] = "caller-supplied"
                elif weights.is_available(weight):
                    used[weight] = weights.weight_sha256(weight)
        faces = any(self.uses_faces(n) for n in self.metrics)
        csim_used = sorted(csim_references or ())
        csim_reference = None
        if any(Need.IDENTITY in self._needs(n) for n in self.metrics):
            csim_reference = (csim_used[0] if len(csim_used) == 1 else "mixed:" + "+".join(csim_used)) if csim_used else s.csim_reference
        return Protocol(
            name=s.protocol_name,
            resolution=s.resolution,
            fps=s.fps,
            metric_versions={name: m.spec.version for name, m in self.metrics.items()},
            weights_sha256=used,
            face_backend=s.face_backend if faces else None,
            face_models_sha256=self._face_models_sha256() if faces else {},
            csim_reference=csim_reference,
            max_frame_count_difference=MAX_FRAME_DIFFERENCE,
            seed=s.seed,
            bootstrap_level=bootstrap.LEVEL,
            bootstrap_replicates=s.bootstrap_replicates,
            distribution_bootstrap_replicates=s.distribution_bootstrap_replicates,
            frame_counts=dict(frame_counts or {}),
            **fields,
        )

    def _face_models_sha256(self) -> dict[str, str]:
        try:
            return dict(self.backend().model_sha256())
        except Exception:  # noqa: BLE001 - a backend whose weights are missing: its metrics say so
            return {}

    # -- models, loaded on first use -----------------------------------------------------------

    def load(self) -> None:
        """Load the active metrics' networks. Weights that passed their hash check but do not
        load as the network they name make only their metric unavailable, with the loader's
        message (the file and the replace command), like missing weights do."""
        if not self._loaded:
            models = ModelSource(self.supplied)
            for name, metric in self.active().items():
                try:
                    metric.load(models)
                except WeightsError as exc:
                    self.load_failures[name] = str(exc)
            shared = ((self.backend, lambda n: self.uses_faces(n)),  # the face and identity networks
                      (self.identity, lambda n: Need.IDENTITY in self._needs(n)))
            for build, needs in shared:
                users = [n for n in self.active() if needs(n) and n not in self.load_failures]
                if users:
                    try:
                        build()
                    except WeightsError as exc:
                        self.load_failures.update((n, str(exc)) for n in users)
            self.unavailable.update(self.load_failures)
            self._loaded = True

    def backend(self):
        if self._backend is None:
            self._backend = self.supplied.get("face") or get_backend(self.settings.face_backend)
        return self._backend

    def identity(self):
        """The identity embedder; an ArcFace one is keyed by its weights' sha256, or supplied by
        the caller as ``models[backend name]`` (then unkeyed, out of the on-disk cache)."""
        if self._identity is None:
            name = self.settings.identity_backend
            if name == "dlib":
                self._identity = DlibIdentity(self.backend())
            else:
                from talkbench.metrics.arcface import ArcFace, InsightFaceONNX  # imports cv2 (the metrics extra)

                network = {"arcface": ArcFace, "insightface": InsightFaceONNX}[name]
                (weight,) = IDENTITY_BACKEND_WEIGHTS[name]
                model = ModelSource(self.supplied).get(name, network, (weight,))
                key = None if name in self.supplied else f"{name}:{weights.weight_sha256(weight)}"
                self._identity = ArcFaceIdentity(model, key)
        return self._identity

    # -- cache keys ----------------------------------------------------------------------------

    def _frames_key(self, sha: str) -> dict:
        s = self.settings
        return {"video": sha, "resolution": s.resolution, "fps": s.fps, "resize": media.RESIZE_INTERPOLATION,
                "analysis": ANALYSIS_VERSION}  # fmt: skip

    def _faces_key(self, sha: str) -> dict | None:
        backend = face_backend_key(self.backend()) if "face" not in self.supplied else None
        return None if backend is None else {**self._frames_key(sha), "faces": backend}

    def _identity_key(self, sha: str) -> dict | None:
        faces = self._faces_key(sha)
        identity = self.identity().key
        if faces is None or identity is None:
            return None
        return {**faces, "identity": identity, "stride": self.settings.csim_stride()}

    def _features_key(self, sha: str, name: str) -> dict | None:
        if name in self.supplied:
            return None
        metric = self.metrics[name]
        return {**self._frames_key(sha), "metric": name, "version": metric.spec.version,
                "weights": {w: weights.weight_sha256(w) for w in metric.weights()}, "fields": metric.cache_fields()}  # fmt: skip

    def _clip_key(self, job: ClipJob) -> dict | None:
        if self.supplied:
            return None
        return {
            "generated": _content_key(job.generated), "reference": _content_key(job.reference),
            "portrait": _content_key(job.portrait), "protocol": self._base_protocol_sha256(),
            "csim_reference": self.settings.csim_reference, "analysis": ANALYSIS_VERSION,
            "audio": _content_key(job.audio) if job.audio is None or Path(job.audio).is_file() else str(job.audio),
            "emotion": job.emotion,
        }  # fmt: skip

    def _base_protocol_sha256(self) -> str:
        if self._protocol_sha256 is None:
            self._protocol_sha256 = self.protocol().sha256()
        return self._protocol_sha256

    def _cached(self, kind: str, key: dict | None):
        if key is None or not self.settings.use_cache:
            return None
        return cache.load(kind, key)

    def _store(self, kind: str, key: dict | None, arrays: dict[str, np.ndarray], record: dict | None = None) -> None:
        """Into the on-disk cache; a cache that cannot be written (full, read-only) costs the
        next run time, never this run its result."""
        if key is None or not self.settings.use_cache:
            return
        try:
            if record is None:
                cache.store(kind, key, arrays)
            else:
                cache.store_json(kind, key, record, arrays)
        except OSError as exc:
            log.warning("analysis cache not written (%s): %s", kind, exc)

    # -- frames --------------------------------------------------------------------------------

    def batches(self, source: Path | np.ndarray) -> Iterator[np.ndarray]:
        r = self.settings.resolution
        if isinstance(source, np.ndarray):
            if source.ndim != 4 or source.shape[1:] != (r, r, 3) or source.dtype != np.uint8:
                raise MetricError(f"frames must be uint8 (T, {r}, {r}, 3) at the protocol resolution, got {source.shape}")
            for start in range(0, len(source), BATCH):
                yield source[start : start + BATCH]
            return
        frames = media.iter_frames(source, fps=self.settings.fps, size=r)
        while batch := list(itertools.islice(frames, BATCH)):
            yield np.stack(batch)

    # -- references ----------------------------------------------------------------------------

    def reference_needs(self, identity: bool) -> tuple[bool, list[str]]:
        """(face track needed, distribution metrics) for a ground truth."""
        active = self.active()
        faces = identity or any(Need.REFERENCE_FACES in m.spec.needs for m in active.values())
        return faces, [n for n, m in active.items() if isinstance(m, DistributionMetric)]

    def analyse_reference(self, source: Path | np.ndarray, identity: bool) -> ReferenceAnalysis:
        """Face track (and identity embeddings) and feature rows of every frame of a ground
        truth, from the cache where present."""
        if identity:  # its cache key needs the identity network: load it now, and drop it if it failed
            self.load()
            identity = self.wants_identity()
        want_faces, distribution = self.reference_needs(identity)
        sha = cache.content_sha256(source)
        faces_key = self._faces_key(sha) if want_faces else None
        identity_key = self._identity_key(sha) if identity else None
        found_faces = self._cached("faces", faces_key) if want_faces else None
        found_identity = self._cached("identity", identity_key) if identity else None
        features, frames = {}, None
        for name in distribution:
            hit = self._cached("features", self._features_key(sha, name))
            if hit is not None:
                features[name], frames = hit["rows"], int(hit["frames"])
        if found_faces is not None:
            frames = len(found_faces["valid"])
        todo_faces = want_faces and (found_faces is None or (identity and found_identity is None))
        todo_features = [n for n in distribution if n not in features]
        if todo_faces or todo_features or frames is None:
            self.load()
            todo_features = [n for n in todo_features if n not in self.unavailable]  # weights that failed to load
            analyser = VideoAnalyser(self.backend(), self.identity() if identity else None, self.settings.csim_stride()) if todo_faces else None
            rows = {n: [] for n in todo_features}
            windows = {n: OneWindow(self.metrics[n], _predicted_frames(source, self.settings.fps), sha)
                       for n in todo_features if self.metrics[n].reference_window(1, sha) is not None}  # fmt: skip
            frames = 0
            for batch in self.batches(source):
                if analyser:
                    analyser.update(batch, frames)
                for name in todo_features:
                    if name in windows:
                        windows[name].update(batch, frames)
                    else:
                        rows[name].append(self.metrics[name].feature_rows(batch, frames))
                frames += len(batch)
            for name, window in windows.items():
                rows[name] = [window.rows()]
            for name in todo_features:
                features[name] = _stack(rows[name], self.metrics[name].dims)
                self._store("features", self._features_key(sha, name), {"rows": features[name], "frames": np.array(frames)})
            if analyser:
                done = analyser.finish()
                found_faces = done.faces.arrays()
                self._store("faces", faces_key, found_faces)
                if identity:
                    found_identity = {"rows": done.identity}
                    self._store("identity", identity_key, found_identity)
        return ReferenceAnalysis(
            frames=frames,
            faces=FaceTrack(**found_faces) if found_faces is not None else None,
            identity=found_identity["rows"] if found_identity is not None else None,
            features=features,
        )

    # -- one clip ------------------------------------------------------------------------------

    def wants_identity(self) -> bool:
        return any(Need.IDENTITY in m.spec.needs for m in self.active().values())

    def csim_mode(self, job: ClipJob) -> str:
        """What identity embeddings are compared with for this clip."""
        mode = self.settings.csim_reference
        if mode == "auto":
            mode = "portrait" if job.portrait is not None else "ground-truth-frame"
        return mode

    def _portrait_identity(self, portrait: Path | np.ndarray) -> np.ndarray | None:
        """The portrait's embedding, taken as the frames' are: at the evaluation resolution
        (resized as the decoder resizes frames), landmarks from the same face backend."""
        key = cache.content_sha256(portrait)
        if key not in self._portraits:
            image = portrait if isinstance(portrait, np.ndarray) else _read_image(Path(portrait))
            image = media.resize_image(image, self.settings.resolution)
            found = analyse_image(image, self.backend(), landmarks=True)
            self._portraits[key] = (
                np.asarray(self.identity().embed(image, found.box, found.landmarks), dtype=np.float32) if found.found else None
            )
        return self._portraits[key]

    def cached_outcome(self, job: ClipJob) -> ClipOutcome | None:
        """The clip's result from an earlier run with the same inputs and protocol, if any."""
        try:
            key = self._clip_key(job)
        except OSError:
            return None  # unreadable input: measured, and reported with the file's name
        hit = cache.load_json("clips", key) if key is not None and self.settings.use_cache else None
        if hit is None:
            return None
        record, features = hit
        try:
            result = ClipResult.from_dict({**record, "id": job.clip_id, "method": job.method, "group": job.group,
                                           "generated": describe(job.generated), "reference": describe(job.reference)})  # fmt: skip
        except (TypeError, KeyError, ValueError):
            return None  # a record this version cannot read: measured again
        result.cached = True
        return ClipOutcome(result, features)

    def score(self, job: ClipJob, reference: ReferenceAnalysis | None) -> ClipOutcome:
        started, cpu_started = time.perf_counter(), time.process_time()
        key = self._clip_key(job)
        if reference is not None and reference.error:
            raise MetricError(reference.error)
        self.load()
        outcome = self._measure(job, reference)
        outcome.result.seconds = time.perf_counter() - started
        outcome.result.cpu_seconds = time.process_time() - cpu_started
        if not self.load_failures:  # a file replaced later must be measured then, not replayed
            self._store("clips", key, outcome.features, record=outcome.result.to_dict())
        return outcome

    def _measure(self, job: ClipJob, reference: ReferenceAnalysis | None) -> ClipOutcome:
        s = self.settings
        active = self.active()
        unavailable = {n: r for n, r in self.unavailable.items()}

        def drop(name: str, reason: str) -> None:
            if name in active:
                del active[name]
                unavailable[name] = reason

        has_reference = job.reference is not None
        speech = clip_audio(job) if any(Need.AUDIO in m.spec.needs for m in active.values()) else ClipAudio(None)
        for name, metric in list(active.items()):
            needs = metric.spec.needs
            if not has_reference and needs & {Need.REFERENCE, Need.REFERENCE_FACES}:
                drop(name, "no ground-truth video given")
            elif Need.FILE in needs and isinstance(job.generated, np.ndarray):
                drop(name, "generated frames were given as an array, not an encoded file")
            elif Need.AUDIO in needs and speech.path is None:
                drop(name, f"no audio: {speech.problem}")
            elif Need.LABEL in needs and job.emotion is None:
                drop(name, "the clip has no emotion label")

        identity_reference, portrait_identity = None, None
        if any(Need.IDENTITY in m.spec.needs for m in active.values()):
            identity_reference = self.csim_mode(job)
            for name in [n for n, m in active.items() if Need.IDENTITY in m.spec.needs]:
                if identity_reference == "portrait" and job.portrait is None:
                    drop(name, "CSIM against the source portrait needs --source-portrait")
                elif identity_reference == "ground-truth-frame" and not has_reference:
                    drop(name, "CSIM needs a source portrait or the ground-truth video")
                elif identity_reference == "portrait":
                    portrait_identity = self._portrait_identity(job.portrait)
                    if portrait_identity is None:
                        drop(name, f"no face found in the source portrait {describe(job.portrait)}")
            if not any(Need.IDENTITY in m.spec.needs for m in active.values()):
                identity_reference = None

        needs = frozenset().union(*(m.spec.needs for m in active.values()))
        want_identity = Need.IDENTITY in needs
        want_faces = want_identity or Need.FACES in needs
        info = ClipInfo(job.clip_id, _path(job.generated), _path(job.reference), speech.path, job.emotion, s.fps)
        clip_metrics = {n: m for n, m in active.items() if not isinstance(m, DistributionMetric)}
        states = {n: m.new_state(info) for n, m in clip_metrics.items()}
        rows: dict[str, list[np.ndarray]] = {n: [] for n, m in active.items() if isinstance(m, DistributionMetric)}

        gen_sha = cache.content_sha256(job.generated) if want_faces else None
        cached_faces = self._cached("faces", self._faces_key(gen_sha)) if want_faces else None
        cached_identity = self._cached("identity", self._identity_key(gen_sha)) if want_identity else None
        use_cached = cached_faces is not None and (not want_identity or cached_identity is not None)
        analyser = None
        if want_faces and not use_cached:
            analyser = VideoAnalyser(self.backend(), self.identity() if want_identity else None, s.csim_stride())

        limit = reference.frames if reference is not None else None
        generated_frames, compared = 0, 0
        gen_batches = self.batches(job.generated)
        ref_batches = self.batches(job.reference) if has_reference else None
        for gen in gen_batches:
            start = generated_frames
            generated_frames += len(gen)
            if has_reference and generated_frames > limit + MAX_FRAME_DIFFERENCE:
                raise _length_error(job, f"at least {generated_frames}", limit, s.fps)  # no need to decode the rest
            if analyser is not None:
                faces, identity = analyser.update(gen, start)
            elif use_cached:
                faces = FaceTrack(**cached_faces)[start : start + len(gen)]
                identity = cached_identity["rows"][start : start + len(gen)] if want_identity else None
            else:
                faces = identity = None
            ref = None
            if ref_batches is not None:
                ref = next(ref_batches, None)
                n = min(len(gen), len(ref) if ref is not None else 0, max(0, limit - start))
                if n == 0:
                    continue  # past the ground truth's end: counted, not compared
                gen, ref = gen[:n], ref[:n]
                faces = faces[:n] if faces is not None else None
                identity = identity[:n] if identity is not None else None
            batch = Batch(start, gen, ref, faces)
            if reference is not None and reference.faces is not None:
                batch.reference_faces = reference.faces[start : start + len(gen)]
            if want_identity:
                batch.identity = identity
                if identity_reference == "portrait":
                    batch.reference_identity = np.broadcast_to(portrait_identity, (len(gen), len(portrait_identity)))
                else:
                    batch.reference_identity = reference.identity[start : start + len(gen)]
            for name, metric in clip_metrics.items():
                metric.update(states[name], batch)
            for name in rows:
                rows[name].append(self.metrics[name].feature_rows(gen, start))
            compared += len(gen)
        if has_reference:
            if abs(generated_frames - reference.frames) > MAX_FRAME_DIFFERENCE:
                raise _length_error(job, str(generated_frames), reference.frames, s.fps)
        else:
            compared = generated_frames

        faces_record: dict[str, int] = {}
        if want_faces:
            if analyser is not None:
                whole = analyser.finish()
                self._store("faces", self._faces_key(gen_sha), whole.faces.arrays())
                if want_identity:
                    self._store("identity", self._identity_key(gen_sha), {"rows": whole.identity})
                track = whole.faces
            else:
                track = FaceTrack(**cached_faces)
            faces_record["generated_frames_without_face"] = track.missing
            if reference is not None and reference.faces is not None:
                faces_record["reference_frames_without_face"] = reference.faces.missing
            if not track.valid.any():
                for name in [n for n in clip_metrics if self.uses_faces(n)]:
                    drop(name, "no face found in any generated frame")

        values: dict[str, float] = {}
        for name, metric in clip_metrics.items():
            if name not in active:
                continue
            try:
                values.update(metric.compute(states[name]))
            except Unavailable as why:
                unavailable[name] = str(why)
                continue
            state = states[name]
            if self.uses_faces(name) and isinstance(state, FrameMeans) and state.counts:
                faces_record[f"{name}_frames"] = max(state.counts.values())
        features = {n: _stack(r, self.metrics[n].dims) for n, r in rows.items()}
        result = ClipResult(
            id=job.clip_id, method=job.method, generated=describe(job.generated), reference=describe(job.reference),
            frames=FrameCounts(generated_frames, reference.frames if reference is not None else None, compared),
            values=values, unavailable=unavailable, faces=faces_record, identity_reference=identity_reference,
            group=job.group,
        )  # fmt: skip
        return ClipOutcome(result, features)


class OneWindow:
    """Collects the one ``window``-frame clip a metric takes from a ground truth
    (``DistributionMetric.reference_window``) while the frames stream past. The start comes
    from the predicted frame count; should the decoder yield fewer frames, the last whole
    window is used."""

    def __init__(self, metric: DistributionMetric, predicted_frames: int, content_sha256: str) -> None:
        self.metric, self.size = metric, metric.window
        self.start = metric.reference_window(predicted_frames, content_sha256)
        self.picked: list[np.ndarray] = []
        self.tail = np.zeros((0,), dtype=np.uint8)

    def update(self, batch: np.ndarray, start: int) -> None:
        lo, hi = max(0, self.start - start), max(0, self.start + self.size - start)
        if lo < len(batch) and hi > 0:
            self.picked.append(batch[lo:hi])
        self.tail = np.concatenate([self.tail, batch])[-self.size :] if len(self.tail) else batch[-self.size :]

    def rows(self) -> np.ndarray:
        clip = np.concatenate(self.picked) if self.picked else self.tail[:0]
        if len(clip) < self.size:
            clip = self.tail
        if len(clip) < self.size:
            return np.zeros((0, self.metric.dims))  # too short: discarded, as StyleGAN-V does
        return self.metric.feature_rows(clip, 0)


def _predicted_frames(source: Path | np.ndarray, fps: float) -> int:
    if isinstance(source, np.ndarray):
        return len(source)
    return media.frame_count_at(media.probe(source), fps)


@dataclass(frozen=True)
class ClipAudio:
    """The file whose audio a lip-sync metric reads, or None with why not."""

    path: Path | None
    problem: str | None = None


def clip_audio(job: ClipJob) -> ClipAudio:
    """The driving audio when one was given (never replaced by another track when it is
    missing or silent); otherwise the generated file's own audio track."""
    if job.audio is not None:
        if not Path(job.audio).is_file():
            return ClipAudio(None, f"the driving audio {job.audio} does not exist")
        try:
            has_audio = media.probe(job.audio).has_audio
        except MediaError as exc:
            return ClipAudio(None, f"cannot read the driving audio: {exc}")
        return ClipAudio(Path(job.audio)) if has_audio else ClipAudio(None, f"the driving audio {job.audio} has no audio track")
    if isinstance(job.generated, np.ndarray):
        return ClipAudio(None, "no driving audio was given, and generated frames given as an array carry none")
    try:
        if media.probe(job.generated).has_audio:
            return ClipAudio(Path(job.generated))
    except MediaError:
        pass  # an unreadable generated file is reported by the frame decoder
    return ClipAudio(None, f"no driving audio was given and {job.generated} has no audio track")


def _length_error(job: ClipJob, generated: str, reference: int, fps: float) -> MetricError:
    return MetricError(
        f"{describe(job.generated) or 'generated frames'} has {generated} frames but "
        f"{describe(job.reference) or 'reference frames'} has {reference} at {fps:g} fps; "
        f"the protocol allows a difference of at most {MAX_FRAME_DIFFERENCE}"
    )


def _stack(rows: list[np.ndarray], dims: int) -> np.ndarray:
    return np.concatenate(rows) if rows else np.zeros((0, dims))


def _path(source) -> Path | None:
    return Path(source) if isinstance(source, (str, Path)) else None


def describe(source) -> str | None:
    return str(source) if isinstance(source, (str, Path)) else None


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise MetricError(f"{path}: cannot read the portrait image ({exc})") from exc
