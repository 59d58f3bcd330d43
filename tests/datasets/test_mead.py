"""MEAD from a download folder: per-identity archives (video.tar + audio.tar) and unpacked
trees, the reason codes of what cannot be built, the separate m4a speech reaching the built
clip, resume, the versioned splits, the catalog's emotion/intensity columns (and catalogs built
before them), and the audit's emotion shares.

The download is synthetic: its videos are 3.6 s of a real talking face from the shared data
(HDTF's WDA_KatieHill_000, 256x256, with that clip's own speech as the video's audio track) and
its m4a files hold other speech (JFK, shared data), so the built clip's sound says which one the
pipeline used."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from talkbench import media
from talkbench.cli import app
from talkbench.datasets.archives import ArchiveError, list_files, unpack_folder
from talkbench.datasets.audit import audit
from talkbench.datasets.catalog import COLUMNS, Catalog
from talkbench.datasets.pipeline import build_dataset
from talkbench.datasets.sources import ClipSpec, select
from talkbench.datasets.sources.mead import load_mead
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
    assert (summary["clips"], summary["accepted"], summary["rejected"], summary["failed"]) == (9, 3, 6, 0)
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
    assert not list(out.parent.rglob("escape.txt")) and not list(mead_root.parent.rglob("escape.txt"))

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
    assert again["skipped"] == 9
    with Catalog(out) as cat:
        resumed = {r["clip_id"]: r for r in cat.rows()}
    assert resumed == rows

    # a split: only the four EAT/EDTalk identities
    test_only = build_dataset("mead", mead_root, out, split="test-4id-v1", **opts)
    assert (test_only["clips"], test_only["skipped"]) == (8, 8)

    # the audit reports emotion and intensity shares of the accepted clips
    report = audit(out, tmp_path / "audit", cache=None, figures=False).report
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


@pytest.mark.parametrize("kind", ["absolute", "symlink", "hardlink", "device"])
def test_unsafe_archive_members_are_refused(tmp_path, kind):
    path = tmp_path / "video.tar"
    with tarfile.open(path, "w") as tar:
        add_file(tar, "video/front/angry/level_1/001.mp4", b"x")
        info = tarfile.TarInfo("/etc/evil" if kind == "absolute" else "video/front/angry/level_1/002.mp4")
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "video/front/angry/level_1/001.mp4"
        elif kind == "device":
            info.type = tarfile.CHRTYPE
            info.size = 0
        tar.addfile(info, io.BytesIO(b"") if kind == "absolute" else None)
    with pytest.raises(ArchiveError, match="video.tar: member"):
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
    with pytest.raises(ArchiveError, match="audio.tar: cannot unpack audio/"):
        unpack_folder(path, "audio", tmp_path / "other")
    assert not (tmp_path / "other" / "audio").exists() and not list((tmp_path / "other").glob("*.partial"))


def test_catalog_without_emotion_columns_opens_and_resumes(tmp_path):
    import duckdb

    old = {k: v for k, v in COLUMNS.items() if k not in ("emotion", "intensity")}
    out = tmp_path / "out"
    out.mkdir()
    con = duckdb.connect(str(out / "catalog.duckdb"))
    con.execute(f"CREATE TABLE clips ({', '.join(f'{chr(34)}{k}{chr(34)} {v}' for k, v in old.items())})")
    con.execute("INSERT INTO clips (clip_id, dataset, status, stage, reason) VALUES ('gone', 'vfhq', 'rejected', 'fetch', 'source_missing')")
    con.close()
    specs = [ClipSpec("gone", "vfhq", str(tmp_path / "gone.mp4")), ClipSpec("new", "vfhq", str(tmp_path / "new.mp4"))]
    summary = build_dataset("vfhq", None, out, specs=specs, workers=0, progress=False)
    assert (summary["skipped"], summary["rejected"]) == (1, 2)
    with Catalog(out) as cat:
        rows = {r["clip_id"]: r for r in cat.rows()}
    assert rows["gone"]["emotion"] is None and rows["new"]["reason"] == "source_missing"
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
    filled = {table.headers[j + 1] for j, cell in enumerate(row.cells) if cell.value is not None}
    assert filled == {"SSIM", "Acc_emo(%)"}  # MEAD's SSIM and Acc_emo; nothing under HDTF
    [board] = leaderboard(store, "mead-emotion")
    [breakdown] = board.breakdowns
    assert breakdown.groups == ["angry", "neutral", "happy"] and sum(breakdown.rows[0].clips.values()) == 3
