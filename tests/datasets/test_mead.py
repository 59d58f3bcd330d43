"""MEAD from a download folder: per-identity archives (video.tar + audio.tar) and unpacked
trees, the reason codes of what cannot be built, the separate m4a speech reaching the built
clip, resume, the versioned splits, the catalog's emotion/intensity columns (and catalogs built
before them), and the audit's emotion shares.

The download is synthetic: its videos are 3.6 s of a real talking face from the shared data
(HDTF's WDA_KatieHill_000, 256x256, with that clip's own speech as the video's audio track) and
its m4a files hold other speech (JFK, shared data), so the built clip's sound says which one the
pipeline used."""

from __future__ import annotations

import gzip
import io
import json
import resource
import shutil
import signal
import tarfile
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from talkbench import media
from talkbench.cli import app
from talkbench.datasets import archives
from talkbench.datasets.archives import ArchiveError, UnpackSpaceError, list_files, unpack_folder
from talkbench.datasets.audit import audit
from talkbench.datasets.catalog import COLUMNS, Catalog
from talkbench.datasets.pipeline import BuildError, build_dataset
from talkbench.datasets.sources import ClipSpec, select
from talkbench.datasets.sources.mead import identity_specs, load_mead
from talkbench.datasets.stages import BuildConfig, process_clip
from talkbench.errors import TalkbenchError

SECONDS = 3.6  # 90 frames at 25 fps
RATE = media.AUDIO_RATE


def write_m4a(path: Path, samples: np.ndarray) -> Path:
    """AAC in an m4a, as MEAD ships its speech (16 kHz mono here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=RATE, layout="mono")
        x = samples.astype(np.float32).reshape(1, -1)
        for i in range(0, x.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, i : i + 1024]), format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, i, Fraction(1, RATE)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_tar(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            add_file(tar, name, data)
    return path


@pytest.fixture(scope="module")
def media_parts(shared_data, tmp_path_factory):
    """(video bytes, the video's own speech, JFK speech for the m4a files)."""
    src = shared_data / "video" / "WDA_KatieHill_000.mp4"
    frames = [f for _, f in zip(range(round(SECONDS * 25)), media.iter_frames(src, fps=25, size=256))]
    own = media.read_audio(src)[: round(SECONDS * RATE)]
    video = media.write_video(tmp_path_factory.mktemp("parts") / "clip.mp4", frames, audio=own)
    jfk = media.read_audio(shared_data / "speech" / "en" / "jfk.flac")
    return video.read_bytes(), own, jfk


def speech(jfk: np.ndarray, k: int) -> np.ndarray:
    """A different stretch of JFK for each m4a."""
    return jfk[k * 2 * RATE : k * 2 * RATE + round(SECONDS * RATE)]


@pytest.fixture(scope="module")
def mead_root(media_parts, tmp_path_factory) -> Path:
    video, _, jfk = media_parts
    root = tmp_path_factory.mktemp("mead")
    tmp = tmp_path_factory.mktemp("m4a")
    m4a = {k: write_m4a(tmp / f"{k}.m4a", speech(jfk, k)).read_bytes() for k in range(4)}
    # M003: the archives as distributed; two front clips, and a left_30 one that must stay packed
    make_tar(root / "M003" / "video.tar", {"video/front/angry/level_3/001.mp4": video,
                                           "video/front/neutral/level_1/001.mp4": video,
                                           "video/left_30/angry/level_3/001.mp4": video})
    make_tar(root / "M003" / "audio.tar", {"audio/angry/level_3/001.m4a": m4a[0], "audio/neutral/level_1/001.m4a": m4a[1]})
    # W009: a member that climbs out of the archive
    make_tar(root / "W009" / "video.tar", {"video/front/sad/level_1/001.mp4": video, "../../escape.txt": b"owned"})
    make_tar(root / "W009" / "audio.tar", {"audio/sad/level_1/001.m4a": m4a[2]})
    # W015: a good video.tar, an audio.tar cut short in its first member's data
    make_tar(root / "W015" / "video.tar", {"video/front/fear/level_2/001.mp4": video})
    whole = make_tar(root / "W015" / "audio.tar", {"audio/fear/level_2/001.m4a": m4a[3]}).read_bytes()
    (root / "W015" / "audio.tar").write_bytes(whole[:512 + 100])
    # M030: unpacked; one good clip, one without its m4a, one truncated video, one m4a that is no audio
    tree = root / "M030" / "video" / "front" / "happy" / "level_2"
    tree.mkdir(parents=True)
    (tree / "001.mp4").write_bytes(video)
    (tree / "002.mp4").write_bytes(video)
    (tree / "003.mp4").write_bytes(video[: len(video) // 2])
    (tree / "004.mp4").write_bytes(video)
    (root / "M030" / "audio" / "happy" / "level_2").mkdir(parents=True)
    (root / "M030" / "audio" / "happy" / "level_2" / "001.m4a").write_bytes(m4a[2])
    (root / "M030" / "audio" / "happy" / "level_2" / "003.m4a").write_bytes(m4a[3])
    (root / "M030" / "audio" / "happy" / "level_2" / "004.m4a").write_bytes(b"not audio")
    # M012: no front view at all
    (root / "M012" / "video" / "left_30" / "sad" / "level_1").mkdir(parents=True)
    (root / "M012" / "video" / "left_30" / "sad" / "level_1" / "001.mp4").write_bytes(video)
    return root


EXPECTED = {  # clip id -> (status, reason, emotion, intensity)
    "M003_front_angry_level_3_001": ("accepted", None, "angry", 3),
    "M003_front_neutral_level_1_001": ("accepted", None, "neutral", 1),
    "M030_front_happy_level_2_001": ("accepted", None, "happy", 2),
    "M030_front_happy_level_2_002": ("rejected", "audio_missing", "happy", 2),
    "M030_front_happy_level_2_003": ("rejected", "truncated", "happy", 2),
    "M030_front_happy_level_2_004": ("rejected", "bad_audio", "happy", 2),
    "W009_front": ("rejected", "bad_archive", None, None),
    "W015_front": ("rejected", "bad_archive", None, None),
    "M012_front": ("rejected", "view_missing", None, None),
}


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


BUILD_OPTIONS = dict(workers=1, progress=False, min_face_px=128, check_language=False)


@pytest.fixture(scope="module")
def built(mead_root, tmp_path_factory) -> tuple[Path, dict]:
    """The synthetic download built once: (output folder, summary)."""
    out = tmp_path_factory.mktemp("built") / "out"
    return out, build_dataset("mead", mead_root, out, **BUILD_OPTIONS)


@pytest.mark.shared_data
def test_build_mead_download(shared_data, media_parts, mead_root, built, tmp_path):
    out, summary = built
    opts = BUILD_OPTIONS
    assert (summary.clips, summary.accepted, summary.rejected, summary.failed) == (9, 3, 6, 0)
    with Catalog(out) as cat:
        rows = {r["clip_id"]: r for r in cat.rows()}
    assert {k: (r["status"], r["reason"], r["emotion"], r["intensity"]) for k, r in rows.items()} == EXPECTED
    for cid, r in rows.items():
        assert (r["dataset"], r["person"], r["expected_language"]) == ("mead", cid[:4], "en")
        assert json.loads(r["meta"])["view"] == "front"
    assert rows["M003_front_angry_level_3_001"]["split"] == "test-4id-v1"
    assert json.loads(rows["M003_front_angry_level_3_001"]["meta"])["splits"] == ["official-test-v1", "test-4id-v1"]
    assert rows["M012_front"]["split"] == "train-4id-v1"
    assert rows["M003_front_angry_level_3_001"]["source"] == f"{mead_root / 'M003' / 'video.tar'}:video/front/angry/level_3/001.mp4"
    assert "'../../escape.txt' climbs out of the archive" in rows["W009_front"]["error"]
    assert "W015/audio.tar: cannot read the tar archive" in rows["W015_front"]["error"]
    assert "views found: left_30" in rows["M012_front"]["error"]
    assert "audio/happy/level_2/002.m4a" in rows["M030_front_happy_level_2_002"]["error"]
    assert rows["M030_front_happy_level_2_003"]["stage"] == rows["M030_front_happy_level_2_004"]["stage"] == "cut"
    assert "004.m4a" in rows["M030_front_happy_level_2_004"]["error"]

    # only the front view and the audio were unpacked, completely, and nothing half-done is left
    raw = out / "raw" / "mead" / "M003"
    assert sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file() and not p.name.startswith(".")) == [
        "audio/angry/level_3/001.m4a", "audio/neutral/level_1/001.m4a",
        "video/front/angry/level_3/001.mp4", "video/front/neutral/level_1/001.mp4"]
    assert not list(out.rglob("*.partial"))

    # the built clip speaks the m4a's speech, not the video's own track
    _, own, jfk = media_parts
    for cid, k in (("M003_front_angry_level_3_001", 0), ("M003_front_neutral_level_1_001", 1),
                   ("M030_front_happy_level_2_001", 2)):
        r = rows[cid]
        built = media.read_audio(out / r["path"])
        assert r["frames"] == 90 and r["language"] == "en"
        assert correlation(built, speech(jfk, k)) > 0.95
        assert abs(correlation(built, own)) < 0.2

    # resumed: no work, same rows
    again = build_dataset("mead", mead_root, out, **opts)
    assert again.skipped == 9
    with Catalog(out) as cat:
        resumed = {r["clip_id"]: r for r in cat.rows()}
    assert resumed == rows

    # a split: only the four EAT/EDTalk identities
    test_only = build_dataset("mead", mead_root, out, split="test-4id-v1", **opts)
    assert (test_only.clips, test_only.skipped) == (8, 8)

    # the audit reports emotion and intensity shares of the accepted clips
    report = audit(out, tmp_path / "audit", cache=None, figures=False).report.to_json()
    hours = SECONDS / 3600
    assert report["emotions"] == [
        {"emotion": e, "clips": 1, "hours": pytest.approx(hours), "share_clips": pytest.approx(1 / 3),
         "share_hours": pytest.approx(1 / 3)} for e in ("angry", "happy", "neutral")]
    assert [(x["intensity"], x["clips"]) for x in report["intensities"]] == [(1, 1), (2, 1), (3, 1)]
    assert json.loads((tmp_path / "audit" / "report.json").read_text())["emotions"][0]["emotion"] == "angry"
    md = (tmp_path / "audit" / "report.md").read_text()
    assert "## Emotions and intensities" in md and "| angry | 1 | 33.3% |" in md
    assert "<h2>Emotions and intensities</h2>" in (tmp_path / "audit" / "report.html").read_text()
    printed = CliRunner().invoke(app, ["audit", str(out), "--out", str(tmp_path / "audit-cli"), "--bootstrap", "50"])
    assert printed.exit_code == 0, printed.output
    assert "emotions (of clips): angry 33.3%, happy 33.3%, neutral 33.3%; intensities: level 1 33.3%" in printed.output


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def split_tree(root: Path) -> Path:
    """Empty files in MEAD's layout (loading only lists them): M003 (a test identity) with 12
    neutral clips, angry level_1 missing 004, a short angry level_2; W011 with 7 sad clips."""
    folders = {("M003", "neutral", 1): range(1, 13), ("M003", "angry", 1): [1, 2, 3, 5, 6, 7, 8, 9],
               ("M003", "angry", 2): range(1, 6), ("W011", "sad", 3): range(1, 8)}
    for (ident, emotion, level), numbers in folders.items():
        for n in numbers:
            touch(root / ident / "video" / "front" / emotion / f"level_{level}" / f"{n:03d}.mp4")
            touch(root / ident / "audio" / emotion / f"level_{level}" / f"{n:03d}.m4a")
    return root


def ids(specs: list[ClipSpec]) -> set[str]:
    return {s.clip_id for s in specs}


def test_mead_splits(tmp_path):
    root = split_tree(tmp_path / "mead")
    every = load_mead(root)
    assert len(every) == 12 + 8 + 5 + 7
    m003 = {s.clip_id for s in every if s.person == "M003"}
    assert ids(load_mead(root, split="test-4id-v1")) == m003
    assert ids(load_mead(root, split="train-4id-v1")) == {f"W011_front_sad_level_3_{n:03d}" for n in range(1, 8)}
    official = (
        {f"M003_front_neutral_level_1_{n:03d}" for n in range(3, 13)}  # the last 10 of 12
        | {f"M003_front_angry_level_1_{n:03d}" for n in (3, 5, 6, 7, 8, 9)}  # the last 6 present (004 is not)
        | {f"M003_front_angry_level_2_{n:03d}" for n in range(1, 6)}  # fewer than 6: all
        | {f"W011_front_sad_level_3_{n:03d}" for n in range(2, 8)}
    )
    assert ids(load_mead(root, split="official-test-v1")) == official
    for name in ("test-4id-v1", "train-4id-v1", "official-test-v1"):  # select() over all specs agrees
        assert ids(select(every, split=name)) == ids(load_mead(root, split=name))
    s = next(s for s in every if s.clip_id == "M003_front_neutral_level_1_012")
    assert (s.emotion, s.intensity, s.split, s.splits) == ("neutral", 1, "test-4id-v1", ("official-test-v1", "test-4id-v1"))
    assert s.audio_source == str(root / "M003" / "audio" / "neutral" / "level_1" / "012.m4a")
    with pytest.raises(TalkbenchError, match="unknown MEAD split 'test'; choose one of test-4id-v1"):
        load_mead(root, split="test")
    with pytest.raises(TalkbenchError, match="unknown MEAD view 'side'"):
        load_mead(root, view="side")
    with pytest.raises(TalkbenchError, match="one identity's folder"):
        load_mead(root / "M003")
    with pytest.raises(TalkbenchError, match="no identity folder here"):
        load_mead(tmp_path)


UNSAFE = {  # kind -> the second member's name, and what the error says
    "absolute": ("/etc/evil", "has an absolute path"),
    "dotdot": ("video/front/../../evil.mp4", "climbs out of the archive"),
    "symlink": ("video/front/angry/level_1/002.mp4", "is a link"),
    "hardlink": ("video/front/angry/level_1/002.mp4", "is a link"),
    "device": ("video/front/angry/level_1/002.mp4", "is a device"),
    "sparse": ("video/front/angry/level_1/002.mp4", "is a sparse file"),
    "duplicate": ("./video/front/angry/level_1/001.mp4", "'video/front/angry/level_1/001.mp4' appears twice"),
}


@pytest.mark.parametrize("kind", list(UNSAFE))
def test_unsafe_archive_members_are_refused(tmp_path, kind):
    path = tmp_path / "video.tar"
    name, problem = UNSAFE[kind]
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        add_file(tar, "video/front/angry/level_1/001.mp4", b"x")
        info = tarfile.TarInfo(name)
        info.type, info.linkname = {"symlink": (tarfile.SYMTYPE, "/etc/passwd"),
                                    "hardlink": (tarfile.LNKTYPE, "video/front/angry/level_1/001.mp4"),
                                    "device": (tarfile.CHRTYPE, ""),
                                    "sparse": (tarfile.GNUTYPE_SPARSE, "")}.get(kind, (tarfile.REGTYPE, ""))
        tar.addfile(info, io.BytesIO(b"") if info.type == tarfile.REGTYPE else None)
    with pytest.raises(ArchiveError, match=f"video.tar: member .*{problem}"):
        list_files(path)
    with pytest.raises(ArchiveError, match="video.tar: member"):
        unpack_folder(path, "video/front", tmp_path / "out")
    assert not (tmp_path / "out" / "video").exists()


def test_unpack_is_idempotent_and_ignores_a_killed_run(tmp_path):
    path = make_tar(tmp_path / "audio.tar", {"audio/sad/level_1/001.m4a": b"one", "other/x.txt": b"no"})
    dest = tmp_path / "raw"
    final = unpack_folder(path, "audio", dest)
    assert final == dest / "audio" and (final / "sad" / "level_1" / "001.m4a").read_bytes() == b"one"
    assert not (dest / "other").exists()
    # a run killed mid-unpack leaves its temporary folder (named like the lock) and no final one
    (lock,) = dest.glob(".unpack-*.lock")
    partial = lock.with_suffix(".partial")
    shutil.rmtree(final)
    (partial / "audio" / "sad" / "level_1").mkdir(parents=True)
    (partial / "audio" / "sad" / "level_1" / "001.m4a").write_bytes(b"half")
    unpack_folder(path, "audio", dest)
    assert (final / "sad" / "level_1" / "001.m4a").read_bytes() == b"one" and not partial.exists()
    (final / "sad" / "level_1" / "001.m4a").write_bytes(b"kept")  # done once: a further call does nothing
    unpack_folder(path, "audio", dest)
    assert (final / "sad" / "level_1" / "001.m4a").read_bytes() == b"kept"
    # a truncated archive: an error naming it, and nothing left that a later run would trust
    whole = path.read_bytes()
    path.write_bytes(whole[:600])
    with pytest.raises(ArchiveError, match="audio.tar: cannot read the tar archive"):
        unpack_folder(path, "audio", tmp_path / "other")
    assert not (tmp_path / "other" / "audio").exists() and not list((tmp_path / "other").glob("*.partial"))
    # another version of the archive: the folder is unpacked again, stale files gone
    make_tar(path, {"audio/sad/level_1/002.m4a": b"two"})
    unpack_folder(path, "audio", dest)
    assert sorted(p.name for p in final.rglob("*")) == [".unpacked.json", "002.m4a", "level_1", "sad"]
    # a folder without the marker (from a killed run of old, or put there by hand) is not trusted
    (final / ".unpacked.json").unlink()
    (final / "sad" / "level_1" / "002.m4a").write_bytes(b"hand")
    unpack_folder(path, "audio", dest)
    assert (final / "sad" / "level_1" / "002.m4a").read_bytes() == b"two"


def test_unpack_never_writes_outside_its_folder(tmp_path):
    path = make_tar(tmp_path / "video.tar", {"video/front/sad/level_1/001.mp4": b"x",
                                             "video/front/../../../../escape.txt": b"owned"})
    dest = tmp_path / "a" / "b" / "raw"
    with pytest.raises(ArchiveError, match="climbs out of the archive"):
        unpack_folder(path, "video/front", dest)
    assert not list(tmp_path.rglob("escape.txt")) and not (dest / "video").exists()


def test_unpack_uses_the_folder_another_process_finished_first(tmp_path, monkeypatch):
    """Where the lock does not hold (a filesystem without flock), the rename finds the folder there."""
    path = make_tar(tmp_path / "audio.tar", {"audio/sad/level_1/001.m4a": b"one"})
    dest = tmp_path / "raw"
    theirs = unpack_folder(path, "audio", tmp_path / "other")
    extract = archives.extract_folder

    def other_process_finishes_meanwhile(archive, folder, into):
        extract(archive, folder, into)
        shutil.copytree(theirs, dest / folder)

    monkeypatch.setattr(archives, "extract_folder", other_process_finishes_meanwhile)
    final = unpack_folder(path, "audio", dest)
    assert (final / "sad" / "level_1" / "001.m4a").read_bytes() == b"one"
    assert not list(dest.glob("*.partial"))


@contextmanager
def file_size_limit(limit: int):
    """Writing a file beyond ``limit`` bytes fails with EFBIG (File too large), even as root."""
    before, on_signal = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)
        signal.signal(signal.SIGXFSZ, on_signal)


def test_unpack_refuses_a_compressed_archive_and_one_larger_than_the_free_space(tmp_path):
    plain = make_tar(tmp_path / "plain.tar", {"audio/sad/level_1/001.m4a": b"one"})
    packed = tmp_path / "audio.tar"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(ArchiveError, match="audio.tar: is gzip-compressed; only plain"):
        list_files(packed)
    # a member larger than the free space (the archive is a sparse file: it takes no room itself)
    huge = tmp_path / "huge.tar"
    size = shutil.disk_usage(tmp_path).free + 2**30
    with open(huge, "wb") as f:
        info = tarfile.TarInfo("audio/sad/level_1/001.m4a")
        info.size = size
        f.write(info.tobuf(tarfile.PAX_FORMAT))
        f.truncate(f.tell() + size + (-size) % 512 + 1024)
    try:  # the size limit: were the check missing, the unpack would fail at once, not fill the disk
        needs = f"huge.tar: unpacking audio/ needs {size} bytes"
        with file_size_limit(2**20), pytest.raises(UnpackSpaceError, match=needs):
            unpack_folder(huge, "audio", tmp_path / "raw")
        assert not (tmp_path / "raw" / "audio").exists()
    finally:
        huge.unlink()


def test_a_write_error_while_unpacking_fails_the_clip_for_a_retry(tmp_path):
    """Only reading the archive makes it a bad archive; a file the disk refuses (here: the
    file size limit) is the environment's problem, and the clip is retried on a re-run."""
    root = tmp_path / "mead"
    make_tar(root / "M003" / "video.tar", {"video/front/sad/level_1/001.mp4": b"x" * 4096})
    make_tar(root / "M003" / "audio.tar", {"audio/sad/level_1/001.m4a": b"x"})
    [spec] = load_mead(root)
    with file_size_limit(1024):
        row = process_clip(spec, BuildConfig(out_dir=tmp_path / "out"))
    assert (row["status"], row["stage"], row["reason"]) == ("failed", "fetch", "error")
    assert row["error"].startswith("OSError: [Errno 27] File too large")


def test_member_names_are_normalised_and_one_clip_is_one_member(tmp_path):
    root = tmp_path / "mead"
    make_tar(root / "W011" / "video.tar", {"./video/front/sad/level_1/001.mp4": b"v"})
    make_tar(root / "W011" / "audio.tar", {"./audio//sad/level_1/001.m4a": b"a"})
    [spec] = identity_specs(root / "W011", "front")
    assert spec.reject is None and spec.video_member.name == "video/front/sad/level_1/001.mp4"
    raw = tmp_path / "raw"
    for member in (spec.video_member, spec.audio_member):
        unpack_folder(member.archive, member.folder, raw / member.into)
        assert member.unpacked(raw).is_file()
    # the same clip under two folders of one archive: refused, naming both
    make_tar(root / "M003" / "video.tar", {"video/front/sad/level_1/001.mp4": b"v",
                                           "M003/video/front/sad/level_1/001.mp4": b"v"})
    [row] = identity_specs(root / "M003", "front")
    assert (row.clip_id, row.reject[0]) == ("M003_front", "bad_archive")
    assert "video/front/sad/level_1/001.mp4 and" in row.reject[1] and "are the same clip" in row.reject[1]


def test_catalog_without_emotion_columns_opens_and_resumes(tmp_path):
    import duckdb

    old = {k: v for k, v in COLUMNS.items() if k not in ("emotion", "intensity")}
    out = tmp_path / "out"
    out.mkdir()
    con = duckdb.connect(str(out / "catalog.duckdb"))
    con.execute(f"CREATE TABLE clips ({', '.join(f'{chr(34)}{k}{chr(34)} {v}' for k, v in old.items())})")
    con.execute("INSERT INTO clips (clip_id, dataset, status, stage, reason) VALUES ('old', 'vfhq', 'rejected', 'face', 'no_face')")
    # older versions stored a missing file as a final rejection: it is retried now
    con.execute("INSERT INTO clips (clip_id, dataset, status, stage, reason) VALUES ('gone', 'vfhq', 'rejected', 'fetch', 'source_missing')")
    con.close()
    specs = [ClipSpec(name, "vfhq", str(tmp_path / f"{name}.mp4")) for name in ("old", "gone", "new")]
    summary = build_dataset("vfhq", None, out, specs=specs, workers=0, progress=False)
    assert (summary.skipped, summary.rejected, summary.failed) == (1, 1, 2)
    with Catalog(out) as cat:
        rows = {r["clip_id"]: r for r in cat.rows()}
    assert rows["old"]["emotion"] is None and rows["new"]["reason"] == "source_missing"
    assert (rows["gone"]["status"], rows["gone"]["reason"]) == ("failed", "source_missing")
    assert "emotion" in rows["new"] and rows["new"]["intensity"] is None


def test_cli_builds_mead_from_root(tmp_path):
    """Identity-level rejections need no media: a bad archive and a missing view."""
    root = tmp_path / "mead"
    make_tar(root / "W009" / "video.tar", {"video/front/sad/level_1/001.mp4": b"x", "/abs.txt": b"x"})
    touch(root / "M012" / "video" / "top" / "sad" / "level_1" / "001.mp4")
    runner = CliRunner()
    result = runner.invoke(app, ["data", "build", "mead", "--root", str(root), "--out", str(tmp_path / "out"),
                                 "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["clips"], data["rejected"]) == (2, 2)
    assert set(data["reasons"]) == {"bad_archive", "view_missing"}
    assert data["reasons"]["view_missing"]["stage"] == "fetch"
    assert data["min_face_px"] == 256  # MEAD's default (docs/datasets/mead.md)
    result = runner.invoke(app, ["data", "build", "mead", "--root", str(root), "--view", "top", "--out",
                                 str(tmp_path / "out"), "--workers", "0", "--json"])
    assert isinstance(result.exception, BuildError) and "view: 'front' -> 'top'" in str(result.exception)
    result = runner.invoke(app, ["data", "build", "mead", "--root", str(root), "--view", "top", "--out",
                                 str(tmp_path / "top"), "--workers", "0", "--json", "--split", "train-4id-v1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # W009 is a test identity: only M012's top clip, which has no m4a
    assert (data["clips"], list(data["reasons"])) == (1, ["audio_missing"])
    result = runner.invoke(app, ["data", "build", "mead", "--manifest", str(root), "--out", str(tmp_path / "out"),
                                 "--workers", "0", "--json"])  # --manifest DIR is the same root; all done already
    assert result.exit_code == 0 and json.loads(result.stdout)["skipped"] == 2
    result = runner.invoke(app, ["data", "build", "mead", "--out", str(tmp_path / "x")])
    assert isinstance(result.exception, TalkbenchError) and "mead needs --root DIR" in str(result.exception)
    result = runner.invoke(app, ["data", "build", "hdtf", "--root", str(root), "--out", str(tmp_path / "x")])
    assert isinstance(result.exception, TalkbenchError) and "--root is for mead" in str(result.exception)
    result = runner.invoke(app, ["data", "build", "hdtf", "--manifest", str(root), "--view", "top", "--out",
                                 str(tmp_path / "x")])
    assert isinstance(result.exception, TalkbenchError) and "a camera view is a MEAD option" in str(result.exception)


@pytest.mark.shared_data
def test_built_mead_clips_fill_flowvqtalker_table_1_with_their_emotions(shared_data, built, tmp_path):
    """From the catalog to the paper table: the built clips as an ``mead-emotion`` benchmark, a
    built-in method scored under ``flowvqtalker-t1``, its MEAD row measured, each clip's
    emotion label reaching the emotion metric and the board's per-emotion breakdown."""
    from talkbench.leaderboard.benchmarks import BenchmarkClip, clip_list_sha256, get_benchmark
    from talkbench.leaderboard.evaluate import run_methods
    from talkbench.leaderboard.ranking import leaderboard
    from talkbench.leaderboard.store import Store
    from talkbench.leaderboard.tables import build_table
    from talkbench.metrics.paper_protocols import protocol_settings

    out, _ = built
    with Catalog(out) as cat:
        accepted = [r for r in cat.rows() if r["status"] == "accepted"]
    clips = [BenchmarkClip(id=r["clip_id"], language="en", family="Indo-European", emotion=r["emotion"],
                           intensity=r["intensity"]) for r in accepted]  # fmt: skip
    spec = get_benchmark("mead-emotion").model_copy(
        update={"version": "test", "clips": clips, "clip_list_sha256": clip_list_sha256(clips)})
    store = Store(tmp_path / "lb.duckdb")
    settings = protocol_settings("flowvqtalker-t1", "ssim,emotion")
    run_methods(store, ["static-source"], spec, "speech-driven", tmp_path / "outputs", data_dir=out, settings=settings)

    table = build_table(store, "flowvqtalker", 1)
    row = next(r for r in table.rows if r.provenance == "measured")
    assert row.label == "static-source (flowvqtalker-t1-v1)"
    groups = [group for group, span in table.header_groups for _ in range(span)]
    filled = {(groups[j], table.headers[j + 1]) for j, cell in enumerate(row.cells) if cell.value is not None}
    assert filled == {("MEAD", "SSIM"), ("MEAD", "Acc_emo(%)")}  # nothing under HDTF
    [board] = leaderboard(store, "mead-emotion")
    [breakdown] = board.breakdowns
    assert breakdown.groups == ["angry", "neutral", "happy"] and sum(breakdown.rows[0].clips.values()) == 3
