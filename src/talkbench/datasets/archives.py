"""Tar archives as clip sources (MEAD ships each identity as ``video.tar`` + ``audio.tar``).

Listing happens when the specs are made (the clip ids come from the member names); unpacking
happens in the fetch stage, once per archive folder, into ``OUT/raw/``. Every member of an
archive is checked when it is listed: an absolute name, a ``..`` component, a link, a device or
a fifo makes the whole archive unusable (``ArchiveError``), and extraction runs through the
standard library's ``data`` filter as a second guard. An unpack goes to a temporary folder that
is renamed into place when complete, so a run killed mid-unpack leaves nothing that a later run
trusts.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from talkbench.errors import TalkbenchError


class ArchiveError(TalkbenchError):
    """A tar archive that cannot be read or holds an unsafe member: names the file and why."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class TarMember:
    """A file inside a tar archive. The fetch stage unpacks every file under ``folder`` (a path
    inside the archive, e.g. ``video/front``) into ``OUT/raw/<into>/`` at once, so the clips of
    one folder share a single unpack, and reads the file from ``unpacked(raw_dir)``."""

    archive: str
    name: str
    folder: str
    into: str

    def unpacked(self, raw_dir: Path) -> Path:
        return Path(raw_dir) / self.into / self.name

    def __str__(self) -> str:
        return f"{self.archive}:{self.name}"


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why a member must not be unpacked, or None when it is a plain file or folder inside
    the archive's own tree."""
    name = PurePosixPath(member.name)
    if name.is_absolute():
        return f"member {member.name!r} has an absolute path"
    if ".." in name.parts:
        return f"member {member.name!r} climbs out of the archive ('..')"
    if member.issym() or member.islnk():
        return f"member {member.name!r} is a link (to {member.linkname!r})"
    if not (member.isfile() or member.isdir()):
        return f"member {member.name!r} is a device, fifo or other special file"
    return None


def list_files(archive: str | Path) -> list[str]:
    """Names of the regular files in a tar archive, in archive order. Raises ``ArchiveError``
    when the archive cannot be read to its end (corrupt, truncated) or any member is unsafe."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(archive, f"cannot read the tar archive ({type(exc).__name__}: {exc})") from None
    for m in members:
        reason = unsafe_reason(m)
        if reason:
            raise ArchiveError(archive, reason)
    return [m.name for m in members if m.isfile()]


def in_folder(name: str, folder: str) -> bool:
    return name.startswith(folder.rstrip("/") + "/")


def unpack_folder(archive: str | Path, folder: str, dest: str | Path) -> Path:
    """Unpack the files under ``folder`` of ``archive`` into ``dest/folder`` unless that is
    there already; returns ``dest/folder``. A lock keeps two workers from unpacking the same
    folder; the files land in a temporary folder that is renamed into place when complete."""
    dest = Path(dest)
    folder = folder.rstrip("/")
    final = dest / folder
    dest.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(f"{Path(archive).resolve()}:{folder}".encode()).hexdigest()[:12]
    with open(dest / f".unpack-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():
            return final
        partial = dest / f".unpack-{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)  # left by a killed run: never trusted
        try:
            _extract(Path(archive), folder, partial)
            final.parent.mkdir(parents=True, exist_ok=True)
            (partial / folder).rename(final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return final


def _extract(archive: Path, folder: str, into: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            every = tar.getmembers()
            for m in every:
                reason = unsafe_reason(m)
                if reason:
                    raise ArchiveError(archive, reason)
            members = [m for m in every if in_folder(m.name, folder)]
            if not any(m.isfile() for m in members):
                raise ArchiveError(archive, f"no file under {folder}/")
            tar.extractall(into, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(archive, f"cannot unpack {folder}/ ({type(exc).__name__}: {exc})") from None
