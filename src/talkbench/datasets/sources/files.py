"""Local video files (or folders of them) as whole-clip specs."""

from __future__ import annotations

from pathlib import Path

from talkbench.datasets.sources.spec import ClipSpec, ManifestError, Source
from talkbench.media import VIDEO_SUFFIXES


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


SOURCE = Source("files", load_files)
