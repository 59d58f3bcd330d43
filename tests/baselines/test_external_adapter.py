"""The generic external adapter, with real subprocesses: a small method script (written by the
fixture into a fake checkout) produces a real video through PyAV at the wrong frame rate and
size; the adapter must normalise it onto the protocol so that the submission validator accepts
it, and must fail clearly when the method exits non-zero, writes nothing, or hangs."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from talkbench import media
from talkbench.baselines.external import ExternalMethod, ExternalMethodError
from talkbench.baselines.external.run import logs_dir_for, run_benchmark
from talkbench.baselines.method import Task
from talkbench.samples import load_sample_corpus

from .fakes import FAKE_METHOD, clip_frames, fake_preset, method, task_for

# the shortest sample clip, the quickest to run; its frame count comes from its duration
CLIP = min(load_sample_corpus(), key=lambda c: c.duration).id


@pytest.fixture(scope="module")
def clip(sample_clips):
    return next(c for c in sample_clips if c.id == CLIP)


@pytest.fixture()
def repo(tmp_path):
    root = tmp_path / "fake-checkout"
    root.mkdir()
    (root / "fake_method.py").write_text(FAKE_METHOD)
    return root


def _subset_spec(clip_id):
    from talkbench.leaderboard.benchmarks import clip_list_sha256, get_benchmark

    spec = get_benchmark("sample")
    one = [c for c in spec.clips if c.id == clip_id]
    return spec.model_copy(update={"clips": one, "clip_list_sha256": clip_list_sha256(one)})


def test_wrong_fps_and_size_are_normalised_and_pass_the_validator(clip, repo, tmp_path):
    from talkbench.leaderboard.submission import validate_submission

    m = method(fake_preset("--fps", "30", "--size", "200"), repo)
    out = tmp_path / "submission"
    calls = []
    summary = run_benchmark(m, [task_for(clip)], out, progress=lambda *call: calls.append(call))
    assert summary.done == [CLIP] and not summary.failed
    assert calls == [(0, 1, CLIP)]  # (done, total, label) before each clip
    rec = m.records[CLIP]
    raw = rec.normalised
    assert raw.source_fps == pytest.approx(30.0) and raw.source_size == (200, 200)
    video = out / "videos" / f"{CLIP}.mp4"
    info = media.probe(video)
    assert (info.width, info.height) == (512, 512) and info.fps == pytest.approx(25.0)
    assert sum(1 for _ in media.iter_frames(video, fps=None)) == clip_frames(clip)
    # the clip's own audio is muxed in (the method wrote none)
    ref_audio, got_audio = media.read_audio(clip.video), media.read_audio(video)
    k = min(len(ref_audio), len(got_audio))
    assert abs(len(got_audio) - len(ref_audio)) < 1600
    assert np.corrcoef(ref_audio[:k], got_audio[:k])[0, 1] > 0.95
    # the picture is the method's (the portrait, resized 256 -> 200 -> 512), not something else
    first = next(media.iter_frames(video))
    portrait = next(media.iter_frames(clip.video))
    assert np.abs(first[40:].astype(float) - portrait[40:].astype(float)).mean() < 12
    # the log keeps the command, the exit code and the method's output
    log = (logs_dir_for(out) / f"{CLIP}.log").read_text()
    assert "fake_method.py" in log and "# exit 0" in log and "wrote" in log
    # the validator (talkbench.leaderboard.submission) accepts the folder
    spec = _subset_spec(CLIP)
    with validate_submission(out, spec, [clip]) as sub:
        assert set(sub.videos) == {CLIP} and sub.meta.method == "Fake" and sub.meta.resolution == 512


def test_non_zero_exit_names_the_command_and_keeps_stderr(clip, repo, tmp_path):
    m = method(fake_preset("--mode", "fail"), repo, log_dir=tmp_path / "logs")
    with pytest.raises(ExternalMethodError) as err:
        m.generate(task_for(clip), tmp_path / "out.mp4")
    text = str(err.value)
    assert "exited with 3" in text and "CUDA out of memory (fake)" in text and "fake_method.py" in text
    log = (tmp_path / "logs" / f"{CLIP}.log").read_text()
    assert "--- stderr ---" in log and "CUDA out of memory (fake)" in log and "loading checkpoints" in log
    assert not (tmp_path / "out.mp4").exists()


def test_clean_exit_without_output_is_an_error(clip, repo, tmp_path):
    m = method(fake_preset("--mode", "nothing"), repo, log_dir=tmp_path / "logs")
    with pytest.raises(ExternalMethodError, match="wrote nothing matching"):
        m.generate(task_for(clip), tmp_path / "out.mp4")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_time_out_kills_the_whole_process_group(clip, repo, tmp_path):
    pidfile = tmp_path / "pids.txt"
    m = method(fake_preset("--mode", "sleep", "--pidfile", str(pidfile)), repo, log_dir=tmp_path / "logs",
               timeout_s=3)
    start = time.monotonic()
    with pytest.raises(ExternalMethodError, match="timed out"):
        m.generate(task_for(clip), tmp_path / "out.mp4")
    assert time.monotonic() - start < 30
    parent, child = (int(x) for x in pidfile.read_text().split())
    deadline = time.monotonic() + 10
    while (_alive(parent) or _alive(child)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(parent) and not _alive(child)
    assert m.records[CLIP].steps[0].timed_out


def test_panel_of_a_side_by_side_output_is_cut_out(clip, repo, tmp_path):
    preset = fake_preset("--mode", "grid", "--fps", "25", "--size", "256", "--frames_dir", "{driving_frames}",
                         output={"glob": "*.mp4", "panel": {"cols": 3, "rows": 1, "index": 1}},
                         inputs={"portrait": {"size": 256}, "audio": {"sample_rate": 16000},
                                 "driving_frames": {"size": 64, "pattern": "%04d.jpg", "start": 1}})
    m = method(preset, repo, log_dir=tmp_path / "logs")
    out = m.generate(task_for(clip), tmp_path / "out.mp4")
    info = media.probe(out)
    assert (info.width, info.height) == (512, 512)
    first = next(media.iter_frames(out)).astype(float)
    portrait = next(media.iter_frames(clip.video)).astype(float)
    assert np.abs(first[40:] - portrait[40:]).mean() < 12  # the middle panel, not black (0) or grey (128)
    assert m.records[CLIP].normalised.panel == {"cols": 3, "rows": 1, "index": 1, "native_panel": [256, 256]}
    assert f"driving frames: {clip_frames(clip)} 0001.jpg" in (tmp_path / "logs" / f"{CLIP}.log").read_text()


def test_config_file_staging_and_cleanup(clip, repo, tmp_path):
    text = '{{"portrait": "{portrait}", "staged": "{repo}/inbox/{clip_id}.png", "leftover": "{repo}/cache/{clip_id}"}}'
    preset = fake_preset(
        "--mode", "config", "--config", "{work_dir}/cfg.json",
        files=[{"path": "{work_dir}/cfg.json", "text": text}],
        stage=[{"input": "portrait", "to": "inbox/{clip_id}.png"}],
        cleanup=["cache/{clip_id}", "../outside.txt", "{repo}"],
    )
    outside = repo.parent / "outside.txt"
    outside.write_text("not the method's")
    m = method(preset, repo, log_dir=tmp_path / "logs")
    out = m.generate(task_for(clip), tmp_path / "out.mp4")
    assert media.probe(out).frame_count == clip_frames(clip)
    assert not (repo / "inbox" / f"{CLIP}.png").exists()  # staged input removed
    assert not (repo / "cache" / CLIP).exists()  # what the method left behind, removed
    assert (repo / "fake_method.py").exists() and outside.exists()  # and nothing else, never outside


def test_bad_checkout_interpreter_and_controls_fail_clearly(clip, repo, tmp_path):
    with pytest.raises(ExternalMethodError, match="not a directory"):
        ExternalMethod(fake_preset(), tmp_path / "no-such-checkout")
    m = ExternalMethod(fake_preset(), repo, python=str(tmp_path / "no" / "python"), log_dir=tmp_path / "logs")
    with pytest.raises(ExternalMethodError, match="cannot start"):
        m.generate(task_for(clip), tmp_path / "out.mp4")
    needs = fake_preset("--config", "{controls}", inputs={
        "portrait": {"size": 256}, "audio": {"sample_rate": 16000},
        "controls": {"required": True, "description": "(T, 7) head pose", "suffix": ".npy"}})
    with pytest.raises(ExternalMethodError, match="--controls"):
        method(needs, repo, log_dir=tmp_path / "logs").generate(task_for(clip), tmp_path / "out.mp4")
    with pytest.raises(ExternalMethodError, match="does not do reconstruction"):
        method(fake_preset(), repo).generate(
            Task(kind="reconstruction", clip_id=CLIP, reference=clip.video), tmp_path / "out.mp4")
