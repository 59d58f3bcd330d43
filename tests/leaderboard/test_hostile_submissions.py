"""Hostile submissions: 60 malformed ones, each refused with a message naming its problem,
nothing stored, nothing left in $TMPDIR and nothing written anywhere else under the test's
folder; a representative subset goes through ``talkbench submit`` in-process (exit code 2).

The bulk calls ``evaluate.submit`` (what the command calls) on a one-clip cut of the ``sample``
benchmark: the command reaches only shipped benchmarks by name, and one clip keeps a case
under a second. Every submission is the valid one (a lossy re-encode of the reference) with one
hostile change, so the refusal is that change's.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml

from talkbench import media
from talkbench.leaderboard.benchmarks import clip_list_sha256, get_benchmark, resolve_clips
from talkbench.leaderboard.evaluate import default_settings, submit
from talkbench.leaderboard.names import SubmitterKey
from talkbench.leaderboard.submission import (COPY_SSIM, TMP_PREFIX, Limits, SubmissionError, remove_stale_extractions,
                                              validate_submission)

CLIP = "tr_001"  # the sample's shortest clip (86 frames)
META = {"method": "HostileTalker", "authors": ["A. Author"], "licence": "MIT", "resolution": 512,
        "contact": "a@example.org"}
KEY = SubmitterKey("hostile-suite-submitter-key-0123456789")
EMPTY_COUNTS = {t: 0 for t in ("benchmarks", "clips", "methods", "runs", "clip_results", "aggregates")}


@pytest.fixture(scope="module")
def one_spec():
    full = get_benchmark("sample")
    clips = [c for c in full.clips if c.id == CLIP]
    return full.model_copy(update={"name": "sample-one", "clips": clips, "clip_list_sha256": clip_list_sha256(clips)})


@pytest.fixture(scope="module")
def reference(one_spec) -> Path:
    return resolve_clips(one_spec)[0].video


@pytest.fixture(scope="module")
def base(tmp_path_factory, valid_submission) -> Path:
    """submission.yaml + videos/tr_001.mp4, the lossy re-encode conftest makes."""
    root = tmp_path_factory.mktemp("base") / "sub"
    (root / "videos").mkdir(parents=True)
    (root / "submission.yaml").write_text(yaml.safe_dump(META))
    shutil.copyfile(valid_submission / "videos" / f"{CLIP}.mp4", root / "videos" / f"{CLIP}.mp4")
    return root


INCOMPRESSIBLE = np.random.default_rng(0).bytes(200_000)


@pytest.fixture(scope="module")
def assets(tmp_path_factory, reference) -> dict[str, Path]:
    """Real videos that break one rule each (a few frames where the rule is a header's)."""
    out = tmp_path_factory.mktemp("assets")
    frames = media.read_frames(reference)
    few = frames[:8]
    flat = np.full((8, 2048, 2048, 3), 128, np.uint8)
    return {
        "fps30": media.write_video(out / "fps30.mp4", few, fps=30),
        "short": media.write_video(out / "short.mp4", np.ascontiguousarray(frames[:len(frames) - 15, ::2, ::2])),
        "nonsquare": media.write_video(out / "nonsquare.mp4", few[:, :448]),
        "small": media.write_video(out / "small.mp4", np.ascontiguousarray(few[:, ::4, ::4])),
        "huge": media.write_video(out / "huge.mp4", flat[:2]),
        "lossless": media.write_video(out / "lossless.mp4", frames, lossless=True),
        "crf18": media.write_video(out / "crf18.mp4", frames, crf=18),
        "shifted": media.write_video(out / "shifted.mp4", np.concatenate([frames[:1], frames[:-1]]), crf=18),
    }


@dataclass
class Ctx:
    work: Path  # where the submission is built
    base: Path
    assets: dict[str, Path]
    reference: Path
    spec: object

    def folder(self, edit: Callable[[Path], object] | None = None) -> Path:
        sub = self.work / "sub"
        shutil.copytree(self.base, sub, symlinks=True)
        if edit:
            edit(sub)
        return sub

    def members(self) -> list[tuple[str, bytes]]:
        return [(p.relative_to(self.base).as_posix(), p.read_bytes())
                for p in sorted(self.base.rglob("*")) if p.is_file()]

    def zip(self, members, name: str = "sub.zip", compression=zipfile.ZIP_DEFLATED) -> Path:
        path = self.work / name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate names are the point of one case
            with zipfile.ZipFile(path, "w", compression) as zf:
                for member, data in members:
                    zf.writestr(member, data)
        return path

    def video(self, name: str) -> Callable[[Path], object]:
        return lambda sub: shutil.copyfile(self.assets[name], sub / "videos" / f"{CLIP}.mp4")


def _write(rel: str, data: bytes | str) -> Callable[[Path], object]:
    def edit(sub: Path):
        path = sub / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return edit


def _meta(text: str) -> Callable[[Path], object]:
    return _write("submission.yaml", text)


def _patch_member(path: Path, name: str, *, size: int | None = None, flags: int | None = None) -> Path:
    """Rewrite a member's uncompressed size or flag bits in both its headers (a lying archive)."""
    buf = bytearray(path.read_bytes())
    raw = name.encode()
    # (signature, offset of flags, of the uncompressed size, of the name length, of the name)
    for sig, flag_at, size_at, len_at, name_at in ((b"PK\x01\x02", 8, 24, 28, 46), (b"PK\x03\x04", 6, 22, 26, 30)):
        i = buf.find(sig)
        while i >= 0:
            n = struct.unpack_from("<H", buf, i + len_at)[0]
            if bytes(buf[i + name_at:i + name_at + n]) == raw:
                if size is not None:
                    struct.pack_into("<I", buf, i + size_at, size)
                if flags is not None:
                    struct.pack_into("<H", buf, i + flag_at, flags)
            i = buf.find(sig, i + 4)
    path.write_bytes(bytes(buf))
    return path


def _fifo(sub: Path):
    (sub / "videos" / f"{CLIP}.mp4").unlink()
    os.mkfifo(sub / "videos" / f"{CLIP}.mp4")


def _symlinked_dir(sub: Path):
    real = sub.parent / "elsewhere"
    (sub / "videos").rename(real)
    (sub / "videos").symlink_to(real, target_is_directory=True)


def _symlinked_video(ctx: Ctx):
    def edit(sub: Path):
        (sub / "videos" / f"{CLIP}.mp4").unlink()
        (sub / "videos" / f"{CLIP}.mp4").symlink_to(ctx.reference)
    return edit


def _zip_with(ctx: Ctx, extra: list, drop_video: bool = False, **kw) -> Path:
    members = [m for m in ctx.members() if not (drop_video and m[0].endswith(".mp4"))]
    return ctx.zip(members + extra, **kw)


def _info(name: str, mode: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("placeholder")
    info.filename = name  # the constructor would normalise what the case needs as written
    info.compress_type = zipfile.ZIP_DEFLATED
    if mode is not None:
        info.external_attr = mode << 16
    return info


def _alias_bomb() -> str:
    lines = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    body = yaml.safe_dump(META)
    return "\n".join(lines) + "\n" + body.replace("authors:\n- A. Author\n", "authors: *l8\n")


def _billion(ctx):
    return ctx.folder(_meta(_alias_bomb()))


@dataclass
class Case:
    id: str
    build: Callable[[Ctx], Path]
    expect: tuple[str, ...]  # substrings of the problems; {sha} is the spec's recorded reference hash
    limits: Limits = field(default_factory=Limits)
    spec: dict = field(default_factory=dict)  # spec fields to override
    only: bool = False  # the one problem reported


N = f"videos/{CLIP}.mp4"
CASES = [
    # -- metadata ---------------------------------------------------------------------------
    Case("metadata-missing", lambda c: c.folder(lambda s: (s / "submission.yaml").unlink()),
         ("submission.yaml: missing: every submission needs submission.yaml at its top level",), only=True),
    Case("metadata-missing-in-wrapped-zip",
         lambda c: c.zip([(f"w/{n}", d) for n, d in c.members() if n != "submission.yaml"]
                         + [("w/x/submission.yaml", b"method: x\n")]),
         ("submission.yaml: missing", "found x/submission.yaml"), only=True),
    Case("metadata-not-yaml", lambda c: c.folder(_meta("method: [unclosed\n  authors: {\n")),
         ("submission.yaml: is not plain YAML",), only=True),
    Case("metadata-python-tag",
         lambda c: c.folder(_meta(f"method: !!python/object/apply:os.system ['touch {c.work / 'pwned'}']\n")),
         ("submission.yaml: is not plain YAML",), only=True),
    Case("metadata-not-a-mapping", lambda c: c.folder(_meta("- a\n- b\n")),
         ("submission.yaml: must be a mapping",), only=True),
    Case("metadata-not-utf8", lambda c: c.folder(_write("submission.yaml", b"method: \xff\xfe\x00x\n")),
         ("submission.yaml: is not UTF-8 text",), only=True),
    Case("metadata-oversized", lambda c: c.folder(_meta(yaml.safe_dump(META | {"description": "x" * 70_000}))),
         ("submission.yaml: oversized",), only=True),
    Case("metadata-schema", lambda c: c.folder(_meta(yaml.safe_dump({k: v for k, v in META.items() if k != "contact"}
                                                                      | {"gpu": "A100"}))),
         ("field 'contact': Field required", "field 'gpu': Extra inputs are not permitted")),
    Case("metadata-alias-bomb", _billion, ("field 'authors.0': Input should be a valid string",
                                           "field 'l0': Extra inputs are not permitted")),
    Case("metadata-method-with-escape", lambda c: c.folder(_meta(yaml.safe_dump(META | {"method": "My\x1b[2JTalker"}))),
         ("field 'method': String should match pattern",), only=True),
    # -- layout -----------------------------------------------------------------------------
    Case("clip-missing", lambda c: c.folder(lambda s: (s / N).unlink()), (f"{CLIP}: missing: no {N}",), only=True),
    Case("clip-extra", lambda c: c.folder(lambda s: shutil.copyfile(s / N, s / "videos" / "ar_001.mp4")),
         ("ar_001: extra clip: not in benchmark sample-one",), only=True),
    Case("clip-duplicate-case", lambda c: c.folder(lambda s: shutil.copyfile(s / N, s / "videos" / "TR_001.mp4")),
         ("duplicate clip id: videos/tr_001.mp4 and videos/TR_001.mp4",)),
    Case("clip-wrong-extension", lambda c: c.folder(lambda s: (s / N).rename(s / "videos" / f"{CLIP}.avi")),
         (f"videos/{CLIP}.avi: not a video: expected videos/<clip_id>.mp4", f"{CLIP}: missing")),
    Case("clip-text-as-mp4", lambda c: c.folder(_write(N, "not a video\n" * 10)),
         (f"{CLIP}: not a video: content is not an MP4 container",), only=True),
    Case("clip-pickle-as-mp4", lambda c: c.folder(_write(N, b"\x80\x04\x95" + b"cos\nsystem\n" * 20)),
         (f"{CLIP}: not a video: content is not an MP4 container",), only=True),
    Case("unexpected-file", lambda c: c.folder(_write("run.py", "print('hi')\n")),
         ("run.py: unexpected file",), only=True),
    Case("nested-video", lambda c: c.folder(_write("videos/nested/x.mp4", b"x")),
         ("videos/nested/x.mp4: unexpected file",), only=True),
    # -- video content ------------------------------------------------------------------------
    Case("clip-truncated", lambda c: c.folder(lambda s: (s / N).write_bytes((s / N).read_bytes()[:40_000])),
         (f"{CLIP}: undecodable",), only=True),
    Case("clip-garbage-after-ftyp",
         lambda c: c.folder(_write(N, b"\x00\x00\x00\x18ftypisom" + np.random.default_rng(0).bytes(50_000))),
         (f"{CLIP}: undecodable",), only=True),
    Case("clip-empty", lambda c: c.folder(_write(N, b"")), (f"{CLIP}: undecodable: the file is empty",), only=True),
    Case("clip-fps30", lambda c: c.folder(c.video("fps30")), (f"{CLIP}: fps is 30; the benchmark needs 25",), only=True),
    Case("clip-short", lambda c: c.folder(c.video("short")),
         (f"{CLIP}: frame count 71 differs from the reference's 86 by more than 2",), only=True),
    Case("clip-not-square", lambda c: c.folder(c.video("nonsquare")), (f"{CLIP}: resolution 512x448 is not square",),
         only=True),
    Case("clip-too-small", lambda c: c.folder(c.video("small")), (f"{CLIP}: resolution 128x128 is below 256x256",),
         only=True),
    Case("clip-2048-square", lambda c: c.folder(c.video("huge")),
         (f"{CLIP}: resolution 2048x2048 is above the benchmark's maximum 1024x1024; refused before decoding",),
         only=True),
    Case("spec-max-side", lambda c: c.folder(), (f"{CLIP}: resolution 512x512 is above the benchmark's maximum 256x256",),
         spec={"max_side": 256}, only=True),
    Case("spec-max-frames", lambda c: c.folder(),
         (f"{CLIP}: the header declares 86 frames; the benchmark allows at most 50 for this clip; refused before decoding",),
         spec={"max_frames": 50}),  # the derived max_seconds (50 / 25 + 1 s) refuses it too
    Case("spec-max-seconds", lambda c: c.folder(), (f"{CLIP}: duration 3.44 s is above the benchmark's maximum 2.00 s",),
         spec={"max_seconds": 2.0}, only=True),
    Case("spec-decoded-pixel-budget", lambda c: c.folder(),
         (f"sub: the headers declare {512 * 512 * 86} decoded pixels in all; the benchmark allows 1000000",),
         spec={"max_decoded_pixels": 1_000_000}, only=True),
    Case("copy-bytes", lambda c: c.folder(lambda s: shutil.copyfile(c.reference, s / N)),
         (f"{CLIP}: is a byte-for-byte copy of the reference clip (sha256 {{sha}}); submit the method's output",),
         only=True),
    Case("copy-lossless", lambda c: c.folder(c.video("lossless")),
         (f"{CLIP}: is a copy of the reference clip (sha256 {{sha}}): 86 of 86 frames compared are its frames "
          f"(luma SSIM ≥ {COPY_SSIM} at 256x256)",), only=True),
    Case("copy-reencoded", lambda c: c.folder(c.video("crf18")),
         (f"{CLIP}: is a copy of the reference clip (sha256 {{sha}}): 86 of 86 frames",), only=True),
    Case("copy-one-frame-late", lambda c: c.folder(c.video("shifted")),
         (f"{CLIP}: is a copy of the reference clip (sha256 {{sha}}): 86 of 86 frames",), only=True),
    # -- the file system ----------------------------------------------------------------------
    Case("folder-symlinked-video", lambda c: c.folder(_symlinked_video(c)),
         (f"{N}: is a symbolic link; refused (never followed)", f"{CLIP}: missing")),
    Case("folder-symlinked-root", lambda c: (c.work / "link").symlink_to(c.folder(), target_is_directory=True) or c.work / "link",
         ("link: is a symbolic link; pass the real folder or zip",), only=True),
    Case("folder-symlinked-videos-dir", lambda c: c.folder(_symlinked_dir),
         ("videos: is a symbolic link; refused (never followed)", f"{CLIP}: missing")),
    Case("folder-fifo", lambda c: c.folder(_fifo), (f"{N}: is not a regular file", f"{CLIP}: missing")),
    Case("folder-name-newline", lambda c: c.folder(_write("videos/x.mp4\nforged-line: accepted", b"x")),
         ("'videos/x.mp4\\nforged-line: accepted': name holds control characters; refused",), only=True),
    Case("folder-name-escape", lambda c: c.folder(_write("README\x1b[2J", b"x")),
         ("'README\\x1b[2J': name holds control characters; refused",), only=True),
    Case("not-found", lambda c: c.work / "nothing-here", ("nothing-here: not found",), only=True),
    Case("not-an-archive", lambda c: _write("sub.tar", b"not an archive")(c.work) or c.work / "sub.tar",
         ("sub.tar: is neither a folder nor a zip archive",), only=True),
    # -- zip archives -------------------------------------------------------------------------
    Case("zip-slip-dotdot", lambda c: _zip_with(c, [("../evil.mp4", b"x"), ("videos/../../evil2.mp4", b"x")]),
         ("../evil.mp4: path escapes the archive (zip slip", "videos/../../evil2.mp4: path escapes the archive")),
    Case("zip-absolute-path", lambda c: _zip_with(c, [(_info("/tmp/talkbench-evil.mp4"), b"x")]),
         ("/tmp/talkbench-evil.mp4: path escapes the archive",), only=True),
    Case("zip-backslash-path", lambda c: _zip_with(c, [(_info("..\\evil.mp4"), b"x")]),
         ("..\\evil.mp4: path escapes the archive",), only=True),
    Case("zip-symlink-member",
         lambda c: _zip_with(c, [(_info(N, stat.S_IFLNK | 0o777), b"/etc/passwd")], drop_video=True),
         (f"{N}: is a symbolic link; submissions must hold regular files", f"{CLIP}: missing")),
    Case("zip-fifo-member", lambda c: _zip_with(c, [(_info(N, stat.S_IFIFO | 0o644), b"")], drop_video=True),
         (f"{N}: is not a regular file (device, FIFO or socket); refused", f"{CLIP}: missing")),
    Case("zip-duplicate-member", lambda c: _zip_with(c, [m for m in c.members() if m[0] == N]),
         (f"{N}: appears more than once in the archive (duplicate entry)",), only=True),
    Case("zip-encrypted-member", lambda c: _patch_member(_zip_with(c, []), N, flags=0x1),
         (f"{N}: is encrypted; submit unencrypted files", f"{CLIP}: missing")),
    Case("zip-member-bomb-1mib", lambda c: _zip_with(c, [("README", bytes(1 << 20)), ("LICENSE", INCOMPRESSIBLE)]),  # the archive as a whole compresses < 10x
         ("README: compression ratio too high (possible zip bomb): 1048576 bytes from",), only=True),
    Case("zip-archive-ratio", lambda c: _zip_with(c, [(f"README{i}", bytes(60_000)) for i in range(100)]),
         ("sub.zip: compression ratio too high (possible zip bomb)", "nothing extracted"), only=True),
    Case("zip-total-over-cap", lambda c: _zip_with(c, []), ("sub.zip: oversized: its members hold",),
         limits=Limits(max_total_bytes=10_000), only=True),
    Case("zip-too-many-members", lambda c: _zip_with(c, [(f"README{i}", b"x") for i in range(5)]),
         ("sub.zip: 7 members; at most 4 allowed",), limits=Limits(max_files=4), only=True),
    Case("zip-header-understates-size", lambda c: _patch_member(_zip_with(c, []), N, size=1000),
         (f"{N}: cannot be extracted", f"{CLIP}: missing")),
    Case("zip-header-overstates-size", lambda c: _patch_member(_zip_with(c, []), N, size=3_000_000_000),
         ("sub.zip: compression ratio too high (possible zip bomb)",), only=True),
    Case("zip-video-over-cap", lambda c: _zip_with(c, []), (f"{N}: oversized",),
         limits=Limits(max_video_bytes=50_000)),
    Case("zip-name-newline", lambda c: _zip_with(c, [("videos/a.mp4\nforged-line: accepted", b"x")]),
         ("'videos/a.mp4\\nforged-line: accepted': name holds control characters",), only=True),
    Case("zip-name-carriage-return", lambda c: _zip_with(c, [("README\rforged", b"x")]),
         ("'README\\rforged': name holds control characters",), only=True),
    Case("zip-name-tab", lambda c: _zip_with(c, [("README\tx", b"x")]), ("'README\\tx': name holds control characters",),
         only=True),
    Case("zip-name-escape", lambda c: _zip_with(c, [("README\x1b[31m", b"x")]),
         ("'README\\x1b[31m': name holds control characters",), only=True),
    Case("zip-name-bidi-override", lambda c: _zip_with(c, [("README\u202egpj.exe", b"x")]),
         ("'README\\u202egpj.exe': name holds control characters",), only=True),
    Case("zip-corrupt", lambda c: _write("sub.zip", c.zip(c.members(), "good.zip").read_bytes()[:-30])(c.work)
         or c.work / "sub.zip", ("sub.zip",)),
]


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One store for every case (opening one takes a second): each asserts it is still empty."""
    from talkbench.leaderboard.store import Store

    return Store(tmp_path_factory.mktemp("store") / "lb.duckdb")


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """$TMPDIR and the working directory inside the test's folder, to check both afterwards."""
    tmp = tmp_path / "tmp"
    cwd = tmp_path / "cwd"
    for d in (tmp, cwd):
        d.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read $TMPDIR
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TALKBENCH_SUBMITTER_KEY", KEY.secret)
    return tmp_path


def _tree(root: Path, skip: Path) -> set[str]:
    """Every path under ``root`` but ``skip`` (the store's folder)."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if skip not in (p, *p.parents)}


def test_there_are_at_least_40_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_submission_is_refused(case, isolated, base, assets, one_spec, reference, shared_store):
    work = isolated / "work"
    work.mkdir()
    spec = one_spec.model_copy(update=case.spec) if case.spec else one_spec
    ctx = Ctx(work, base, assets, reference, spec)
    path = case.build(ctx)
    store = shared_store
    store_dir = store.path.parent  # outside the test's folder
    before = _tree(isolated, store_dir)
    with pytest.raises(SubmissionError) as info:
        submit(path, spec, store, settings=default_settings(("ssim",)), limits=case.limits, key=KEY)
    problems = info.value.messages()
    sha = one_spec.clip(CLIP).reference_sha256
    for want in case.expect:
        want = want.replace("{sha}", sha)
        assert any(want in p for p in problems), f"{want!r} not in {problems}"
    if case.only:
        assert len(problems) == 1, problems
    text = str(info.value)
    assert "nothing was stored" in text
    # one line per problem: no name or message can start a line of its own
    assert len(text.splitlines()) == 1 + len(problems)
    assert not any(line.startswith("forged") for line in text.splitlines())
    assert store.counts() == EMPTY_COUNTS
    assert list((isolated / "tmp").iterdir()) == []  # the extraction is gone
    assert _tree(isolated, store_dir) == before  # nothing written anywhere else (zip slip, python tags, ...)


CLI_CASES = ["metadata-missing", "metadata-python-tag", "zip-slip-dotdot", "zip-archive-ratio", "zip-member-bomb-1mib",
             "zip-name-newline", "folder-name-newline", "copy-bytes", "clip-2048-square", "zip-fifo-member"]


@pytest.mark.parametrize("case_id", CLI_CASES)
def test_talkbench_submit_refuses_with_exit_code_2(case_id, isolated, base, assets, reference, capsys):
    """The same submissions through the command, on the shipped ``sample`` benchmark (the
    other seven clips are missing as well, which the command also says)."""
    from talkbench.cli import app
    from talkbench.cli.common import run_guarded

    case = next(c for c in CASES if c.id == case_id)
    work = isolated / "work"
    work.mkdir()
    path = case.build(Ctx(work, base, assets, reference, None))
    db = isolated / "store" / "lb.duckdb"
    db.parent.mkdir()
    before = _tree(isolated, db.parent)
    with pytest.raises(SystemExit) as exit_info:
        run_guarded(app, ["submit", str(path), "-b", "sample", "--store", str(db), "--metrics", "ssim", "-w", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    sha = get_benchmark("sample").clip(CLIP).reference_sha256
    assert "submission rejected" in err and "nothing was stored" in err
    for want in case.expect:
        assert want.replace("{sha}", sha) in err, err
    assert not any(line.startswith("forged") for line in err.splitlines())
    if db.exists():
        from talkbench.leaderboard.store import Store

        assert Store(db).runs(provenance="measured") == []
    assert list((isolated / "tmp").iterdir()) == []
    assert _tree(isolated, db.parent) == before


# -- what must still pass -------------------------------------------------------------------------

def test_a_lossy_re_encode_is_not_a_copy(base, one_spec, reference):
    """The base submission is the reference moved by a pixel, through H.264 crf 23 (SSIM 0.6-0.97 on
    the full frames), not a copy, so it passes."""
    from talkbench.metrics.ssim import ssim_frames

    ssim = ssim_frames(media.read_frames(base / "videos" / f"{CLIP}.mp4", fps=None)[:20],
                       media.read_frames(reference)[:20]).mean()
    assert 0.6 < ssim < 0.97
    with validate_submission(base, one_spec, resolve_clips(one_spec)) as sub:
        assert set(sub.videos) == {CLIP}


def test_macos_entries_are_ignored_and_never_extracted(base, one_spec, isolated):
    ctx = Ctx(isolated, base, {}, Path(), one_spec)
    junk = [("__MACOSX/._submission.yaml", b"\x00\x05\x16\x07"), ("__MACOSX/videos/._tr_001.mp4", b"\x00" * 4096),
            (".DS_Store", b"Bud1" + bytes(100)), ("videos/.DS_Store", b"Bud1")]
    path = ctx.zip([(f"my-method/{n}", d) for n, d in ctx.members() + junk])
    with validate_submission(path, one_spec, resolve_clips(one_spec)) as sub:
        extracted = {p.relative_to(sub.root).as_posix() for p in sub.root.rglob("*")}
        assert extracted == {"submission.yaml", "videos", f"videos/{CLIP}.mp4"}
    folder = ctx.folder()
    (folder / ".DS_Store").write_bytes(b"Bud1")
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / "._x").write_bytes(b"x")
    with validate_submission(folder, one_spec, resolve_clips(one_spec)) as sub:
        assert set(sub.videos) == {CLIP}
    assert list((isolated / "tmp").iterdir()) == []


def test_control_characters_are_removed_from_the_metadata(base, one_spec, isolated):
    ctx = Ctx(isolated, base, {}, Path(), one_spec)
    meta = META | {"description": "line one\x1b[31m red\r\nline two\x07\u202e", "authors": ["A.\tAuthor\x00", "B\nC", "می\u200cخواهم"],
                   "contact": "a@example.org\x1b]8;;evil\x07", "licence": "MIT\u2028forged"}
    folder = ctx.folder(_meta(yaml.safe_dump(meta)))
    with validate_submission(folder, one_spec, resolve_clips(one_spec)) as sub:
        m = sub.meta
    assert m.description == "line one[31m red\nline two"  # line breaks kept: it is prose
    assert m.authors == ["A. Author", "B C", "می\u200cخواهم"]  # Persian's zero-width non-joiner stays
    assert m.contact == "a@example.org]8;;evil" and m.licence == "MIT forged"


def test_shipped_specs_take_the_caps_defaults(one_spec):
    from talkbench.leaderboard.benchmarks import all_specs
    from talkbench.leaderboard.submission import clip_limits, decoded_pixel_budget

    for spec in all_specs():  # loading checks each clip_list_sha256: the new fields left them alone
        assert (spec.max_side, spec.max_frames, spec.max_seconds, spec.max_decoded_pixels) == (1024, None, None, None)
    lim = clip_limits(one_spec, 86)
    assert (lim.max_frames, lim.max_side) == (88, 1024) and lim.max_seconds == pytest.approx(88 / 25 + 1)
    assert decoded_pixel_budget(one_spec, {CLIP: lim}) == 1024 * 1024 * 88


# -- temporary folders ------------------------------------------------------------------------------

def test_stale_extractions_of_dead_processes_are_removed(isolated):
    tmp = isolated / "tmp"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp / f"{TMP_PREFIX}{dead_pid}-abc"
    live = tmp / f"{TMP_PREFIX}{os.getppid()}-def"  # our parent: alive
    other = tmp / f"{TMP_PREFIX}old-style"
    for d in (stale, live, other):
        (d / "videos").mkdir(parents=True)
        (d / "videos" / "x.mp4").write_bytes(b"x")
    assert remove_stale_extractions() == [stale]
    assert not stale.exists() and live.exists() and other.exists()


SIGNAL_SCRIPT = """
import sys
from talkbench.cli import main
sys.argv = ["talkbench", "submit", sys.argv[1], "-b", "sample", "--store", sys.argv[2], "--metrics", "ssim"]
main()
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM,
                                    pytest.param(signal.SIGINT, marks=pytest.mark.slow)])  # the same cleanup path
def test_a_killed_submit_removes_its_extraction(signum, base, assets, isolated, one_spec):
    """SIGTERM and Ctrl-C while the zip is extracted take the normal cleanup path."""
    ctx = Ctx(isolated / "cwd", base, {}, Path(), one_spec)
    # a lossless copy takes seconds to decode and compare: the extraction lives long enough to be caught
    path = ctx.zip([m for m in ctx.members() if m[0] != N] + [(N, assets["lossless"].read_bytes())],
                   compression=zipfile.ZIP_STORED)
    env = {**os.environ, "TMPDIR": str(isolated / "tmp"), "TALKBENCH_SUBMITTER_KEY": KEY.secret}
    proc = subprocess.Popen([sys.executable, "-c", SIGNAL_SCRIPT, str(path), str(isolated / "lb.duckdb")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    extraction = []
    while not extraction and time.monotonic() < deadline and proc.poll() is None:
        extraction = [p for p in (isolated / "tmp").iterdir() if p.name.startswith(TMP_PREFIX)
                      and (p / N).exists()]
        time.sleep(0.01)
    assert extraction, proc.communicate()
    time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "submission rejected" not in err, err  # stopped by the signal, not by validation
    assert not extraction[0].exists(), err
    assert [p for p in (isolated / "tmp").iterdir() if p.name.startswith(TMP_PREFIX)] == []
