"""The records every source shares: ``ClipSpec`` (one clip to build), ``Source`` (a source by
name, its loader and the build rules it imposes), ``ManifestError``, and the helpers the
parsers use. The source modules import this module, never the ``sources`` package, whose
``__init__`` imports them to fill the registry."""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

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


class BuildRuleError(TalkbenchError):
    """A build option that contradicts a rule of the source (MNTE's minimum length and face
    size): names the option, the value asked for and the rule."""


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
        return hashlib.sha1(self.source.encode()).hexdigest()[:16]

    @property
    def is_url(self) -> bool:
        return "://" in self.source and not self.source.startswith("file://")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Source:
    """A dataset source: ``load(manifest, **options)`` gives its specs. ``min_seconds`` /
    ``min_face_px`` are floors its definition imposes on every build (None: no rule), and
    ``rule`` says where they come from, for the error that refuses a lower build option."""

    name: str
    load: Callable[..., list[ClipSpec]]
    min_seconds: float | None = None
    min_face_px: int | None = None
    confirms_language: bool = False  # Whisper must confirm each clip's manifest language
    rule: str = ""

    def check_build_options(self, min_seconds: float | None = None, min_face_px: int | None = None,
                            check_language: bool | None = None) -> None:
        """Raise ``BuildRuleError`` when an option asks for less than the source's rule."""
        if self.confirms_language and check_language is False:
            raise BuildRuleError(f"check_language (--no-check-language) breaks {self.name}'s rule ({self.rule}): "
                                 "leave it out")
        asked = (("min_seconds", "--min-seconds", min_seconds, self.min_seconds, " s"),
                 ("min_face_px", "--min-face-px", min_face_px, self.min_face_px, " px"))
        for option, flag, value, floor, unit in asked:
            if value is not None and floor is not None and value < floor:
                raise BuildRuleError(f"{option} ({flag}) = {value:g}{unit} breaks {self.name}'s rule ({self.rule}): "
                                     f"it must be at least {floor:g}{unit}, or left out")


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
