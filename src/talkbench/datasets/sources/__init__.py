"""Manifest parsers. Each source turns its official manifest (or, for MEAD, the download's
folder layout) into ``ClipSpec`` records: one per clip to build, with where to get the video,
which time range, and the manifest's face crop when it has one. ``select`` picks a
deterministic subset (``--limit``, ``--split``, ``--languages``)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from talkbench.datasets.archives import TarMember
from talkbench.errors import TalkbenchError


class ManifestError(TalkbenchError):
    """A manifest file that cannot be parsed: names the file, the line and the problem."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class ClipSpec:
    """One clip to build. ``source`` is a URL or a local file path; times are seconds in the
    source video (``end=None``: to the end). ``crop`` is (x0, y0, x1, y1) in the pixels of a
    reference frame ``crop_frame`` = (width, height) (width 0: only the height is known, scale
    uniformly; None: the pixels of the video as downloaded), or None to detect the face.

    ``audio_source`` is a separate file with the clip's speech (MEAD's m4a), read instead of
    the video's own track. ``video_member`` / ``audio_member`` say that the video / audio is a
    file inside a tar archive, unpacked by the fetch stage (``source`` / ``audio_source`` then
    only name it, as ``archive:member``). ``splits`` names further splits the clip belongs to
    besides ``split`` (MEAD's overlapping, versioned splits). ``reject`` = (reason code, detail)
    is a rejection known before any work (e.g. an unreadable archive): the fetch stage raises it."""

    clip_id: str
    dataset: str
    source: str
    start: float = 0.0
    end: float | None = None
    crop: tuple[int, int, int, int] | None = None
    crop_frame: tuple[int, int] | None = None
    language: str | None = None  # expected language (ISO 639-1), when the manifest says
    split: str | None = None
    person: str | None = None
    meta: dict = field(default_factory=dict)
    emotion: str | None = None
    intensity: int | None = None
    audio_source: str | None = None
    video_member: TarMember | None = None
    audio_member: TarMember | None = None
    splits: tuple[str, ...] = ()
    reject: tuple[str, str] | None = None

    @property
    def source_key(self) -> str:
        """A file-name-safe key for the source video (clips of one video share a download)."""
        import hashlib

        return hashlib.sha1(self.source.encode()).hexdigest()[:16]

    @property
    def is_url(self) -> bool:
        return "://" in self.source and not self.source.startswith("file://")

    def to_dict(self) -> dict:
        return asdict(self)


def read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank lines; tolerates a UTF-8 BOM, CRLF and a missing
    final newline, as the published manifests have them."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(path, f"not UTF-8 text ({exc})") from None
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def select(
    specs: list[ClipSpec],
    limit: int | None = None,
    split: str | None = None,
    languages: list[str] | None = None,
    seed: int = 0,
) -> list[ClipSpec]:
    """Filter by split (a clip's ``split`` or one of its ``splits``) and languages, then (with
    ``limit``) a seeded random subset kept in manifest order: the same seed and manifest always
    give the same clips."""
    chosen = [s for s in specs if split is None or s.split == split or split in s.splits]
    if languages:
        wanted = {x.strip() for x in languages}
        chosen = [s for s in chosen if s.language in wanted]
    if limit is not None and limit < len(chosen):
        keep = set(random.Random(seed).sample(range(len(chosen)), limit))
        chosen = [s for i, s in enumerate(chosen) if i in keep]
    return chosen


SOURCES = ("hdtf", "voxceleb", "vfhq", "mnte", "mead", "files")


def load_source(source: str, manifest: str | Path | list, **kwargs) -> list[ClipSpec]:
    """Specs for a source by name: ``hdtf`` (a folder of the official txt files), ``voxceleb``
    (vox-metadata.csv or a folder of per-segment txt files), ``vfhq`` (a folder of meta files),
    ``mnte`` (our CSV/YAML manifest), ``mead`` (the root folder of a MEAD download, per-identity
    folders), ``files`` (local video files or a folder of them)."""
    source = source.lower()
    if source == "hdtf":
        from talkbench.datasets.sources.hdtf import load_hdtf

        return load_hdtf(Path(manifest), **kwargs)
    if source == "voxceleb":
        from talkbench.datasets.sources.voxceleb import load_voxceleb

        return load_voxceleb(Path(manifest), **kwargs)
    if source == "vfhq":
        from talkbench.datasets.sources.vfhq import load_vfhq

        return load_vfhq(Path(manifest), **kwargs)
    if source == "mnte":
        from talkbench.datasets.sources.mnte import load_mnte

        return load_mnte(Path(manifest), **kwargs)
    if source == "mead":
        from talkbench.datasets.sources.mead import load_mead

        return load_mead(Path(manifest), **kwargs)
    if source == "files":
        return load_files(manifest, **kwargs)
    raise TalkbenchError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")


VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")


def load_files(paths, dataset: str = "files", languages: dict[str, str] | None = None) -> list[ClipSpec]:
    """Local video files (or folders of them) as whole-clip specs; ``languages`` maps a clip id
    (the file stem) to its expected language. A video file that does not exist is still a
    clip: the fetch stage marks it ``source_missing`` and the next run retries it. A missing
    path that is no video file name (a folder, a typo) is an error."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES))
        elif p.exists() or p.suffix.lower() in VIDEO_SUFFIXES:
            files.append(p)
        else:
            raise ManifestError(p, f"no such folder or file (a video file ends in {', '.join(VIDEO_SUFFIXES)})")
    languages = languages or {}
    return [
        ClipSpec(clip_id=f.stem, dataset=dataset, source=str(f.resolve()), language=languages.get(f.stem))
        for f in files
    ]
