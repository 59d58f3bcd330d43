"""Submissions: a folder or a zip holding ``submission.yaml`` and ``videos/<clip_id>.mp4``.

The validator reports every problem at once, by clip (or by file), and nothing is stored unless
all checks pass. Submission content is data only: YAML is read with ``yaml.safe_load`` (no
tags, no objects), nothing is imported, executed or unpickled, symbolic links are refused
(never followed), zip members are checked for paths escaping the archive before anything is
extracted, and sizes are capped (per video, in total, and per compression ratio) while
extracting, whatever the archive headers claim.

Checks: missing, extra and duplicate clip ids; names that are not ``<clip_id>.mp4``; content
that is not an MP4 container; undecodable or truncated video; fps; frame count against the
reference (±2); resolution below 256 or not square; oversized files; symlinks; zip slip;
unexpected files; the metadata schema.
"""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from talkbench import media
from talkbench.clip import Clip
from talkbench.errors import MediaError, TalkbenchError

METADATA = "submission.yaml"
VIDEO_DIR = "videos"
VIDEO_SUFFIX = ".mp4"
ALLOWED_TOP = ("README", "LICENSE", "LICENCE")  # file-name prefixes allowed beside the videos
MIN_SIDE = 256
FRAME_TOLERANCE = 2


@dataclass(frozen=True)
class Limits:
    max_video_bytes: int = 64 * 1024 * 1024
    max_total_bytes: int = 4 * 1024 * 1024 * 1024
    max_files: int = 5000
    max_metadata_bytes: int = 64 * 1024
    max_compression_ratio: float = 100.0  # uncompressed / compressed, for members > 1 MB


class SubmissionMeta(BaseModel):
    """``submission.yaml``."""

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


@dataclass
class Submission:
    """A submission that passed every check. ``root`` is where its files are (a temporary
    extraction for zips: call ``cleanup()``)."""

    source: Path
    root: Path
    meta: SubmissionMeta
    videos: dict[str, Path]
    infos: dict[str, media.MediaInfo] = field(default_factory=dict)
    _tmp: tempfile.TemporaryDirectory | None = None

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


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
        seen: dict[str, int] = {}
        out: list[str] = []
        total = 0
        for info in infos:
            rel = _safe_member(info.filename)
            if rel is None:
                problems.append(Problem(info.filename, "path escapes the archive (zip slip: absolute or '..'); refused"))
                continue
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                problems.append(Problem(rel, "is a symbolic link; submissions must hold regular files"))
                continue
            if info.is_dir():
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
            if info.file_size > (1 << 20) and info.file_size > limits.max_compression_ratio * max(info.compress_size, 1):
                problems.append(Problem(rel, "compression ratio too high (possible zip bomb); refused"))
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with archive.open(info) as src, open(target, "wb") as dst:
                    while True:
                        block = src.read(1 << 16)
                        if not block:
                            break
                        written += len(block)
                        if written > cap or total + written > limits.max_total_bytes:
                            raise OverflowError
                        dst.write(block)
            except OverflowError:
                target.unlink(missing_ok=True)
                problems.append(Problem(rel, f"oversized: more than {cap} bytes when extracted (header claims {info.file_size})"))
                continue
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
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
            if p.is_symlink():
                problems.append(Problem(p.relative_to(root).as_posix(), "is a symbolic link; refused (never followed)"))
                dirnames.remove(name)
        for name in filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
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
        problems.append(Problem(METADATA, f"is not plain YAML ({str(exc).splitlines()[0]})"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(METADATA, "must be a mapping with method, authors, licence, resolution, contact, ..."))
        return None
    try:
        return SubmissionMeta.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(root)"
            problems.append(Problem(METADATA, f"field '{loc}': {err['msg']}"))
        return None


def _is_mp4(path: Path) -> tuple[bool, bytes]:
    with open(path, "rb") as fh:
        head = fh.read(12)
    return len(head) >= 8 and head[4:8] == b"ftyp", head


def reference_frames(clip: Clip, fps: float, spec_frames: int | None) -> int:
    if spec_frames:
        return spec_frames
    return media.frame_count_at(media.probe(clip.video), fps)


def _check_video(clip_id: str, path: Path, expected_frames: int, fps: float, limits: Limits,
                 problems: list[Problem]) -> media.MediaInfo | None:
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
        problems.append(Problem(clip_id, f"undecodable: {exc.problem}"))
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
    if len(problems) > before:
        return None
    decoded = 0
    try:
        for _ in media.iter_frames(path, fps=None):
            decoded += 1
    except MediaError as exc:
        problems.append(Problem(clip_id, f"undecodable: {exc.problem}"))
        return None
    if abs(decoded - expected_frames) > FRAME_TOLERANCE:
        problems.append(Problem(
            clip_id, f"frame count {decoded} differs from the reference's {expected_frames} by more than {FRAME_TOLERANCE}"
        ))
        return None
    return info


def validate_submission(path: str | Path, spec, clips: list[Clip], limits: Limits = Limits()) -> Submission:
    """Check a submission against a benchmark (``spec`` and its resolved ``clips``); raise
    ``SubmissionError`` listing every problem, or return the ``Submission``."""
    source = Path(path)
    problems: list[Problem] = []
    tmp = None
    if source.is_symlink():
        raise SubmissionError(source, [Problem(source.name, "is a symbolic link; pass the real folder or zip")])
    if not source.exists():
        raise SubmissionError(source, [Problem(source.name, "not found")])
    if source.is_dir():
        root = source
        files = _walk_folder(root, limits, problems)
    elif zipfile.is_zipfile(source):
        tmp = tempfile.TemporaryDirectory(prefix="talkbench-submission-")
        root = Path(tmp.name)
        files = _extract_zip(source, root, limits, problems)
    else:
        raise SubmissionError(source, [Problem(source.name, "is neither a folder nor a zip archive")])

    try:
        prefix, files = _strip_wrapper(files)
        if prefix:
            root = root / prefix
        meta = None
        if METADATA in files:
            meta = _read_meta(root / METADATA, limits, problems)
        else:
            problems.append(Problem(METADATA, f"missing: every submission needs {METADATA} at its top level"))

        expected = {bc.id: bc for bc in spec.clips}
        clip_by_id = {c.id: c for c in clips}
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
            name = parts[1]
            stem, suffix = os.path.splitext(name)
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
        for cid in expected:
            if cid.lower() not in folded:
                problems.append(Problem(cid, f"missing: no {VIDEO_DIR}/{cid}{VIDEO_SUFFIX}"))

        infos: dict[str, media.MediaInfo] = {}
        for cid, vpath in found.items():
            want = reference_frames(clip_by_id[cid], spec.fps, expected[cid].frames)
            info = _check_video(cid, vpath, want, spec.fps, limits, problems)
            if info is not None:
                infos[cid] = info

        if problems or meta is None:
            raise SubmissionError(source, problems)
        return Submission(source=source, root=root, meta=meta, videos=found, infos=infos, _tmp=tmp)
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
