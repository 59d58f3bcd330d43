"""Turn a folder of released per-clip videos into a submission for a benchmark.

Files are matched to the benchmark's clip ids by file stem (exactly, then ignoring case), or
by a mapping file: YAML or JSON ``{file: clip_id}``, or CSV with ``file,clip_id`` columns.
Each matched video is normalised onto the protocol (25 fps, the reference's size, the
reference's frame count, the reference's audio) and written lossless as ``videos/<clip_id>.mp4``
(``media.LOSSLESS_CODEC``; ``lossless=False`` for H.264 CRF 18 when a size cap matters) beside
a ``submission.yaml``; files that match nothing and clips without a file are listed.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from talkbench import media
from talkbench.baselines.external.normalise import LOSSY_CODEC, normalise_video
from talkbench.baselines.method import MethodInfo
from talkbench.errors import TalkbenchError
from talkbench.util import atomic_write_text

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
DEFAULT_SIZE = 512


class ImportDirError(TalkbenchError):
    """A folder or mapping that cannot be imported as asked."""


@dataclass(frozen=True)
class Target:
    """One benchmark clip to fill: its id, its reference video (for frame count, size and
    audio) when available, and the spec's frame count."""

    clip_id: str
    reference: Path | None = None
    frames: int | None = None


@dataclass
class ImportResult:
    out: str
    matched: dict[str, str] = field(default_factory=dict)  # clip id -> source file
    missing: list[str] = field(default_factory=list)  # clip ids without a file
    unmatched: list[str] = field(default_factory=list)  # files that map to no clip
    codec: str = media.LOSSLESS_CODEC  # how the videos were encoded
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def read_mapping(path: str | Path) -> dict[str, str]:
    """file name → clip id, from YAML/JSON (a mapping) or CSV (columns file, clip_id)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImportDirError(f"{path}: mapping file not found") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or not {"file", "clip_id"} <= set(rows[0]):
            raise ImportDirError(f"{path}: a CSV mapping needs the columns 'file' and 'clip_id'")
        return {r["file"].strip(): r["clip_id"].strip() for r in rows if r.get("file")}
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ImportDirError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'} ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ImportDirError(f"{path}: the mapping must be {{file name: clip id}} strings")
    return {k.strip(): v.strip() for k, v in data.items()}


def match_files(src_dir: str | Path, clip_ids: list[str], mapping: dict[str, str] | None = None) -> ImportResult:
    """Which file of ``src_dir`` is which clip (no files are written)."""
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise ImportDirError(f"{src_dir}: not a directory of videos")
    files = sorted(p for p in src_dir.iterdir() if p.is_file() and not p.is_symlink()
                   and p.suffix.lower() in VIDEO_SUFFIXES)
    result = ImportResult(out="")
    ids = set(clip_ids)
    folded = {c.lower(): c for c in clip_ids}
    claimed: dict[str, str] = {}
    for f in files:
        if mapping is not None:
            cid = mapping.get(f.name, mapping.get(f.stem))
            if cid is not None and cid not in ids:
                result.warnings.append(f"mapping sends {f.name} to {cid!r}, which is not a clip of the benchmark")
                cid = None
        else:
            cid = f.stem if f.stem in ids else folded.get(f.stem.lower())
        if cid is None:
            result.unmatched.append(f.name)
            continue
        if cid in claimed:
            raise ImportDirError(f"{src_dir}: both {claimed[cid]} and {f.name} map to clip {cid}; keep one")
        claimed[cid] = f.name
        result.matched[cid] = str(f)
    if mapping is not None:
        names = {f.name for f in files} | {f.stem for f in files}
        for key in mapping:
            if key not in names:
                result.warnings.append(f"mapping names {key}, which is not a video in {src_dir}")
    result.missing = [c for c in clip_ids if c not in result.matched]
    return result


def write_submission_meta(out: Path, info: MethodInfo, task: str, resolution: int,
                          authors: list[str] | None = None, contact: str | None = None,
                          description: str = "") -> Path:
    """``submission.yaml`` in the validator's schema (talkbench.leaderboard.submission)."""
    code = next((link for link in info.links if "github.com" in link), None)
    meta = {
        "method": info.name,
        "authors": list(authors or info.authors or [f"{info.name} authors"]),
        "paper": info.paper,
        "code": code,
        "licence": info.licence or "unknown (see the method's repository)",
        "resolution": int(resolution),
        "contact": contact or (f"{code}/issues" if code else "unknown"),
        "year": info.year,
        "description": description or info.description,
        "task": task,
    }
    meta = {k: v for k, v in meta.items() if v is not None}
    path = out / "submission.yaml"
    atomic_write_text(path, yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    return path


def import_dir(
    src_dir: str | Path,
    out: str | Path,
    targets: list[Target],
    info: MethodInfo,
    task: str,
    mapping: dict[str, str] | None = None,
    size: int | None = None,
    fps: float = media.DEFAULT_FPS,
    allow_missing: bool = False,
    authors: list[str] | None = None,
    contact: str | None = None,
    lossless: bool = True,
) -> ImportResult:
    """Normalise the matched videos into ``out/videos/<clip_id>.mp4`` and write
    ``out/submission.yaml``. Missing clips are an error unless ``allow_missing``."""
    by_id = {t.clip_id: t for t in targets}
    result = match_files(src_dir, [t.clip_id for t in targets], mapping)
    out = Path(out)
    result.out = str(out)
    result.codec = media.LOSSLESS_CODEC if lossless else LOSSY_CODEC
    if result.missing and not allow_missing:
        raise ImportDirError(
            f"{src_dir}: no video for {len(result.missing)} of {len(targets)} clips "
            f"({', '.join(result.missing[:8])}{' …' if len(result.missing) > 8 else ''}); name files "
            "<clip_id>.mp4, pass --mapping FILE, or --allow-missing for a partial import")
    if not result.matched:
        raise ImportDirError(f"{src_dir}: no video matches a clip id of the benchmark; pass --mapping FILE")
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    side = size
    for cid, src in result.matched.items():
        t = by_id[cid]
        ref = media.probe(t.reference) if t.reference is not None else None
        frames = t.frames or (media.frame_count_at(ref, fps) if ref else media.frame_count_at(media.probe(src), fps))
        clip_size = size or (ref.width if ref and ref.width == ref.height else DEFAULT_SIZE)
        side = side or clip_size
        if ref is not None and ref.has_audio:
            audio = media.read_audio(t.reference)
        else:
            src_info = media.probe(src)
            audio = media.read_audio(src) if src_info.has_audio else None
            if audio is None:
                result.warnings.append(f"{cid}: no reference and no audio in {Path(src).name}; written silent")
        report = normalise_video(src, videos / f"{cid}.mp4", frames=frames, size=clip_size, fps=fps, audio=audio,
                                 lossless=lossless)
        result.warnings += [f"{cid}: {w}" for w in report.warnings]
    write_submission_meta(out, info, task, side or DEFAULT_SIZE, authors=authors, contact=contact,
                          description=f"{info.name}: released videos imported from {Path(src_dir).name} "
                                      "with talkbench baselines import")
    return result
