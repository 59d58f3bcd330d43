"""Tar archives as clip sources (MEAD ships each identity as ``video.tar`` + ``audio.tar``).

Listing happens when the specs are made (the clip ids come from the member names); unpacking
happens in the fetch stage, once per archive folder, into ``OUT/raw/``. Only plain
(uncompressed) tar is read. Every member is checked when it is listed: an absolute name, a
``..`` component, a link, a device or fifo, a sparse file, or a name that appears twice (after
``./`` and ``//`` are normalised away) makes the whole archive unusable (``ArchiveError``), and
extraction runs through the standard library's ``data`` filter as a second guard where Python
has it. An unpack goes to a temporary folder that gets a marker naming the archive (path,
size, mtime) and is renamed into place when complete: a run killed mid-unpack leaves nothing
that a later run trusts, and a folder unpacked from another version of the archive is unpacked
again.

Only errors reading the archive are ``ArchiveError``; an error writing under the destination
(permissions, a full disk) is the environment's and propagates as is, so the clip is retried.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from talkbench.errors import FileProblem, TalkbenchError

MARKER = ".unpacked.json"  # inside an unpacked folder: the archive it came from
COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


class ArchiveError(FileProblem):
    """A tar archive that cannot be read or holds an unsafe member: names the file and why."""


class UnpackSpaceError(TalkbenchError):
    """Too little free disk space to unpack a folder of an archive (the disk's fault, not the archive's)."""


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


def member_name(member: tarfile.TarInfo) -> str:
    """The member's name without ``./`` components or repeated slashes."""
    return PurePosixPath(member.name).as_posix()


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
    if member.issparse():
        return f"member {member.name!r} is a sparse file"
    if not (member.isfile() or member.isdir()):
        return f"member {member.name!r} is a device, fifo or other special file"
    return None


def open_tar(archive: Path) -> tarfile.TarFile:
    """The archive opened as plain tar; a compressed one is refused (it could unpack to far
    more than its size, and MEAD ships plain tar)."""
    try:
        with open(archive, "rb") as f:
            head = f.read(6)
        for magic, kind in COMPRESSED.items():
            if head.startswith(magic):
                raise ArchiveError(archive, f"is {kind}-compressed; only plain (uncompressed) tar is read")
        return tarfile.open(archive, "r:")
    except (tarfile.TarError, OSError) as exc:
        raise unreadable(archive, exc) from None


def unreadable(archive: Path, exc: Exception) -> ArchiveError:
    return ArchiveError(archive, f"cannot read the tar archive ({type(exc).__name__}: {exc})")


def checked_members(archive: Path, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member, after checking that each is safe and no file name appears twice."""
    try:
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise unreadable(archive, exc) from None
    seen = set()
    for m in members:
        reason = unsafe_reason(m)
        if reason:
            raise ArchiveError(archive, reason)
        if m.isfile():
            if member_name(m) in seen:
                raise ArchiveError(archive, f"member {member_name(m)!r} appears twice")
            seen.add(member_name(m))
    return members


def list_files(archive: str | Path) -> list[str]:
    """Normalised names of the regular files in a tar archive, in archive order. Raises
    ``ArchiveError`` when the archive cannot be read to its end (corrupt, truncated, compressed)
    or a member is unsafe or repeated."""
    archive = Path(archive)
    with open_tar(archive) as tar:
        return [member_name(m) for m in checked_members(archive, tar) if m.isfile()]


def in_folder(name: str, folder: str) -> bool:
    return name.startswith(folder.rstrip("/") + "/")


def archive_stamp(archive: Path) -> dict:
    st = archive.stat()
    return {"archive": str(archive.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def unpacked_stamp(folder: Path) -> dict | None:
    """The marker an unpack left in ``folder``, or None (no marker: never trusted)."""
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def unpack_folder(archive: str | Path, folder: str, dest: str | Path) -> Path:
    """Unpack the files under ``folder`` of ``archive`` into ``dest/folder`` unless they are
    there already from this very archive (same path, size and mtime); returns ``dest/folder``.
    A lock keeps two workers from unpacking into the same folder; the files land in a
    temporary folder that is renamed into place when complete."""
    archive, dest = Path(archive), Path(dest)
    folder = PurePosixPath(folder).as_posix()
    final = dest / folder
    stamp = archive_stamp(archive)
    dest.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(str(final.resolve()).encode()).hexdigest()[:12]
    with open(dest / f".unpack-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if unpacked_stamp(final) == stamp:
            return final
        partial = dest / f".unpack-{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)  # left by a killed run: never trusted
        try:
            extract_folder(archive, folder, partial)
            (partial / folder / MARKER).write_text(json.dumps(stamp))
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.is_dir() and unpacked_stamp(final) != stamp:
                shutil.rmtree(final)  # unpacked from another version of the archive
            try:
                (partial / folder).rename(final)
            except OSError:
                if unpacked_stamp(final) != stamp:
                    raise
                # another process (where the lock does not hold) finished first: use its unpack
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return final


def extract_folder(archive: Path, folder: str, into: Path) -> None:
    """Extract the files under ``folder`` into ``into`` (which must not exist yet)."""
    with open_tar(archive) as tar:
        members = [m for m in checked_members(archive, tar) if in_folder(member_name(m), folder)]
        if not any(m.isfile() for m in members):
            raise ArchiveError(archive, f"no file under {folder}/")
        needed = sum(m.size for m in members if m.isfile())
        free = shutil.disk_usage(into.parent).free
        if needed > free:
            raise UnpackSpaceError(f"{archive}: unpacking {folder}/ needs {needed} bytes; "
                                   f"{into.parent} has {free} free")
        options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python < 3.10.12 has none
        try:
            tar.extractall(into, members=members, **options)
        except (tarfile.TarError, EOFError) as exc:  # not OSError: that is writing under ``into`` failing
            raise ArchiveError(archive, f"cannot unpack {folder}/ ({type(exc).__name__}: {exc})") from None
