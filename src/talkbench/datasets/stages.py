"""The pipeline stages, as plain functions every engine reuses.

fetch -> cut -> face -> filter -> language -> resize. A stage either returns its result or
raises ``Reject(code, detail)``; ``process_clip`` runs them in order for one clip and always
returns one catalog row, whatever happens (one bad clip never stops the others).

Language ID runs before the 512x512 encode (the issue lists it last): a clip that will be
rejected for having no speech is then never encoded. The row records the stage each clip
stopped at, so the summary still reads in the issue's order.

This module only orchestrates: downloading is ``datasets.download``, crop geometry
``face.crop``, decoding and encoding ``media``.

Face crop (no alignment, as the paper: natural head motion stays in frame): the face is
detected on ``detect_samples`` frames spread over the clip; the crop is one fixed square per
clip from those boxes (``face.crop.detected_crop``). A manifest crop (HDTF, VoxCeleb csv, VFHQ)
replaces the detected one; detection still runs to reject no-face and multi-person clips. The
size filter compares the crop side in source pixels with ``min_face_px`` (default 512: the
512x512 output is never upscaled).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from talkbench import media
from talkbench.datasets import download
from talkbench.datasets.archives import ArchiveError, TarMember, unpack_folder
from talkbench.datasets.language import detect_language
from talkbench.datasets.sources import ClipSpec
from talkbench.errors import MediaError
from talkbench.face import get_backend
from talkbench.face.crop import CROP_EXPAND, detected_crop, face_sizes, manifest_crop
from talkbench.face.types import pick_main_face

STAGES = ("fetch", "cut", "face", "filter", "language", "resize")

DETECT_MAX_SIDE = 960  # frames are downscaled to this longer side for detection
SECOND_FACE_RATIO = 0.6  # a second face this large (vs the main one) counts as a second person

# reason code -> (stage, meaning). RETRIED codes leave the clip 'failed' (retried on re-run);
# every other code is a final 'rejected'.
REASONS = {
    "source_missing": ("fetch", "the local source file does not exist (yet); retried on re-run"),
    "http_error": ("fetch", "the server answered with an HTTP error (e.g. 404)"),
    "video_unavailable": ("fetch", "removed, private or otherwise unavailable video"),
    "format_unavailable": ("fetch", "no format with video and audio at <= max height"),
    "rate_limited": ("fetch", "rate limited or bot check (try --cookies, a lower rate, later)"),
    "network_error": ("fetch", "network failure (timeouts, refused, DNS)"),
    "fetch_failed": ("fetch", "download failed for another reason (see error)"),
    "bad_archive": ("fetch", "the tar archive cannot be read (corrupt, truncated, compressed), or holds an unsafe "
                             "member (absolute, '..', link, device, sparse) or the same file twice"),
    "view_missing": ("fetch", "the identity has no video of the requested camera view (MEAD)"),
    "audio_missing": ("fetch", "the clip's separate audio file is missing"),
    "not_video": ("cut", "the file is not a video FFmpeg can read"),
    "truncated": ("cut", "the video file is truncated or corrupt"),
    "range_out_of_bounds": ("cut", "the clip's time range is outside the video"),
    "bad_audio": ("cut", "the clip's separate audio file cannot be decoded"),
    "no_face": ("face", "no face in most sampled frames"),
    "multiple_faces": ("face", "two or more people in most sampled frames"),
    "face_too_small": ("filter", "the face crop is smaller than min_face_px"),
    "too_short": ("filter", "shorter than min_seconds"),
    "no_audio": ("language", "the video has no audio stream"),
    "no_speech": ("language", "voice activity detection found no speech"),
    "language_mismatch": ("language", "Whisper's language differs from the expected one"),
    "error": ("", "unexpected error (see error text); retried on re-run"),
}
TRANSIENT = download.TRANSIENT | {"error"}  # downloads failing so are retried in the run too
# A missing local file is no verdict on the clip: it may be copied or mounted before the next run.
RETRIED = TRANSIENT | {"source_missing"}


class Reject(Exception):
    def __init__(self, code: str, detail: str = ""):
        assert code in REASONS, code
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}" if detail else code)


@dataclass
class BuildConfig:
    out_dir: Path
    size: int = 512
    fps: int = media.DEFAULT_FPS
    min_face_px: int = 512
    min_seconds: float = 3.0
    max_height: int = 1080
    crop_expand: float = CROP_EXPAND
    detect_samples: int = 8
    check_language: bool = False  # reject clips whose detected language differs from the manifest's
    require_audio: bool = True  # False: clips without audio pass with no language (VFHQ has none)
    lid_engine: str = "faster-whisper"
    lid_model: str = "base"
    lid_threads: int = 1
    face_backend: str = "dlib"
    cookies: str | None = None
    retries: int = 3
    backoff: float = 2.0  # seconds, doubled per retry
    rate_limit: int | None = None  # bytes/s for yt-dlp
    sleep_between: float = 0.0  # seconds between requests (yt-dlp sleep_interval_requests)
    keyint: int | None = None  # keyframe interval of the encoded clips, frames; None: x264's default (250)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)

    def params(self) -> dict:
        """What the built clips depend on (stored in the catalog)."""
        d = asdict(self)
        for k in ("out_dir", "cookies", "retries", "backoff", "rate_limit", "sleep_between", "lid_threads"):
            d.pop(k)
        return d

    def download_options(self) -> download.DownloadOptions:
        return download.DownloadOptions(max_height=self.max_height, cookies=self.cookies, retries=self.retries,
                                        backoff=self.backoff, rate_limit=self.rate_limit,
                                        sleep_between=self.sleep_between)


@dataclass
class Cut:
    path: Path
    width: int
    height: int
    src_fps: float
    start: float
    end: float
    first: int  # first frame index at cfg.fps (inclusive)
    last: int  # exclusive
    audio: np.ndarray | None

    @property
    def frames(self) -> int:
        return self.last - self.first

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Face:
    crop: tuple[int, int, int, int]  # x0, y0, x1, y1 in source pixels (square)
    method: str  # "manifest" | "detected"
    face_px: float  # median detected face size (source pixels)
    sampled: int
    with_face: int
    multi: int
    boxes: list = field(default_factory=list)

    @property
    def crop_px(self) -> int:
        return self.crop[2] - self.crop[0]


# ---------------------------------------------------------------- fetch


def fetch(spec: ClipSpec, cfg: BuildConfig) -> Path:
    """The source video on disk: a local file as is, a file inside a tar archive unpacked once
    per archive folder into ``out/raw/``, a URL downloaded once per video into ``out/raw/`` by
    ``datasets.download`` (clips of one video share it; its failure codes become the clip's
    rejection). A clip with a separate audio file is rejected here when that file is missing; a
    spec's ``reject`` is raised first."""
    if spec.reject:
        raise Reject(*spec.reject)
    path = _fetch_video(spec, cfg)
    if spec.audio_member is not None:
        _unpack(spec.audio_member, cfg)
    audio = audio_path(spec, cfg)
    if audio is not None and not audio.is_file():
        raise Reject("audio_missing", f"{audio} does not exist")
    return path


def _unpack(member: TarMember, cfg: BuildConfig) -> Path:
    raw = cfg.out_dir / "raw"
    try:
        unpack_folder(member.archive, member.folder, raw / member.into)
    except ArchiveError as exc:
        raise Reject("bad_archive", str(exc)) from None
    return member.unpacked(raw)


def audio_path(spec: ClipSpec, cfg: BuildConfig) -> Path | None:
    """The clip's separate audio file (where the fetch stage unpacks it, when it is in an
    archive), or None when the speech is the video's own track."""
    if spec.audio_member is not None:
        return spec.audio_member.unpacked(cfg.out_dir / "raw")
    return Path(spec.audio_source) if spec.audio_source else None


def _fetch_video(spec: ClipSpec, cfg: BuildConfig) -> Path:
    if spec.video_member is not None:
        path = _unpack(spec.video_member, cfg)
        if not path.is_file():
            raise Reject("bad_archive", f"{spec.video_member} was not unpacked to {path}")  # the archive will not change: final
        return path
    if not spec.is_url:
        path = Path(spec.source[7:] if spec.source.startswith("file://") else spec.source)
        if not path.is_file():
            raise Reject("source_missing", f"{path} does not exist")
        return path

    try:
        return download.download(spec.source, spec.source_key, cfg.out_dir / "raw", cfg.download_options())
    except download.DownloadFailed as exc:
        raise Reject(exc.code, exc.detail) from None


# ---------------------------------------------------------------- cut


def _media_reject(path: Path, exc: MediaError) -> Reject:
    head = path.read_bytes()[:12] if path.is_file() else b""
    looks_like_video = head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3"
    problem = exc.problem.lower()
    if "no video stream" in problem or "neither a video" in problem:
        return Reject("not_video", str(exc))
    if looks_like_video or problem.startswith(("truncated:", "decoding failed", "video stream has no decodable")):
        return Reject("truncated", str(exc))
    return Reject("not_video", str(exc))  # FFmpeg cannot read it and it is no video container


def cut(spec: ClipSpec, path: Path, cfg: BuildConfig) -> Cut:
    """The clip's frame range at ``cfg.fps`` (frame-accurate: frame k is the source frame
    nearest k/fps) and its audio as 16 kHz mono float32: from the spec's separate audio file
    when it has one, else the video's own track (None without an audio stream)."""
    try:
        info = media.probe(path)
    except MediaError as exc:
        raise _media_reject(path, exc) from None
    if not info.has_video:
        raise _media_reject(path, MediaError(path, "has no video stream"))
    duration = info.frame_count / info.fps if info.fps and info.frame_count else info.duration
    start = max(0.0, spec.start)
    end = duration if spec.end is None else min(spec.end, duration)
    if start >= duration or end <= start:
        raise Reject("range_out_of_bounds", f"range {spec.start}-{spec.end} s, video is {duration:.2f} s")
    first, last = round(start * cfg.fps), round(end * cfg.fps)
    if last <= first:
        raise Reject("range_out_of_bounds", f"range {spec.start}-{spec.end} s holds no frame at {cfg.fps} fps")
    audio = None
    separate = audio_path(spec, cfg)
    if separate is not None or info.has_audio:
        try:
            samples = media.read_audio(separate or path)
        except MediaError as exc:
            raise (Reject("bad_audio", str(exc)) if separate else _media_reject(path, exc)) from None
        audio = samples[round(start * media.AUDIO_RATE) : round(end * media.AUDIO_RATE)]
    return Cut(path, info.width, info.height, info.fps, start, end, first, last, audio)


def iter_range(c: Cut, fps: int, wanted: set[int] | None = None):
    """(index, frame) for the frames of the cut (only ``wanted`` indices when given).

    Frame k is exactly frame k of ``media.iter_frames(path, fps)`` (same slot rule: the
    source frame nearest k/fps after the first frame's time), but decoding starts at a
    keyframe shortly before the clip instead of at the file's start, and only the frames
    returned are converted to RGB: HDTF clips start minutes into 1080p videos."""
    try:
        count = 0
        for item in media.iter_frame_range(c.path, c.first, c.last, fps, wanted=wanted):
            count += 1
            yield item
        expected = c.frames if wanted is None else len(wanted)
        if count < expected:
            raise MediaError(c.path, f"truncated: {count} of the clip's {expected} frames decode")
    except MediaError as exc:
        raise _media_reject(c.path, exc) from None
    except Exception as exc:
        if media.is_codec_error(exc):  # while seeking/decoding
            raise _media_reject(c.path, MediaError(c.path, f"decoding failed ({exc})")) from None
        raise


# ---------------------------------------------------------------- face


def _manifest_crop(spec: ClipSpec, c: Cut, cfg: BuildConfig) -> tuple[int, int, int, int]:
    expand = cfg.crop_expand if spec.meta.get("crop_is_face") else None
    return manifest_crop(spec.crop, spec.crop_frame, c.width, c.height, expand)


def face(spec: ClipSpec, c: Cut, cfg: BuildConfig) -> Face:
    backend = get_backend(cfg.face_backend)
    n = max(1, min(cfg.detect_samples, c.frames))
    wanted = {c.first + int((k + 0.5) * c.frames / n) for k in range(n)}
    scale = min(1.0, DETECT_MAX_SIDE / max(c.width, c.height))
    mains, multi = [], 0
    for _, frame in iter_range(c, cfg.fps, wanted):
        img = frame
        if scale < 1.0:
            img = np.asarray(
                Image.fromarray(frame).resize((round(c.width * scale), round(c.height * scale)), Image.Resampling.BOX)
            )
        boxes = backend.detect(img)
        main, _ = pick_main_face(boxes)
        if main is None:
            continue
        mains.append(tuple(v / scale for v in (main.left, main.top, main.right, main.bottom)))
        others = [b for b in boxes if b is not main and b.size >= SECOND_FACE_RATIO * main.size]
        multi += bool(others)
    if len(mains) < max(1, n / 2):
        raise Reject("no_face", f"a face in {len(mains)} of {n} sampled frames")
    if multi >= max(1, len(mains) / 2):
        raise Reject("multiple_faces", f"two or more faces in {multi} of {len(mains)} frames with a face")
    boxes = np.array(mains)
    if spec.crop is not None:
        crop, method = _manifest_crop(spec, c, cfg), "manifest"
    else:
        crop, method = detected_crop(boxes, c.width, c.height, cfg.crop_expand), "detected"
    face_px = float(np.median(face_sizes(boxes)))
    return Face(crop, method, face_px, n, len(mains), multi, [list(map(round, b)) for b in mains])


# ---------------------------------------------------------------- filter


def filter_clip(c: Cut, f: Face, cfg: BuildConfig) -> None:
    if c.duration < cfg.min_seconds - 1e-6:
        raise Reject("too_short", f"{c.duration:.2f} s < {cfg.min_seconds} s")
    if f.crop_px < cfg.min_face_px:
        raise Reject("face_too_small", f"face crop {f.crop_px} px < {cfg.min_face_px} px (face box {f.face_px:.0f} px)")


# ---------------------------------------------------------------- language


def language(spec: ClipSpec, c: Cut, cfg: BuildConfig) -> dict:
    if c.audio is None:
        if not cfg.require_audio:
            return {"language": None}
        raise Reject("no_audio", f"{c.path.name} has no audio stream")
    res = detect_language(c.audio, engine=cfg.lid_engine, model=cfg.lid_model, threads=cfg.lid_threads)
    out = {
        "language": res.language,
        "language_prob": res.probability,
        "language_top3": json.dumps(res.top3),
        "speech_seconds": res.speech_seconds,
        "lid_engine": res.engine,
        "lid_model": res.model,
    }
    if res.no_speech:
        raise _RejectWith("no_speech", f"{res.speech_seconds:.2f} s of speech found", out)
    if cfg.check_language and spec.language and res.language != spec.language:
        raise _RejectWith(
            "language_mismatch", f"expected {spec.language}, Whisper says {res.language} ({res.probability:.2f})", out
        )
    return out


class _RejectWith(Reject):
    def __init__(self, code: str, detail: str, fields: dict):
        super().__init__(code, detail)
        self.fields = fields


# ---------------------------------------------------------------- resize


def clip_relpath(clip_id: str) -> str:
    return f"clips/{re.sub(r'[^A-Za-z0-9._#+-]', '_', clip_id)}.mp4"


def resize(spec: ClipSpec, c: Cut, f: Face, cfg: BuildConfig) -> Path:
    """Crop every frame to the clip's square and encode size x size H.264 + AAC, atomically."""
    x0, y0, x1, y1 = f.crop
    frames = (
        np.asarray(Image.fromarray(frame[y0:y1, x0:x1]).resize((cfg.size, cfg.size), Image.Resampling.LANCZOS))
        for _, frame in iter_range(c, cfg.fps)
    )
    out = cfg.out_dir / clip_relpath(spec.clip_id)
    media.write_video(out, frames, fps=cfg.fps, audio=c.audio, keyint=cfg.keyint)
    return out


# ---------------------------------------------------------------- one clip


def tool_versions() -> dict:
    versions = {}
    for pkg in ("talkbench", "yt-dlp", "av", "dlib-bin", "faster-whisper", "openai-whisper", "silero-vad"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def base_row(spec: ClipSpec, cfg: BuildConfig) -> dict:
    meta = {**spec.meta, "splits": list(spec.splits)} if spec.splits else spec.meta
    return {
        "clip_id": spec.clip_id,
        "dataset": spec.dataset,
        "source": spec.source,
        "range_start": spec.start,
        "range_end": spec.end,
        "split": spec.split,
        "person": spec.person,
        "expected_language": spec.language,
        "manifest_crop": json.dumps(spec.crop) if spec.crop else None,
        "meta": json.dumps(meta, sort_keys=True),
        "emotion": spec.emotion,
        "intensity": spec.intensity,
        "min_face_px": cfg.min_face_px,
        "min_seconds": cfg.min_seconds,
        "status": "pending",
        "stage": None,
        "reason": None,
        "error": None,
    }


def process_clip(spec: ClipSpec, cfg: BuildConfig, events=None) -> dict:
    """Run every stage for one clip; always return its catalog row (never raise).
    ``events``: an optional queue that receives ``(clip_id, stage)`` as each stage starts."""
    row = base_row(spec, cfg)
    row["started_at"] = _now()
    timings: dict[str, float] = {}
    stage = "fetch"

    def timed(name, fn, *args):
        nonlocal stage
        stage = name
        if events is not None:
            try:
                events.put((spec.clip_id, name))
            except Exception:  # noqa: BLE001 - progress display must never fail a clip
                pass
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            timings[name] = round(time.perf_counter() - t0, 3)

    try:
        path = timed("fetch", fetch, spec, cfg)
        row["raw_path"] = _rel(path, cfg.out_dir)
        c = timed("cut", cut, spec, path, cfg)
        row.update(
            source_width=c.width, source_height=c.height, source_fps=c.src_fps,
            clip_start=c.start, clip_end=c.end, duration=round(c.frames / cfg.fps, 3),
        )
        f = timed("face", face, spec, c, cfg)
        row.update(
            face_px=round(f.face_px, 1), crop_px=f.crop_px, crop_box=json.dumps(list(f.crop)),
            crop_method=f.method, face_frames=f"{f.with_face}/{f.sampled}", multi_face_frames=f.multi,
        )
        timed("filter", filter_clip, c, f, cfg)
        row.update(timed("language", language, spec, c, cfg))
        out = timed("resize", resize, spec, c, f, cfg)
        row.update(path=_rel(out, cfg.out_dir), width=cfg.size, height=cfg.size, fps=cfg.fps, frames=c.frames)
        row.update(status="accepted", stage="done")
    except Reject as exc:
        if isinstance(exc, _RejectWith):
            row.update(exc.fields)
        row.update(
            status="failed" if exc.code in RETRIED else "rejected",
            stage=stage, reason=exc.code, error=exc.detail or None,
        )
    except Exception as exc:  # noqa: BLE001 - one clip must never stop the others
        row.update(status="failed", stage=stage, reason="error",
                   error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
    row["timings"] = json.dumps(timings)
    row["tool_versions"] = json.dumps(tool_versions(), sort_keys=True)
    row["finished_at"] = _now()
    return row


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)
