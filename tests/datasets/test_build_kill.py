"""A dataset build killed through its parent process only (SIGKILL, SIGTERM or Ctrl-C's SIGINT,
as a job scheduler or a closed terminal sends them) leaves no process behind: not its workers
with their models, not the resource tracker. A kill -9 mid-build, resumed, ends with the
catalog of an uninterrupted build.

Every process of a build carries a marker in its environment (inherited from the parent), so
the test finds them all in /proc, whoever their parent is by then."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from talkbench.datasets.catalog import Catalog
from talkbench.datasets.pipeline import build_dataset

MARKER = "TALKBENCH_TEST_MARKER"
GRACE_S = 20.0  # a killed build's processes must all be gone within this

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs Linux /proc")


def marked(marker: str) -> list[int]:
    """Live (not zombie) processes whose environment holds ``MARKER=marker``."""
    wanted = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours
            continue
        if state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def workers_of(parent: int, marker: str) -> list[int]:
    out = []
    for pid in marked(marker):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            out.append(pid)
    return out


def start_build(manifests: list[Path], out: Path, marker: str, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "talkbench", "data", "build", "files", "--out", str(out), "--workers", "2"]
    for m in manifests:
        args += ["--manifest", str(m)]
    log = open(out.parent / f"{out.name}.{marker[:8]}.log", "wb")
    try:
        return subprocess.Popen([*args, *extra], start_new_session=True, env={**os.environ, MARKER: marker},
                                stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the build ended (exit {proc.returncode}) before {what}")
        time.sleep(0.1)
    pytest.fail(f"no {what} after {timeout:.0f} s")


def left_after_kill(marker: str) -> list[int]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < GRACE_S:
        alive = marked(marker)
        if not alive:
            return []
        time.sleep(0.2)
    return marked(marker)


def reap(marker: str) -> None:
    """A failed test must not leave its build's processes running."""
    for pid in marked(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.shared_data
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_killing_the_parent_leaves_no_process(shared_data, tmp_path, sig):
    """Signalled while its two workers are loading models and starting their clips (progress
    display on, so the progress queue is in use too)."""
    videos = [shared_data / "video" / name for name in ("retalking_5.mp4", "liveportrait_d11.mp4")]
    marker = uuid.uuid4().hex
    proc = start_build(videos, tmp_path / "out", marker)
    try:
        wait_for(lambda: len(workers_of(proc.pid, marker)) >= 2, 120, "two worker processes", proc)
        time.sleep(2.0)  # into their first clip: imports, models
        assert proc.poll() is None
        before = marked(marker)
        assert len(before) >= 3, before  # the parent, two workers (and the resource tracker)
        os.kill(proc.pid, sig)
        left = left_after_kill(marker)
        assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in left]
        proc.wait(timeout=GRACE_S)  # the parent too, even on SIGINT: it does not wait for the clips
        if sig == signal.SIGINT:
            assert proc.returncode > 0  # handled: an error exit, not a death by signal
        else:
            assert proc.returncode == -sig
    finally:
        reap(marker)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.shared_data
def test_kill_9_of_the_parent_mid_build_then_resume_equals_a_straight_build(shared_data, tmp_path):
    """retalking_5 finishes first; liveportrait_d11 (twice as long) is still in its worker when
    the parent is killed; 'later.mp4' does not exist (source_missing, retried by the resume)."""
    manifests = [shared_data / "video" / "retalking_5.mp4", shared_data / "video" / "liveportrait_d11.mp4",
                 tmp_path / "later.mp4"]
    straight = tmp_path / "straight"
    build_dataset("files", [str(m) for m in manifests], straight, workers=2, progress=False)

    resumed = tmp_path / "resumed"
    marker = uuid.uuid4().hex
    proc = start_build(manifests, resumed, marker, "--json")
    try:
        wait_for(lambda: (resumed / "clips" / "retalking_5.mp4").is_file(), 300, "first clip file", proc)
        assert proc.poll() is None
        assert workers_of(proc.pid, marker), "no worker left to kill: the build is over"
        os.kill(proc.pid, signal.SIGKILL)
        left = left_after_kill(marker)
        assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in left]
        proc.wait(timeout=GRACE_S)
        assert proc.returncode == -signal.SIGKILL
    finally:
        reap(marker)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with Catalog(resumed) as cat:
        partial = {r["clip_id"]: r["status"] for r in cat.rows()}
    assert "liveportrait_d11" not in partial, partial  # it was in flight

    done = subprocess.run([sys.executable, "-m", "talkbench", "data", "build", "files", "--out", str(resumed),
                           "--workers", "2", "--json", *[a for m in manifests for a in ("--manifest", str(m))]],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with Catalog(straight) as a, Catalog(resumed) as b:
        rows_a, rows_b = a.rows(volatile=False), b.rows(volatile=False)
        n, distinct = b.con.execute("SELECT count(*), count(DISTINCT clip_id) FROM clips").fetchone()
    assert n == distinct == 3
    assert [r["clip_id"] for r in rows_b] == ["later", "liveportrait_d11", "retalking_5"]
    assert len(rows_a) == len(rows_b)
    for ra, rb in zip(rows_a, rows_b):
        assert ra == rb, ra["clip_id"]
    status = {r["clip_id"]: (r["status"], r["reason"]) for r in rows_b}
    assert status == {"later": ("failed", "source_missing"), "liveportrait_d11": ("accepted", None),
                      "retalking_5": ("accepted", None)}
    for r in rows_b:
        if r["status"] == "accepted":
            assert _sha(straight / r["path"]) == _sha(resumed / r["path"]), r["path"]
    assert not list((resumed / "clips").glob(".*.mp4"))
