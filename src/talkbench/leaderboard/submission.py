"""Submissions: a folder or a zip holding ``submission.yaml`` and ``videos/<clip_id>.mp4``.

The validator reports every problem at once, by clip (or by file), and nothing is stored unless
all checks pass. Submission content is untrusted data: YAML is read with ``yaml.safe_load`` (no
tags, no objects), nothing is imported, executed or unpickled, symbolic links are refused
(never followed), zip members are checked before anything is extracted, and every size is
capped both from the headers and again while extracting and decoding, whatever the headers claim.

Checks:

- structure: ``submission.yaml`` missing (one problem, not one per file); missing, extra and
  duplicate clip ids; names that are not ``<clip_id>.mp4``; unexpected files; file or member
  names holding control characters (refused, shown escaped, so a name cannot forge output
  lines); symlinks and anything that is not a regular file (FIFOs, devices). macOS's
  ``__MACOSX/`` and ``.DS_Store`` entries are ignored and never extracted.
- zips: paths escaping the archive (zip slip: absolute, ``..``, backslashes, drive letters),
  duplicate and encrypted members, members over the per-file cap, the uncompressed total over
  the submission cap (summed from the headers before extracting, and counted while
  extracting), every member's compression ratio (``max_compression_ratio`` plus a small
  absolute allowance, so a tiny text file may compress well but no member of any size can
  inflate past the ratio), and the whole archive's ratio (uncompressed total / archive size,
  ``max_archive_ratio``), so a small upload cannot fill the disk up to the total cap.
- metadata: size, UTF-8, plain YAML, the ``SubmissionMeta`` schema; control characters are
  removed from its free-text fields.
- videos, from the headers (``media.probe``) before any frame is decoded: MP4 container,
  fps, square and at least 256 px, at most the benchmark's ``max_side``, ``max_frames`` and
  ``max_seconds`` per clip and ``max_decoded_pixels`` for the whole submission (the spec's
  fields; ``None`` derives them from the reference's frame count). Decoding then counts frames
  and stops at the same caps whatever the headers said (frame count within ±2 of the
  reference, undecodable or truncated video).
- copies of the ground truth: a clip whose bytes are the reference's (sha256 against the spec's
  recorded ``reference_sha256`` and the actual reference file), or whose frames are the
  reference's (at least ``COPY_FRACTION`` of its frames with luma SSIM ≥ ``COPY_SSIM`` at
  ``COPY_SIDE``² against one of the reference's frames up to ±2 away, compared while counting
  frames) is refused. The comparison stops, and the reference is no longer decoded, as soon as
  too many frames differ for a copy: for a real method's output that is after a few frames.

Zip submissions are extracted into ``$TMPDIR/talkbench-submission-<pid>-*``: removed when the
``Submission`` is cleaned up, on SIGINT and on SIGTERM (turned into the normal exception path
while the folder exists), and, should the process be killed outright, by the next validation,
which removes such folders whose process is gone.
"""

from __future__ import annotations

import os
from collections import deque
import re
import shutil
import signal
import stat
import tempfile
import threading
import unicodedata
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from talkbench import media
from talkbench.clip import Clip
from talkbench.errors import MediaError, TalkbenchError
from talkbench.util import sha256_file

METADATA = "submission.yaml"
VIDEO_DIR = "videos"
VIDEO_SUFFIX = ".mp4"
ALLOWED_TOP = ("README", "LICENSE", "LICENCE")  # file-name prefixes allowed beside the videos
IGNORED_DIRS = ("__MACOSX",)  # macOS Archive Utility's resource forks: never extracted
IGNORED_FILES = (".DS_Store",)  # Finder's folder settings
MIN_SIDE = 256
FRAME_TOLERANCE = 2
SECONDS_SLACK = 1.0  # container duration is the longest stream's: AAC padding runs past the video
TMP_PREFIX = "talkbench-submission-"

# Copies of the reference. Measured on the sample clips at 256² luma, per frame: a lossless or
# byte copy gives SSIM 1.000, re-encodes of the reference 0.998 (crf 0), ≤ 0.996 (crf 18),
# 0.966–0.976 (crf 28), 0.92–0.93 (crf 35); a one-frame shift is caught by comparing each frame
# with the reference's frames up to FRAME_TOLERANCE away. The best method in the papers' tables
# has a mean SSIM of 0.905 (AniTalker, VQTalker Table 1), so 0.98 refuses no real output; a
# heavily re-compressed reference (crf ≥ 28) is not caught.
COPY_SSIM = 0.98
COPY_SIDE = 256
COPY_FRACTION = 0.9  # this share of the frames copied makes the clip a copy (a few altered frames do not hide it)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Limits:
    max_video_bytes: int = 64 * 1024 * 1024
    max_total_bytes: int = 4 * 1024 * 1024 * 1024
    max_files: int = 5000
    max_metadata_bytes: int = 64 * 1024
    # uncompressed / compressed for every zip member, plus ``ratio_allowance`` bytes so that a
    # small text file (README, a YAML of repeated keys) may compress better than video ever does
    max_compression_ratio: float = 100.0
    ratio_allowance: int = 64 * 1024
    # uncompressed total / archive size: MP4 barely deflates (≈1), so 10 leaves room for text and
    # lossless video while a 5 MB upload can no longer write 4 GiB
    max_archive_ratio: float = 10.0


_CONTROL = frozenset(("Cc", "Cf", "Zl", "Zp"))  # C0/C1 controls, bidi overrides, line separators
_JOINERS = frozenset("\u200c\u200d")  # format characters that Persian, Indic names and emoji need


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in _CONTROL and ch not in _JOINERS


def has_control(text: str) -> bool:
    """Whether ``text`` holds characters that move the cursor, break lines or reorder text."""
    return any(_is_control(ch) for ch in text)


def strip_control(text: str, keep_newlines: bool = False) -> str:
    """``text`` without control characters: whitespace ones (tab, CR, LF, line separators) become
    one space (LF kept with ``keep_newlines``), the others are dropped."""
    text = text.replace("\r\n", "\n")
    out = []
    for ch in text:
        if not _is_control(ch):
            out.append(ch)
        elif ch == "\n" and keep_newlines:
            out.append(ch)
        elif ch.isspace():
            out.append(" ")
    return "".join(out)


class SubmissionMeta(BaseModel):
    """``submission.yaml``. Free-text fields lose their control characters (they end up in
    terminals and on the leaderboard's pages); ``description`` keeps its line breaks, as a
    YAML block scalar naturally has them; the name must match its pattern as given."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._+()-]*$")
    authors: list[str] = Field(min_length=1)
    paper: str | None = None
    code: str | None = None
    licence: str = Field(min_length=1)
    resolution: int = Field(ge=MIN_SIDE, le=4096)
    contact: str = Field(min_length=3)
    year: int | None = Field(default=None, ge=1990, le=2100)
    description: str = ""
    task: Literal["speech-driven", "reconstruction"] = "speech-driven"

    @field_validator("authors", "paper", "code", "licence", "contact", mode="before")
    @classmethod
    def _one_line(cls, value):
        if isinstance(value, str):
            return strip_control(value).strip()
        if isinstance(value, list):
            return [strip_control(v).strip() if isinstance(v, str) else v for v in value]
        return value

    @field_validator("description", mode="before")
    @classmethod
    def _text(cls, value):
        return strip_control(value, keep_newlines=True).strip() if isinstance(value, str) else value


@dataclass(frozen=True)
class Problem:
    where: str  # a clip id, a file inside the submission, or the submission itself
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class SubmissionError(TalkbenchError):
    """A submission with problems; ``problems`` lists every one."""

    def __init__(self, source: str | Path, problems: list[Problem]):
        self.source = str(source)
        self.problems = sorted(problems, key=lambda p: (p.where, p.message))
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{self.source}: submission rejected, {len(self.problems)} problem(s); nothing was stored:\n{lines}"
        )

    def messages(self) -> list[str]:
        return [str(p) for p in self.problems]


class _Terminated(SystemExit):
    """SIGTERM while a zip's extraction exists: unwinds like Ctrl-C, so it is removed."""


class _ExtractionGuard:
    """Maps SIGTERM to an exception while extraction folders exist (main thread, default handler
    only), so ``kill`` takes the same cleanup path as Ctrl-C; restores the handler after."""

    def __init__(self):
        self._count = 0
        self._previous = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _handler(self, signum, frame):
        if os.getpid() != self._pid:  # a forked worker: die as the default handler would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise _Terminated(128 + signum)

    def acquire(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        with self._lock:
            if self._count == 0:
                if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                    return False  # the application handles SIGTERM itself
                self._pid = os.getpid()
                self._previous = signal.signal(signal.SIGTERM, self._handler)
            self._count += 1
        return True

    def release(self) -> None:
        with self._lock:
            self._count -= 1
            if self._count == 0 and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)


_GUARD = _ExtractionGuard()


class _Extraction:
    """A temporary folder for one zip, named after this process so that a later validation can
    tell whether its owner is gone."""

    def __init__(self):
        self._guarded = _GUARD.acquire()
        try:
            self.path = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
        except BaseException:
            self._release()
            raise
        # as TemporaryDirectory: removed at interpreter exit even if nobody calls cleanup()
        self._remove = weakref.finalize(self, shutil.rmtree, str(self.path), ignore_errors=True)

    def _release(self) -> None:
        if self._guarded:
            self._guarded = False
            _GUARD.release()

    def cleanup(self) -> None:
        try:
            self._remove()
        finally:
            self._release()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_extractions(tmp_dir: str | Path | None = None) -> list[Path]:
    """Remove ``talkbench-submission-<pid>-*`` folders of this user whose process is gone (a
    validation killed with SIGKILL); returns what was removed."""
    root = Path(tmp_dir or tempfile.gettempdir())
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        match = re.fullmatch(re.escape(TMP_PREFIX) + r"(\d+)-.+", entry.name)
        if not match or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


@dataclass
class Submission:
    """A submission that passed every check. ``root`` is where its files are (a temporary
    extraction for zips: call ``cleanup()``)."""

    source: Path
    root: Path
    meta: SubmissionMeta
    videos: dict[str, Path]
    infos: dict[str, media.MediaInfo] = field(default_factory=dict)
    _tmp: _Extraction | None = None

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def _escaped(name: str) -> str:
    return repr(name)


def _ignored(rel: str) -> bool:
    parts = rel.split("/")
    return any(p in IGNORED_DIRS for p in parts[:-1]) or parts[-1] in IGNORED_DIRS or parts[-1] in IGNORED_FILES


def _safe_member(name: str) -> str | None:
    """The normalised relative path of a zip member, or None when it escapes the archive."""
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = PurePosixPath(name).parts
    if any(p == ".." for p in parts) or "\x00" in name:
        return None
    return "/".join(p for p in parts if p not in ("", "."))


def _extract_zip(path: Path, dest: Path, limits: Limits, problems: list[Problem]) -> list[str]:
    """Extract the members that pass the checks; returns their relative paths."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        problems.append(Problem(path.name, f"not a readable zip archive ({exc})"))
        return []
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_files:
            problems.append(Problem(path.name, f"{len(infos)} members; at most {limits.max_files} allowed"))
            return []
        wanted = []
        for info in infos:
            if has_control(info.filename):
                problems.append(Problem(_escaped(info.filename), "name holds control characters; refused"))
                continue
            rel = _safe_member(info.filename)
            if rel is None:
                problems.append(Problem(info.filename, "path escapes the archive (zip slip: absolute or '..'); refused"))
                continue
            if rel and not _ignored(rel):
                wanted.append((rel, info))
        # the headers first: what the whole archive claims to hold, before a byte is written
        claimed = sum(info.file_size for _, info in wanted if not info.is_dir())
        archive_bytes = max(path.stat().st_size, 1)
        if claimed > limits.max_total_bytes:
            problems.append(Problem(path.name, f"oversized: its members hold {claimed} bytes uncompressed "
                                               f"(limit {limits.max_total_bytes}); nothing extracted"))
            return []
        if claimed > limits.max_archive_ratio * archive_bytes:
            problems.append(Problem(path.name, f"compression ratio too high (possible zip bomb): {claimed} bytes "
                                               f"uncompressed from a {archive_bytes}-byte archive, more than "
                                               f"{limits.max_archive_ratio:g}x; nothing extracted"))
            return []
        seen: dict[str, int] = {}
        out: list[str] = []
        total = 0
        for rel, info in wanted:
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                problems.append(Problem(rel, "is a symbolic link; submissions must hold regular files"))
                continue
            if info.is_dir():
                continue
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # no type bits: written by Python's zipfile
                problems.append(Problem(rel, "is not a regular file (device, FIFO or socket); refused"))
                continue
            seen[rel] = seen.get(rel, 0) + 1
            if seen[rel] == 2:
                problems.append(Problem(rel, "appears more than once in the archive (duplicate entry)"))
            if seen[rel] > 1:
                continue
            if info.flag_bits & 0x1:
                problems.append(Problem(rel, "is encrypted; submit unencrypted files"))
                continue
            cap = limits.max_metadata_bytes if rel.endswith(METADATA) else limits.max_video_bytes
            if info.file_size > cap:
                problems.append(Problem(rel, f"oversized: {info.file_size} bytes (limit {cap})"))
                continue
            inflate_cap = limits.max_compression_ratio * info.compress_size + limits.ratio_allowance
            if info.file_size > inflate_cap:
                problems.append(Problem(rel, f"compression ratio too high (possible zip bomb): {info.file_size} "
                                             f"bytes from {info.compress_size}; refused"))
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            limit = min(cap, int(inflate_cap))
            written = 0
            try:
                with archive.open(info) as src, open(target, "wb") as dst:
                    while True:
                        block = src.read(1 << 16)
                        if not block:
                            break
                        written += len(block)
                        # the stream again, whatever the headers said
                        if written > limit or total + written > limits.max_total_bytes:
                            raise OverflowError
                        dst.write(block)
            except OverflowError:
                target.unlink(missing_ok=True)
                problems.append(Problem(rel, f"oversized: more than {limit} bytes (or the submission's {limits.max_total_bytes} "
                                             f"in all) when extracted; the header claims {info.file_size}"))
                continue
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                target.unlink(missing_ok=True)
                problems.append(Problem(rel, f"cannot be extracted ({exc})"))
                continue
            total += written
            out.append(rel)
    return out


def _walk_folder(root: Path, limits: Limits, problems: list[Problem]) -> list[str]:
    out: list[str] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in list(dirnames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if has_control(name):
                problems.append(Problem(_escaped(rel), "name holds control characters; refused"))
                dirnames.remove(name)
            elif p.is_symlink():
                problems.append(Problem(rel, "is a symbolic link; refused (never followed)"))
                dirnames.remove(name)
            elif name in IGNORED_DIRS:
                dirnames.remove(name)
        for name in filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if has_control(name):
                problems.append(Problem(_escaped(rel), "name holds control characters; refused"))
                continue
            if name in IGNORED_FILES:
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                problems.append(Problem(rel, "is a symbolic link; refused (never followed)"))
                continue
            if not stat.S_ISREG(st.st_mode):
                problems.append(Problem(rel, "is not a regular file"))
                continue
            total += st.st_size
            out.append(rel)
            if len(out) > limits.max_files:
                problems.append(Problem(root.name, f"more than {limits.max_files} files"))
                return out
    if total > limits.max_total_bytes:
        problems.append(Problem(root.name, f"oversized: {total} bytes in total (limit {limits.max_total_bytes})"))
    return out


def _strip_wrapper(files: list[str]) -> tuple[str, list[str]]:
    """Zips often wrap everything in one folder: treat ``x/submission.yaml`` as the root."""
    if METADATA in files or not files:
        return "", files
    tops = {f.split("/", 1)[0] for f in files}
    if len(tops) == 1 and all("/" in f for f in files):
        top = tops.pop()
        return top, [f.split("/", 1)[1] for f in files]
    return "", files


def _read_meta(path: Path, limits: Limits, problems: list[Problem]) -> SubmissionMeta | None:
    if path.stat().st_size > limits.max_metadata_bytes:
        problems.append(Problem(METADATA, f"oversized: {path.stat().st_size} bytes (limit {limits.max_metadata_bytes})"))
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        problems.append(Problem(METADATA, "is not UTF-8 text"))
        return None
    except yaml.YAMLError as exc:
        problems.append(Problem(METADATA, f"is not plain YAML ({strip_control(str(exc).splitlines()[0])})"))
        return None
    except RecursionError:
        problems.append(Problem(METADATA, "is not plain YAML (nested too deeply)"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(METADATA, "must be a mapping with method, authors, licence, resolution, contact, ..."))
        return None
    try:
        return SubmissionMeta.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = strip_control(".".join(str(x) for x in err["loc"])) or "(root)"
            problems.append(Problem(METADATA, f"field {loc!r}: {err['msg']}"))
        return None


def _is_mp4(path: Path) -> tuple[bool, bytes]:
    with open(path, "rb") as fh:
        head = fh.read(12)
    return len(head) >= 8 and head[4:8] == b"ftyp", head


def reference_frames(clip: Clip, fps: float, spec_frames: int | None) -> int:
    if spec_frames:
        return spec_frames
    return media.frame_count_at(media.probe(clip.video), fps)


@dataclass(frozen=True)
class ClipLimits:
    """What one submitted clip may be, from the benchmark spec (or derived from its reference)."""

    expected_frames: int
    max_side: int
    max_frames: int
    max_seconds: float


def clip_limits(spec, expected_frames: int) -> ClipLimits:
    max_frames = spec.max_frames if spec.max_frames is not None else expected_frames + FRAME_TOLERANCE
    max_seconds = spec.max_seconds if spec.max_seconds is not None else max_frames / spec.fps + SECONDS_SLACK
    return ClipLimits(expected_frames, spec.max_side, max_frames, max_seconds)


def decoded_pixel_budget(spec, limits: dict[str, ClipLimits]) -> int:
    """The spec's ``max_decoded_pixels``, or every clip at its largest size and frame count."""
    if spec.max_decoded_pixels is not None:
        return spec.max_decoded_pixels
    return sum(lim.max_side ** 2 * lim.max_frames for lim in limits.values())


def _probe_video(clip_id: str, path: Path, lim: ClipLimits, fps: float, limits: Limits,
                 problems: list[Problem]) -> media.MediaInfo | None:
    """Everything that can be refused from the file and its headers, before decoding."""
    size = path.stat().st_size
    if size > limits.max_video_bytes:
        problems.append(Problem(clip_id, f"oversized: {size} bytes (limit {limits.max_video_bytes})"))
        return None
    if size == 0:
        problems.append(Problem(clip_id, "undecodable: the file is empty (0 bytes)"))
        return None
    ok, head = _is_mp4(path)
    if not ok:
        problems.append(Problem(clip_id, f"not a video: content is not an MP4 container (starts with {head[:8]!r})"))
        return None
    try:
        info = media.probe(path)
    except MediaError as exc:
        problems.append(Problem(clip_id, f"undecodable: {strip_control(exc.problem)}"))
        return None
    if not info.has_video:
        problems.append(Problem(clip_id, "not a video: the file has no video stream"))
        return None
    before = len(problems)
    if abs(info.fps - fps) > 0.01:
        problems.append(Problem(clip_id, f"fps is {info.fps:g}; the benchmark needs {fps:g}"))
    if info.width != info.height:
        problems.append(Problem(clip_id, f"resolution {info.width}x{info.height} is not square"))
    if min(info.width, info.height) < MIN_SIDE:
        problems.append(Problem(clip_id, f"resolution {info.width}x{info.height} is below {MIN_SIDE}x{MIN_SIDE}"))
    if max(info.width, info.height) > lim.max_side:
        problems.append(Problem(clip_id, f"resolution {info.width}x{info.height} is above the benchmark's maximum "
                                         f"{lim.max_side}x{lim.max_side}; refused before decoding"))
    if info.frame_count > lim.max_frames:
        problems.append(Problem(clip_id, f"the header declares {info.frame_count} frames; the benchmark allows at "
                                         f"most {lim.max_frames} for this clip; refused before decoding"))
    if info.duration > lim.max_seconds:
        problems.append(Problem(clip_id, f"duration {info.duration:.2f} s is above the benchmark's maximum "
                                         f"{lim.max_seconds:.2f} s for this clip; refused before decoding"))
    return None if len(problems) > before else info


def _luma(frame: np.ndarray) -> np.ndarray:
    small = media.resize_image(frame, COPY_SIDE)
    return np.rint(small.astype(np.float32) @ _LUMA).astype(np.uint8)[..., None]


def _same_picture(luma: np.ndarray, references) -> bool:
    """Whether ``luma`` is one of the reference frames (lumas) it is compared with."""
    from talkbench.metrics.ssim import ssim_frames  # numba: loaded only when there is a video to compare

    diffs = [np.abs(luma.astype(np.int16) - ref.astype(np.int16)) for ref in references]
    if any(int(d.max()) <= 1 for d in diffs):
        return True
    closest_first = sorted(range(len(diffs)), key=lambda k: float(diffs[k].mean()))
    return any(float(ssim_frames(luma, references[k])[0]) >= COPY_SSIM for k in closest_first)


def _recorded_hash(bc, reference: Path) -> str:
    return bc.reference_sha256 or sha256_file(reference)


def _is_byte_copy(path: Path, bc, reference: Path) -> bool:
    digest = None
    if bc.reference_sha256:
        digest = sha256_file(path)
        if digest == bc.reference_sha256:
            return True
    if path.stat().st_size == reference.stat().st_size:
        return (digest or sha256_file(path)) == sha256_file(reference)
    return False


def _decode_video(clip_id: str, path: Path, lim: ClipLimits, reference: Path, fps: float,
                  budget: list[int], problems: list[Problem]) -> tuple[int, int, int] | None:
    """Decode and count frames, within the caps whatever the headers said, comparing with the
    reference in lockstep until enough samples differ; returns (frames, samples compared,
    samples that are copies)."""
    decoded = copies = compared = 0
    allowed_different = int((1 - COPY_FRACTION) * lim.expected_frames)
    ref_frames = media.iter_frames(reference, fps=fps)
    window: deque = deque(maxlen=2 * FRAME_TOLERANCE + 1)  # reference lumas i-2 … i+2 around frame i
    frames = media.iter_frames(path, fps=None)

    def read_reference() -> None:
        nonlocal ref_frames
        try:
            ref = next(ref_frames, None)
        except MediaError:
            ref = None
        if ref is None:
            ref_frames.close()
            ref_frames = None
        else:
            window.append(_luma(ref))

    try:
        for frame in frames:
            decoded += 1
            h, w = frame.shape[:2]
            if max(h, w) > lim.max_side:
                problems.append(Problem(clip_id, f"frame {decoded} is {w}x{h}, above the benchmark's maximum "
                                                 f"{lim.max_side}x{lim.max_side} (the header said otherwise)"))
                return None
            if decoded > lim.max_frames:
                problems.append(Problem(clip_id, f"more than {lim.max_frames} frames when decoded (the header said "
                                                 "fewer); the benchmark allows at most that; decoding stopped"))
                return None
            budget[0] -= h * w
            if budget[0] < 0:
                problems.append(Problem(clip_id, "the submission's decoded-pixel budget is exhausted "
                                                 "(the benchmark's max_decoded_pixels); decoding stopped"))
                return None
            if ref_frames is None and not window:
                continue
            while ref_frames is not None and len(window) < min(decoded + FRAME_TOLERANCE, window.maxlen):
                read_reference()
            if ref_frames is not None and decoded > FRAME_TOLERANCE + 1:
                read_reference()  # slides the window on to reference frame decoded + 2
            compared += 1
            if _same_picture(_luma(frame), window):
                copies += 1
            elif compared - copies > allowed_different:
                if ref_frames is not None:
                    ref_frames.close()  # clearly not a copy: stop decoding the reference
                ref_frames = None
                window.clear()
    except MediaError as exc:
        problems.append(Problem(clip_id, f"undecodable: {strip_control(exc.problem)}"))
        return None
    finally:
        frames.close()
        if ref_frames is not None:
            ref_frames.close()
    return decoded, decoded, copies


def _check_video(clip_id: str, path: Path, info: media.MediaInfo, lim: ClipLimits, bc, reference: Path,
                 fps: float, budget: list[int], problems: list[Problem]) -> media.MediaInfo | None:
    if _is_byte_copy(path, bc, reference):
        problems.append(Problem(clip_id, "is a byte-for-byte copy of the reference clip (sha256 "
                                         f"{_recorded_hash(bc, reference)}); submit the method's output"))
        return None
    counted = _decode_video(clip_id, path, lim, reference, fps, budget, problems)
    if counted is None:
        return None
    decoded, samples, copies = counted
    if abs(decoded - lim.expected_frames) > FRAME_TOLERANCE:
        problems.append(Problem(
            clip_id, f"frame count {decoded} differs from the reference's {lim.expected_frames} by more than {FRAME_TOLERANCE}"
        ))
        return None
    if copies >= COPY_FRACTION * samples:
        problems.append(Problem(clip_id, f"is a copy of the reference clip (sha256 {_recorded_hash(bc, reference)}): "
                                         f"{copies} of {samples} frames compared are its frames (luma SSIM ≥ {COPY_SSIM} at "
                                         f"{COPY_SIDE}x{COPY_SIDE}); submit the method's output"))
        return None
    return info


def _layout(files: list[str], spec, root: Path, problems: list[Problem]) -> dict[str, Path]:
    """The clip videos among ``files``; every other file, missing and duplicate clip is a problem."""
    expected = {bc.id for bc in spec.clips}
    found: dict[str, Path] = {}
    folded: dict[str, str] = {}
    for rel in sorted(files):
        if rel == METADATA:
            continue
        parts = rel.split("/")
        if len(parts) == 1 and parts[0].upper().startswith(ALLOWED_TOP):
            continue
        if parts[0] != VIDEO_DIR or len(parts) != 2:
            problems.append(Problem(rel, f"unexpected file: a submission holds {METADATA} and {VIDEO_DIR}/<clip_id>.mp4 only"))
            continue
        stem, suffix = os.path.splitext(parts[1])
        if suffix != VIDEO_SUFFIX:
            problems.append(Problem(rel, f"not a video: expected {VIDEO_DIR}/<clip_id>{VIDEO_SUFFIX}"))
            continue
        key = stem.lower()
        if key in folded:
            problems.append(Problem(stem, f"duplicate clip id: {rel} and {VIDEO_DIR}/{folded[key]}{VIDEO_SUFFIX}"))
            found.pop(folded[key], None)
            continue
        folded[key] = stem
        if stem not in expected:
            problems.append(Problem(stem, f"extra clip: not in benchmark {spec.key}"))
            continue
        found[stem] = root / rel
    for bc in spec.clips:
        if bc.id.lower() not in folded:
            problems.append(Problem(bc.id, f"missing: no {VIDEO_DIR}/{bc.id}{VIDEO_SUFFIX}"))
    return found


def _missing_metadata(files: list[str]) -> Problem:
    nested = sorted(f for f in files if f.endswith("/" + METADATA))
    where = f" (found {nested[0]}: it must be at the top, or inside one folder that holds everything)" if nested else ""
    return Problem(METADATA, f"missing: every submission needs {METADATA} at its top level{where}; "
                             "nothing else was checked")


def validate_submission(path: str | Path, spec, clips: list[Clip], limits: Limits = Limits()) -> Submission:
    """Check a submission against a benchmark (``spec`` and its resolved ``clips``); raise
    ``SubmissionError`` listing every problem, or return the ``Submission``."""
    source = Path(path)
    problems: list[Problem] = []
    tmp = None
    if has_control(str(source)):
        raise SubmissionError(_escaped(str(source)), [Problem(_escaped(source.name), "name holds control characters")])
    if source.is_symlink():
        raise SubmissionError(source, [Problem(source.name, "is a symbolic link; pass the real folder or zip")])
    if not source.exists():
        raise SubmissionError(source, [Problem(source.name, "not found")])
    if source.is_dir():
        root = source
        files = _walk_folder(root, limits, problems)
    elif source.is_file() and zipfile.is_zipfile(source):
        remove_stale_extractions()
        tmp = _Extraction()
        root = tmp.path
        try:
            files = _extract_zip(source, root, limits, problems)
        except BaseException:
            tmp.cleanup()
            raise
    else:
        raise SubmissionError(source, [Problem(source.name, "is neither a folder nor a zip archive")])

    try:
        prefix, files = _strip_wrapper(files)
        if prefix:
            root = root / prefix
        if METADATA not in files:
            # one problem, not one per file: without it nothing else is meaningful to check (an
            # archive refused as a whole, or a refused submission.yaml, already says why)
            if files or not problems:
                if not any(p.where.endswith(METADATA) for p in problems):
                    problems.append(_missing_metadata(files))
            raise SubmissionError(source, problems)
        meta = _read_meta(root / METADATA, limits, problems)
        found = _layout(files, spec, root, problems)

        bench = {bc.id: bc for bc in spec.clips}
        clip_by_id = {c.id: c for c in clips}
        lims = {bc.id: clip_limits(spec, reference_frames(clip_by_id[bc.id], spec.fps, bc.frames))
                for bc in spec.clips}
        probed = {}
        for cid, vpath in found.items():
            info = _probe_video(cid, vpath, lims[cid], spec.fps, limits, problems)
            if info is not None:
                probed[cid] = info
        budget = decoded_pixel_budget(spec, lims)
        claimed = sum(i.width * i.height * i.frame_count for i in probed.values())
        infos: dict[str, media.MediaInfo] = {}
        if claimed > budget:
            problems.append(Problem(source.name, f"the headers declare {claimed} decoded pixels in all; the benchmark "
                                                 f"allows {budget} (max_decoded_pixels); refused before decoding"))
        else:
            left = [budget]
            for cid, info in probed.items():
                ok = _check_video(cid, found[cid], info, lims[cid], bench[cid], clip_by_id[cid].video,
                                  spec.fps, left, problems)
                if ok is not None:
                    infos[cid] = ok

        if problems or meta is None:
            raise SubmissionError(source, problems)
        return Submission(source=source, root=root, meta=meta, videos=found, infos=infos, _tmp=tmp)
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
