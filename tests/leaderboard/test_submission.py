"""Submissions: every malformed case is rejected with the right message, every problem is
reported at once, and nothing reaches the store; a valid one is evaluated and stored."""

from __future__ import annotations

import io
import pickle
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from talkbench import media
from talkbench.leaderboard.evaluate import default_settings, submit
from talkbench.leaderboard.names import SubmitterKey
from talkbench.leaderboard.submission import Limits, SubmissionError, validate_submission

META = {"method": "MyTalker", "authors": ["A. Author"], "paper": "https://example.org/paper",
        "code": "https://example.org/code", "licence": "CC-BY-4.0", "resolution": 512,
        "contact": "a@example.org"}
KEY = SubmitterKey("my-submitter-key-for-tests")  # who submitted: the name's owner


@pytest.fixture(scope="module")
def valid_dir(valid_submission) -> Path:
    """conftest's ``valid_submission`` (lossy re-encodes of the references) with ``META``."""
    assert yaml.safe_load((valid_submission / "submission.yaml").read_text()) == META
    return valid_submission


SHORT_BY = 15  # frames the "short" variant lacks: well past the validator's tolerance of 2


def _frames_of(clip, fps: float) -> int:
    """The reference's frame count at ``fps``, from the clip's duration in the corpus listing."""
    return round(clip.duration * fps)


@pytest.fixture(scope="module")
def variants(tmp_path_factory, mini_clips) -> dict[str, Path]:
    """Real re-encodes of de_001 that break one rule each."""
    out = tmp_path_factory.mktemp("variants")
    clip = next(c for c in mini_clips if c.id == "de_001")
    frames = media.read_frames(clip.video)
    return {
        "fps30": media.write_video(out / "fps30.mp4", frames, fps=30),
        "short": media.write_video(out / "short.mp4", frames[:len(frames) - SHORT_BY]),
        "nonsquare": media.write_video(out / "nonsquare.mp4", frames[:, :448]),
        "small": media.write_video(out / "small.mp4", np.ascontiguousarray(frames[:, ::4, ::4])),
    }


def _copy(valid_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "sub"
    shutil.copytree(valid_dir, dst)
    return dst


def _zip(tmp_path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    path = tmp_path / "sub.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def _valid_members(valid_dir: Path) -> list[tuple[str, bytes]]:
    return [(p.relative_to(valid_dir).as_posix(), p.read_bytes()) for p in sorted(valid_dir.rglob("*")) if p.is_file()]


def _rejected(path, spec, store, *expected: str, limits: Limits = Limits()) -> list[str]:
    with pytest.raises(SubmissionError) as info:
        submit(path, spec, store, settings=default_settings(("ssim",)), limits=limits, key=KEY)
    messages = info.value.messages()
    for want in expected:
        assert any(want in m for m in messages), f"{want!r} not in {messages}"
    assert "nothing was stored" in str(info.value)
    assert store.counts() == {t: 0 for t in ("benchmarks", "clips", "methods", "runs", "clip_results", "aggregates")}
    return messages


# -- folder cases -----------------------------------------------------------------------------

def test_missing_clip(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    (sub / "videos" / "tr_001.mp4").unlink()
    msgs = _rejected(sub, mini_spec, store, "tr_001: missing: no videos/tr_001.mp4")
    assert len(msgs) == 1


def test_extra_clip(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    shutil.copyfile(sub / "videos" / "de_001.mp4", sub / "videos" / "ar_001.mp4")
    _rejected(sub, mini_spec, store, f"ar_001: extra clip: not in benchmark sample-mini@{mini_spec.version}")


def test_duplicate_clip_id_differing_in_case(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    shutil.copyfile(sub / "videos" / "de_001.mp4", sub / "videos" / "DE_001.mp4")
    _rejected(sub, mini_spec, store, "duplicate clip id: videos/de_001.mp4 and videos/DE_001.mp4")


def test_wrong_extension(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    (sub / "videos" / "tr_001.mp4").rename(sub / "videos" / "tr_001.avi")
    _rejected(sub, mini_spec, store, "videos/tr_001.avi: not a video: expected videos/<clip_id>.mp4",
              "tr_001: missing")


def test_text_renamed_to_mp4(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    (sub / "videos" / "tr_001.mp4").write_text("just some text, not a video\n" * 10)
    _rejected(sub, mini_spec, store, "tr_001: not a video: content is not an MP4 container")


def test_pickle_disguised_as_video_is_never_unpickled(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    flag = tmp_path / "pwned"
    payload = pickle.dumps(_Boom(str(flag)))
    (sub / "videos" / "tr_001.mp4").write_bytes(payload)
    _rejected(sub, mini_spec, store, "tr_001: not a video: content is not an MP4 container")
    assert not flag.exists()


class _Boom:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_unexpected_files_are_refused(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    (sub / "run.py").write_text("print('hi')\n")
    (sub / "videos" / "nested").mkdir()
    (sub / "videos" / "nested" / "x.mp4").write_bytes(b"x")
    _rejected(sub, mini_spec, store, "run.py: unexpected file", "videos/nested/x.mp4: unexpected file")


def test_truncated_video_is_undecodable(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    path = sub / "videos" / "tr_001.mp4"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    _rejected(sub, mini_spec, store, "tr_001: undecodable")


def test_mp4_header_with_garbage_is_undecodable(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    rng = np.random.default_rng(0)
    (sub / "videos" / "tr_001.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + rng.bytes(50_000))
    _rejected(sub, mini_spec, store, "tr_001: undecodable")


def test_empty_video(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    (sub / "videos" / "tr_001.mp4").write_bytes(b"")
    _rejected(sub, mini_spec, store, "tr_001: undecodable: the file is empty (0 bytes)")


@pytest.mark.parametrize("variant,message", [
    ("fps30", "de_001: fps is 30; the benchmark needs 25"),
    ("short", "de_001: frame count {short} differs from the reference's {reference} by more than 2"),
    ("nonsquare", "de_001: resolution 512x448 is not square"),
    ("small", "de_001: resolution 128x128 is below 256x256"),
])
def test_video_properties(valid_dir, variants, tmp_path, mini_spec, mini_clips, store, variant, message):
    sub = _copy(valid_dir, tmp_path)
    shutil.copyfile(variants[variant], sub / "videos" / "de_001.mp4")
    reference = _frames_of(next(c for c in mini_clips if c.id == "de_001"), mini_spec.fps)
    _rejected(sub, mini_spec, store, message.format(short=reference - SHORT_BY, reference=reference))


def test_oversized_video(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    _rejected(sub, mini_spec, store, "oversized", limits=Limits(max_video_bytes=10_000))


def test_symlinked_video_is_not_followed(valid_dir, tmp_path, mini_spec, mini_clips, store):
    sub = _copy(valid_dir, tmp_path)
    (sub / "videos" / "tr_001.mp4").unlink()
    (sub / "videos" / "tr_001.mp4").symlink_to(next(c for c in mini_clips if c.id == "tr_001").video)
    _rejected(sub, mini_spec, store, "videos/tr_001.mp4: is a symbolic link", "tr_001: missing")


def test_symlinked_submission_root(valid_dir, tmp_path, mini_spec, store):
    link = tmp_path / "link"
    link.symlink_to(valid_dir, target_is_directory=True)
    _rejected(link, mini_spec, store, "link: is a symbolic link")


def test_missing_metadata(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    (sub / "submission.yaml").unlink()
    _rejected(sub, mini_spec, store, "submission.yaml: missing")


def test_metadata_not_yaml(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    (sub / "submission.yaml").write_text("method: [unclosed\n  authors: {\n")
    _rejected(sub, mini_spec, store, "submission.yaml: is not plain YAML")


def test_metadata_python_tags_are_never_executed(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    flag = tmp_path / "pwned"
    (sub / "submission.yaml").write_text(f"method: !!python/object/apply:os.system ['touch {flag}']\n")
    _rejected(sub, mini_spec, store, "submission.yaml: is not plain YAML")
    assert not flag.exists()


def test_metadata_schema_errors_all_listed(valid_dir, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    meta = {k: v for k, v in META.items() if k != "contact"} | {"resolution": 128, "gpu": "A100"}
    (sub / "submission.yaml").write_text(yaml.safe_dump(meta))
    _rejected(sub, mini_spec, store, "field 'contact': Field required",
              "field 'resolution': Input should be greater than or equal to 256",
              "field 'gpu': Extra inputs are not permitted")


def test_every_problem_is_reported_at_once(valid_dir, variants, tmp_path, mini_spec, store):
    sub = _copy(valid_dir, tmp_path)
    (sub / "videos" / "tr_001.mp4").unlink()
    shutil.copyfile(variants["fps30"], sub / "videos" / "de_001.mp4")
    (sub / "submission.yaml").write_text("authors: []\n")
    msgs = _rejected(sub, mini_spec, store, "tr_001: missing", "de_001: fps is 30", "field 'method'",
                     "field 'authors'")
    assert len(msgs) >= 5


def test_neither_folder_nor_zip(tmp_path, mini_spec, store):
    path = tmp_path / "sub.tar"
    path.write_bytes(b"not an archive")
    _rejected(path, mini_spec, store, "sub.tar: is neither a folder nor a zip archive")


# -- zip cases --------------------------------------------------------------------------------

def test_zip_slip_is_refused_and_nothing_escapes(valid_dir, tmp_path, mini_spec, store):
    members = _valid_members(valid_dir) + [("../evil.mp4", b"x"), ("videos/../../evil2.mp4", b"x")]
    (tmp_path / "z").mkdir()
    path = _zip(tmp_path / "z", members)
    _rejected(path, mini_spec, store, "../evil.mp4: path escapes the archive (zip slip",
              "videos/../../evil2.mp4: path escapes the archive")
    assert not (tmp_path / "evil.mp4").exists() and not (tmp_path / "z" / "evil.mp4").exists()


def test_zip_absolute_member_path(valid_dir, tmp_path, mini_spec, store):
    info = zipfile.ZipInfo("placeholder")
    info.filename = "/tmp/talkbench-evil.mp4"  # ZipInfo strips a leading '/' on construction
    path = _zip(tmp_path, _valid_members(valid_dir) + [(info, b"x")])
    _rejected(path, mini_spec, store, "/tmp/talkbench-evil.mp4: path escapes the archive")


def test_zip_symlink_member(valid_dir, tmp_path, mini_spec, store):
    members = [m for m in _valid_members(valid_dir) if not m[0].endswith("tr_001.mp4")]
    link = zipfile.ZipInfo("videos/tr_001.mp4")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = _zip(tmp_path, members + [(link, b"/etc/passwd")])
    _rejected(path, mini_spec, store, "videos/tr_001.mp4: is a symbolic link", "tr_001: missing")


def test_zip_duplicate_entries(valid_dir, tmp_path, mini_spec, store):
    members = _valid_members(valid_dir)
    dup = next(m for m in members if m[0].endswith("de_001.mp4"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name: that's the point
        path = _zip(tmp_path, members + [dup])
    _rejected(path, mini_spec, store, "videos/de_001.mp4: appears more than once in the archive")


def test_zip_bomb_ratio(valid_dir, tmp_path, mini_spec, store):
    members = [m for m in _valid_members(valid_dir) if not m[0].endswith("tr_001.mp4")]
    path = _zip(tmp_path, members + [("videos/tr_001.mp4", bytes(20 * 1024 * 1024))])
    # 20 MiB of zeros in a 250 kB archive: refused as a whole from the headers, nothing extracted
    _rejected(path, mini_spec, store, "sub.zip: compression ratio too high (possible zip bomb)")


def test_zip_member_over_the_size_cap(valid_dir, tmp_path, mini_spec, store):
    path = _zip(tmp_path, _valid_members(valid_dir))
    _rejected(path, mini_spec, store, "videos/de_001.mp4: oversized", limits=Limits(max_video_bytes=50_000))


def test_corrupt_zip(tmp_path, mini_spec, store):
    path = tmp_path / "sub.zip"
    good = io.BytesIO()
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("submission.yaml", "x" * 1000)
    path.write_bytes(good.getvalue()[:-30])
    _rejected(path, mini_spec, store, "sub.zip")


# -- valid submissions ------------------------------------------------------------------------

def test_valid_folder_and_wrapped_zip_pass_validation(valid_dir, tmp_path, mini_spec, mini_clips):
    with validate_submission(valid_dir, mini_spec, mini_clips) as sub:
        assert sorted(sub.videos) == ["de_001", "tr_001"] and sub.meta.method == "MyTalker"
    members = [(f"my-method/{name}", data) for name, data in _valid_members(valid_dir)]
    with validate_submission(_zip(tmp_path, members), mini_spec, mini_clips) as sub:
        root = sub.root
        assert sub.infos["de_001"].frame_count == _frames_of(next(c for c in mini_clips if c.id == "de_001"),
                                                             mini_spec.fps)
    assert not root.exists()  # the extraction is cleaned up


def test_valid_submission_is_evaluated_and_stored(valid_dir, mini_spec, store):
    run_id = submit(valid_dir, mini_spec, store, settings=default_settings(("ssim", "cpbd")), key=KEY)
    run = store.runs(provenance="measured")[0]
    assert run["run_id"] == run_id and run["method"] == "MyTalker" and run["benchmark"] == "sample-mini"
    assert store.methods()["MyTalker"]["kind"] == "submission"
    means = store.group_means([run_id])[run_id]
    # the ground truth moved by a pixel and re-encoded: close to it, and measured, not 1.0
    assert 0.6 < means[("indo_european", "ssim")] < 0.97
    assert 0.6 < means[("non_indo_european", "ssim")] < 0.97
    assert 0.2 < means[("all", "cpbd")] < 0.8
    assert run["protocol"]["metric_versions"] == {"ssim": "1", "cpbd": "1"}
    assert len(run["protocol_hash"]) == 64


def test_builtin_method_names_are_reserved(valid_dir, tmp_path, mini_spec, store):
    from talkbench.leaderboard.evaluate import EvaluationError

    sub = _copy(valid_dir, tmp_path)
    (sub / "submission.yaml").write_text(yaml.safe_dump(META | {"method": "Ground-Truth"}))
    with pytest.raises(EvaluationError, match="'Ground-Truth' is reserved for a built-in or external method"):
        submit(sub, mini_spec, store, settings=default_settings(("ssim",)), key=KEY)
    for name in ("GT", "ground truth", "VQTalker-Tiny"):
        (sub / "submission.yaml").write_text(yaml.safe_dump(META | {"method": name}))
        with pytest.raises(EvaluationError, match="is reserved for a built-in or external method"):
            submit(sub, mini_spec, store, settings=default_settings(("ssim",)), key=KEY)
    assert store.counts()["runs"] == 0


def test_a_submission_cannot_take_a_published_methods_name(valid_dir, tmp_path, mini_spec, store):
    """The papers' methods are in the store as reported rows: a submission named after one of
    them would replace its metadata and its place on the board."""
    from talkbench.leaderboard.evaluate import EvaluationError
    from talkbench.leaderboard.reported import load_reported

    load_reported(store)
    before = store.counts()
    sub = _copy(valid_dir, tmp_path)
    for name in ("SadTalker", "sadtalker", "VID2VID", "H.264", "h-264"):
        (sub / "submission.yaml").write_text(yaml.safe_dump(META | {"method": name}))
        # reported by the papers, and most also external presets: either way not a submission's
        with pytest.raises(EvaluationError, match=r"is taken by a reported method|is reserved for a built-in or external"):
            submit(sub, mini_spec, store, settings=default_settings(("ssim",)), key=KEY)
    assert store.counts() == before
    # the same submitter may submit again under its own name: a new run of one method
    (sub / "submission.yaml").write_text(yaml.safe_dump(META | {"method": "MyTalker"}))
    submit(sub, mini_spec, store, settings=default_settings(("ssim",)), key=KEY)
    submit(sub, mini_spec, store, settings=default_settings(("ssim",)), key=KEY)
    (sub / "submission.yaml").write_text(yaml.safe_dump(META | {"method": "mytalker"}))
    with pytest.raises(EvaluationError, match=r"is taken by a submitted method \('MyTalker'\)"):
        submit(sub, mini_spec, store, settings=default_settings(("ssim",)), key=KEY)
