"""MEAD (Wang et al., ECCV 2020), read from a download as its authors distribute it: one folder
per identity (``M003``, ``W009``, ...) under a root, each holding either the archives
``video.tar`` and ``audio.tar`` or their unpacked trees

- ``video/<view>/<emotion>/level_<k>/<NNN>.mp4``
- ``audio/<emotion>/level_<k>/<NNN>.m4a`` (no view level: one recording of the speech)

Views: ``VIEWS``; emotions: ``EMOTIONS`` (neutral has only level_1). One view is built (front by
default); the clip's speech is the m4a, not the video's own track. Clip ids are
``{ID}_{view}_{emotion}_level_{k}_{NNN}``; the catalog gets the emotion, the intensity ``k`` and
the view (in ``meta``). Archives are listed here (the clip ids come from their member names)
and unpacked by the fetch stage, only the chosen view's videos and the audio, into
``OUT/raw/mead/<ID>/``.

An identity that holds both an archive and its unpacked tree is read from the tree: the videos
from ``video/<view>/`` when that folder exists (else from ``video.tar``), the speech from
``audio/`` when it exists (else from ``audio.tar``). Clip ids are unique: a tree yields one file
per (emotion, level, number) (levels are read as ``level_<k>`` without leading zeros), and an
archive holding two members for the same clip (``video/...`` and ``x/video/...``) is refused.

Problems that concern a whole identity give one catalog row ``{ID}_{view}``: ``bad_archive``
(a tar that cannot be read to its end, or holds an unsafe or repeated member) and
``view_missing``. A clip whose m4a is missing is rejected with ``audio_missing``.

Splits (docs/datasets/mead.md says where each comes from), selected with ``--split``; a clip
may be in several:

- ``test-4id-v1``: identities M003, M030, W009, W015 (EAT, EDTalk), every emotion and level.
- ``train-4id-v1``: every other identity.
- ``official-test-v1``: the MEAD README's sentence split, for every identity and level: the last
  10 neutral sentences and the last 6 of each other emotion, by the clip numbers present.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from talkbench.datasets.archives import ArchiveError, TarMember, list_files
from talkbench.datasets.sources.spec import ClipSpec, ManifestError, Source
from talkbench.errors import TalkbenchError

VIEWS = ("front", "down", "top", "left_30", "left_60", "right_30", "right_60")
EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
TEST_IDENTITIES = ("M003", "M030", "W009", "W015")
TEST_4ID, TRAIN_4ID, OFFICIAL_TEST = "test-4id-v1", "train-4id-v1", "official-test-v1"
SPLITS = (TEST_4ID, OFFICIAL_TEST, TRAIN_4ID)
OFFICIAL_TEST_LAST = {"neutral": 10}  # the README: last 10 neutral sentences, last 6 of the others
OFFICIAL_TEST_LAST_OTHERS = 6

_EMOTION = "|".join(EMOTIONS)
VIDEO_NAME = re.compile(rf"(?:^|/)(?P<top>video/(?P<view>[^/]+))/(?P<emotion>{_EMOTION})/level_(?P<level>[1-9]\d*)/"
                        rf"(?P<number>\d+)\.mp4$")
AUDIO_NAME = re.compile(rf"(?:^|/)(?P<top>audio)/(?P<emotion>{_EMOTION})/level_(?P<level>[1-9]\d*)/"
                        rf"(?P<number>\d+)\.m4a$")


@dataclass(frozen=True)
class MeadFile:
    """One video or audio file of an identity: on disk (``member`` None) or in an archive."""

    emotion: str
    level: int
    number: str  # as in the file name, e.g. "001"
    source: str  # the path on disk, or archive:member
    member: TarMember | None = None

    @property
    def key(self) -> tuple[str, int, str]:
        return self.emotion, self.level, self.number


def load_mead(root: Path, view: str = "front", split: str | None = None) -> list[ClipSpec]:
    """Specs for every clip of ``view`` of every identity under ``root`` (only those of
    ``split`` when given), sorted by identity, emotion, level and number."""
    root = Path(root)
    if view not in VIEWS:
        raise TalkbenchError(f"unknown MEAD view {view!r}; choose one of {', '.join(VIEWS)}")
    if split is not None and split not in SPLITS:
        raise TalkbenchError(f"unknown MEAD split {split!r}; choose one of {', '.join(SPLITS)}")
    if not root.is_dir():
        raise ManifestError(root, "MEAD root folder not found (expected identity folders such as M003/)")
    if _is_identity(root):
        raise ManifestError(root, "this is one identity's folder; give the folder that holds the identities")
    identities = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and _is_identity(d))
    if not identities:
        raise ManifestError(root, "no identity folder here (expected e.g. M003/ holding video.tar and audio.tar, "
                                  "or their unpacked video/ and audio/ folders)")
    specs = [s for folder in identities for s in identity_specs(folder, view)]
    return [s for s in specs if split is None or split in s.splits]


def _is_identity(folder: Path) -> bool:
    return (folder / "video.tar").is_file() or (folder / "video").is_dir()


def identity_split(identity: str) -> str:
    return TEST_4ID if identity in TEST_IDENTITIES else TRAIN_4ID


def identity_specs(folder: Path, view: str) -> list[ClipSpec]:
    """The clips of one identity, or one rejected row ``{ID}_{view}`` when its archive cannot
    be used or it has no video of ``view``."""
    identity = folder.name
    try:
        videos, views_seen = video_files(folder, view)
        audio = audio_files(folder)
    except ArchiveError as exc:
        return [_identity_row(identity, view, exc.path, ("bad_archive", str(exc)))]
    if not videos:
        seen = ", ".join(sorted(views_seen)) or "none"
        return [_identity_row(identity, view, str(folder),
                              ("view_missing", f"{folder} has no {view} video (views found: {seen})"))]
    numbers: dict[tuple[str, int], list[str]] = {}
    for v in videos:
        numbers.setdefault((v.emotion, v.level), []).append(v.number)
    specs = []
    for v in sorted(videos, key=lambda v: (v.emotion, v.level, int(v.number))):
        sound = audio.files.get(v.key)
        reject = None
        if sound is None:
            reject = ("audio_missing", f"no {audio.expected(v)} for {v.source}")
        splits = [identity_split(identity)]
        if is_official_test(v.emotion, v.number, numbers[(v.emotion, v.level)]):
            splits.append(OFFICIAL_TEST)
        specs.append(ClipSpec(
            clip_id=f"{identity}_{view}_{v.emotion}_level_{v.level}_{v.number}",
            dataset="mead",
            source=v.source,
            language="en",
            split=identity_split(identity),
            person=identity,
            meta={"view": view},
            emotion=v.emotion,
            intensity=v.level,
            audio_source=sound.source if sound else None,
            video_member=v.member,
            audio_member=sound.member if sound else None,
            splits=tuple(sorted(splits)),
            reject=reject,
        ))
    return specs


def is_official_test(emotion: str, number: str, numbers_in_folder: list[str]) -> bool:
    """The MEAD README's test sentences: the last 10 neutral, the last 6 of any other emotion,
    among the clip numbers of that identity, emotion and level."""
    last = OFFICIAL_TEST_LAST.get(emotion, OFFICIAL_TEST_LAST_OTHERS)
    return int(number) in sorted(int(n) for n in numbers_in_folder)[-last:]


def _identity_row(identity: str, view: str, source: str, reject: tuple[str, str]) -> ClipSpec:
    return ClipSpec(
        clip_id=f"{identity}_{view}",
        dataset="mead",
        source=source,
        language="en",
        split=identity_split(identity),
        person=identity,
        meta={"view": view},
        splits=tuple(sorted((identity_split(identity), OFFICIAL_TEST))),
        reject=reject,
    )


def video_files(folder: Path, view: str) -> tuple[list[MeadFile], set[str]]:
    """The videos of ``view`` (from ``video/<view>/`` when unpacked, else from ``video.tar``)
    and every view seen. Raises ``ArchiveError`` for an unusable archive."""
    tree = folder / "video"
    archive = folder / "video.tar"
    if (tree / view).is_dir() or not archive.is_file():
        names = [p.relative_to(folder).as_posix() for p in sorted(tree.glob("*/*/level_*/*.mp4"))]
        return _parse_videos(names, view, lambda name: (str(folder / name), None), tree)
    into = f"mead/{folder.name}"

    def in_archive(name: str):
        m = VIDEO_NAME.search(name)
        top = name[: m.start("top")] + m.group("top")  # e.g. video/front, whatever folders lead to it
        return f"{archive}:{name}", TarMember(str(archive), name, top, into)

    return _parse_videos(list_files(archive), view, in_archive, archive)


def _parse_videos(names: list[str], view: str, locate, where: Path) -> tuple[list[MeadFile], set[str]]:
    videos: dict[tuple[str, int, str], MeadFile] = {}
    views = set()
    for name in names:
        m = VIDEO_NAME.search(name)
        if not m:
            continue
        views.add(m["view"])
        if m["view"] == view:
            source, member = locate(name)
            add_once(videos, MeadFile(m["emotion"], int(m["level"]), m["number"], source, member), where)
    return list(videos.values()), views


def add_once(files: dict[tuple[str, int, str], MeadFile], f: MeadFile, where: Path) -> None:
    """Add ``f`` by its key; two files for one clip (an archive's ``video/...`` beside
    ``x/video/...``) make ``where`` unusable."""
    if f.key in files:
        raise ArchiveError(where, f"{files[f.key].source} and {f.source} are the same clip")
    files[f.key] = f


@dataclass
class AudioFiles:
    """An identity's m4a files by (emotion, level, number), and where a missing one was looked for."""

    files: dict[tuple[str, int, str], MeadFile]
    where: str

    def expected(self, video: MeadFile) -> str:
        return f"audio/{video.emotion}/level_{video.level}/{video.number}.m4a in {self.where}"


def audio_files(folder: Path) -> AudioFiles:
    """From ``audio/`` when unpacked, else from ``audio.tar``. Raises ``ArchiveError`` for an
    unusable archive."""
    tree, archive = folder / "audio", folder / "audio.tar"
    files: dict[tuple[str, int, str], MeadFile] = {}
    if tree.is_dir() or not archive.is_file():
        for p in sorted(tree.glob("*/level_*/*.m4a")):
            m = AUDIO_NAME.search(p.relative_to(folder).as_posix())
            if m:
                f = MeadFile(m["emotion"], int(m["level"]), m["number"], str(p))
                files[f.key] = f
        return AudioFiles(files, str(tree) if tree.is_dir() else f"{folder} (no audio/ folder, no audio.tar)")
    into = f"mead/{folder.name}"
    for name in list_files(archive):
        m = AUDIO_NAME.search(name)
        if m:
            top = name[: m.start("top")] + m.group("top")
            f = MeadFile(m["emotion"], int(m["level"]), m["number"], f"{archive}:{name}",
                         TarMember(str(archive), name, top, into))
            add_once(files, f, archive)
    return AudioFiles(files, str(archive))


SOURCE = Source("mead", load_mead)
