"""VQTalker training data from a built dataset (talkbench.vqtalker.data / prepare).

A two-clip dataset is built with the real pipeline from the sample clips (en_001 in split
train, de_001 in split test, 2.4 s each, 512x512); the tests read it as training does:
catalog rows filtered by split, frame pairs decoded by seeking in DataLoader workers (equal,
pixel for pixel, to ``media.read_frames`` at the same indices), the pair stream of the earlier
``PairSampler`` (pinned by values, so exact resume survives), and eye/mouth regions prepared
once per clip on the local engine (equal to dlib landmarks -> ``region_boxes`` within float16
rounding; a second run does nothing).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from talkbench import media
from talkbench.datasets.pipeline import build_dataset
from talkbench.datasets.sources import ClipSpec
from talkbench.samples import sample_dir
from talkbench.vqtalker.data import (
    FramePairs,
    PairBatches,
    TrainingDataError,
    batch_to_model,
    catalog_clips,
    clip_boxes,
    clips_from_source,
    dataset_splits,
    default_regions_root,
    file_clip,
    pair_loader,
    pair_picks,
    regions_path,
)
from talkbench.vqtalker.controls import Controls, clip_controls
from talkbench.vqtalker.controls import cache_file as controls_cache_file
from talkbench.vqtalker.losses import region_boxes
from talkbench.vqtalker.prepare import check_regions, fill_nearest, prepare_controls, prepare_regions
from talkbench.vqtalker.tokenizer import to_model


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = sample_dir()
    specs = [ClipSpec("en_001", "files", str(root / "en_001.mp4"), 0.0, 2.4, split="train", language="en"),
             ClipSpec("de_001", "files", str(root / "de_001.mp4"), 0.0, 2.4, split="test", language="de")]
    out = tmp_path_factory.mktemp("vqtalker-data") / "ds"
    summary = build_dataset("files", None, out, specs=specs, workers=0, progress=False, min_face_px=256,
                            min_seconds=1.0)
    assert summary.accepted == 2, summary
    return out


def test_catalog_clips_filter_by_split(built):
    (train,) = catalog_clips(built, ["train"])
    assert (train.clip_id, train.split, train.language, train.frames, train.fps, train.width) == \
        ("en_001", "train", "en", 60, 25.0, 512)
    assert train.path == (built / "clips" / "en_001.mp4").resolve() and train.path.is_file()
    assert len(media.read_frames(train.path)) == train.frames  # the catalog's count is what decodes
    assert [c.clip_id for c in catalog_clips(built, ["test"])] == ["de_001"]
    assert [c.clip_id for c in catalog_clips(built)] == ["de_001", "en_001"]
    assert [c.clip_id for c in catalog_clips(built, "train")] == ["en_001"]
    assert clips_from_source(built, ["train", "test"]) == catalog_clips(built)
    assert default_regions_root(built) == built / "vqtalker" / "regions"
    with pytest.raises(TrainingDataError, match=r"catalog.duckdb: no accepted clip in split val; its splits are test, train"):
        catalog_clips(built, ["val"])
    with pytest.raises(TrainingDataError, match="an empty list of splits selects no clip"):
        catalog_clips(built, [])
    with pytest.raises(TrainingDataError, match=rf"{built.parent}: no catalog.duckdb here"):
        catalog_clips(built.parent)


def test_dataset_splits_never_train_on_validation_clips(built):
    ids = lambda clips: [c.clip_id for c in clips]  # noqa: E731
    train, val = dataset_splits(built, {"val": ["test"]})  # no train split named: all but the validation clips
    assert (ids(train), ids(val)) == (["en_001"], ["de_001"])
    assert tuple(map(ids, dataset_splits(built, {"train": ["train", "test"], "val": ["test"]}))) == (["en_001"], ["de_001"])
    assert tuple(map(ids, dataset_splits(built, None))) == (["de_001", "en_001"], [])
    # val_persons: a person is held out when sha1(person, else clip id) falls under the fraction
    # (de_001 hashes to 0.771, en_001 to 0.813), so the same clips every run.
    assert tuple(map(ids, dataset_splits(built, {"val_persons": 0.8}))) == (["en_001"], ["de_001"])
    with pytest.raises(TrainingDataError, match=r"val_persons=0.5 leaves 2 training and 0 validation clips"):
        dataset_splits(built, {"val_persons": 0.5})
    with pytest.raises(TrainingDataError, match="not both"):
        dataset_splits(built, {"val": ["test"], "val_persons": 0.1})


def test_read_frames_at_equals_read_frames():
    path = sample_dir() / "en_001.mp4"  # 123 frames: index 110 is a real seek (2 s margin)
    indices = [110, 3, 110, 60, 0, 122]
    reference = media.read_frames(path, size=96)
    got = media.read_frames_at(path, indices, size=96)
    assert got.shape == (6, 96, 96, 3) and got.dtype == np.uint8
    assert np.array_equal(got, reference[indices])
    with pytest.raises(media.MediaError, match="frame 123 is past the end"):
        media.read_frames_at(path, [5, 123])


def test_pair_stream_is_the_pair_samplers():
    """Values drawn by train.PairSampler(clips of 80, 123 and 2 frames, batch 3, seed 7).indices
    before the DataLoader path existed: checkpoints of either resume to the same pairs."""
    counts = [80, 123, 2]
    assert pair_picks(counts, 3, 7, 0, 0, 0) == [(2, 0, 1), (2, 0, 1), (2, 1, 0)]
    assert pair_picks(counts, 3, 7, 5, 1, 1) == [(0, 11, 37), (1, 45, 69), (2, 1, 0)]
    assert pair_picks(counts, 3, 7, 123456, 3, 0) == [(1, 73, 17), (1, 84, 59), (2, 0, 1)]
    clips = [file_clip(sample_dir() / f"{n}.mp4") for n in ("en_001", "de_001")]
    counts = [c.frames for c in clips]
    for rank in (0, 1):
        batches = PairBatches(clips, 4, seed=3, rank=rank, start_step=10, micro_batches=2, steps=13)
        assert len(batches) == 6
        expected = [pair_picks(counts, 4, 3, step, rank, micro) for step in (10, 11, 12) for micro in (0, 1)]
        assert list(batches) == expected
    assert list(PairBatches(clips, 4, 3, 0, 0, 1, 2)) != list(PairBatches(clips, 4, 3, 1, 0, 1, 2))


def test_pair_loader_decodes_the_sampled_frames(built):
    clips = catalog_clips(built)
    loader = pair_loader(clips, 128, batch_size=3, seed=1, rank=1, start_step=4, workers=2, steps=6)
    reference = {c.clip_id: media.read_frames(c.path, size=128) for c in clips}
    batches = list(loader)
    assert len(batches) == 2
    for step, (src, tgt, boxes) in zip((4, 5), batches):
        picks = pair_picks([c.frames for c in clips], 3, 1, step, 1, 0)
        assert src.shape == (3, 128, 128, 3) and src.dtype == torch.uint8
        assert torch.isnan(boxes).all() and boxes.shape == (3, 3, 4)  # no regions root: no eye/mouth boxes
        for i, (c, s, t) in enumerate(picks):
            frames = reference[clips[c].clip_id]
            assert np.array_equal(src[i].numpy(), frames[s]) and np.array_equal(tgt[i].numpy(), frames[t])
        m_src, m_tgt, _ = batch_to_model((src, tgt, boxes), "cpu")
        assert torch.equal(m_src, to_model(src.numpy())) and torch.equal(m_tgt, to_model(tgt.numpy()))


def _reference_boxes(clip, size: int, margin: float) -> np.ndarray:
    """The earlier train.clip_landmarks -> load_clips computation, written out."""
    from talkbench.face import analyse_image, get_backend

    backend = get_backend("dlib")
    found = [a.landmarks if a.found else None
             for a in (analyse_image(f, backend, landmarks=True) for f in media.iter_frames(clip.path))]
    valid = [i for i, lm in enumerate(found) if lm is not None]
    lm = np.stack([found[min(valid, key=lambda j: abs(j - i))] for i in range(len(found))]).astype(np.float32)
    scale = np.array([size / clip.width, size / clip.height], dtype=np.float32)
    return region_boxes(lm * scale, margin)


def test_prepare_regions_in_parallel_equal_landmark_boxes_and_resume(built, tmp_path):
    clips = catalog_clips(built)
    root = tmp_path / "regions"
    done = prepare_regions(clips, root, engine="local", workers=2, progress=False)
    assert sorted((d.clip_id, d.frames, d.decoded) for d in done) == [("de_001", 60, 60), ("en_001", 60, 60)]
    assert all(d.face_frames == 60 for d in done)
    for clip in clips:
        with np.load(regions_path(root, clip)) as data:
            assert data["boxes"].dtype == np.float16 and data["boxes"].shape == (60, 3, 4)
    expected = _reference_boxes(clips[1], 256, 0.25)
    got = clip_boxes(root, clips[1], 256, 0.25)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=0, atol=0.15)  # float16 of [0, 1]: <= 0.0625 px at 256
    stamps = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    assert prepare_regions(clips, root, workers=2, progress=False) == []  # resumed: nothing to do
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir()} == stamps
    first = clip_boxes(root, clips[0], 256, 0.25)
    os.unlink(regions_path(root, clips[0]))  # as if killed before this clip finished
    with pytest.raises(TrainingDataError, match=rf"1 of 2 .*{regions_path(root, clips[0])}; every node must see"):
        check_regions(clips, root)  # another rank's check
    assert [d.clip_id for d in prepare_regions(clips, root, workers=0, progress=False)] == [clips[0].clip_id]
    check_regions(clips, root)
    assert np.array_equal(clip_boxes(root, clips[0], 256, 0.25), first)  # in-process == worker process


def test_a_clip_shorter_than_its_row_reads_its_last_frame_with_one_warning(tmp_path, caplog):
    """A file that decodes 20 frames under a row that says 50 (truncated): picks past frame 19
    read frame 19, one warning names the file and both counts, and training goes on. A file
    that decodes nothing (cut in half: the mp4 index is gone) raises naming the file."""
    rng = np.random.default_rng(2)
    video = media.write_video(tmp_path / "short.mp4", (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
                                                       for _ in range(20)))
    reference = media.read_frames(video, size=32)
    assert len(reference) == 20
    clip = dataclasses.replace(file_clip(video), frames=50)
    pairs = FramePairs([clip], 32)
    with caplog.at_level(logging.WARNING, logger="talkbench.vqtalker.data"):
        src, tgt, _ = pairs[0, 5, 45]
        assert np.array_equal(src.numpy(), reference[5]) and np.array_equal(tgt.numpy(), reference[19])
        src, tgt, _ = pairs[0, 49, 19]
        assert np.array_equal(src.numpy(), reference[19]) and np.array_equal(tgt.numpy(), reference[19])
        src, tgt, _ = pairs[0, 2, 7]  # inside the decodable part: as asked
        assert np.array_equal(src.numpy(), reference[2]) and np.array_equal(tgt.numpy(), reference[7])
    warnings = [r.getMessage() for r in caplog.records if "catalog row says" in r.getMessage()]
    assert warnings == [f"{video}: decodes 20 frames but its catalog row says 50; picks past frame 19 read frame 19"]
    (src, tgt, _), = pair_loader([clip], 32, batch_size=1, seed=0, workers=0, steps=1)  # the loader goes on too
    assert src.shape == (1, 32, 32, 3)

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    with pytest.raises(TrainingDataError, match=rf"{broken}: clip .* decodes no frame"):
        FramePairs([dataclasses.replace(clip, path=broken)], 32)[0, 1, 3]

    # A healthy clip whose decode fails part-way (1 KiB zeroed mid-stream: PyAV reports the
    # corrupt packet as an error, as it would a read error) is no short file: an error naming
    # the file and the frame, nothing clamped, so once the file reads again every frame does.
    flaky = tmp_path / "flaky.mp4"
    data = video.read_bytes()
    middle = (data.index(b"mdat") + data.index(b"moov")) // 2
    flaky.write_bytes(data[:middle] + bytes(1024) + data[middle + 1024:])
    flaky_clip = file_clip(flaky)
    assert flaky_clip.frames == 20
    flaky_pairs = FramePairs([flaky_clip], 32)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="talkbench.vqtalker.data"):
        with pytest.raises(TrainingDataError, match=rf"{flaky}: clip {flaky_clip.clip_id} fails to decode at frame "
                                                    r"\d+ of 20 at 25 fps \(.*decoding failed after") as failed:
            flaky_pairs[0, 2, 17]
    assert 0 < int(str(failed.value).split(" at frame ")[1].split()[0]) < 17
    assert not [r for r in caplog.records if "catalog row says" in r.getMessage()]
    flaky.write_bytes(data)
    src, tgt, _ = flaky_pairs[0, 2, 17]
    assert np.array_equal(src.numpy(), reference[2]) and np.array_equal(tgt.numpy(), reference[17])


def test_clip_without_face_gets_nan_boxes_and_a_warning(tmp_path, caplog):
    rng = np.random.default_rng(0)
    video = media.write_video(tmp_path / "noise.mp4", (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(6)))
    clip = file_clip(video)
    with caplog.at_level(logging.WARNING):
        prepare_regions([clip], tmp_path / "regions", workers=0, progress=False)
    assert f"{clip.clip_id}: no face found in any frame" in caplog.text
    assert np.isnan(clip_boxes(tmp_path / "regions", clip, 64, 0.25)).all()
    with pytest.raises(TrainingDataError, match="run prepare_regions"):
        pair_loader([clip], 64, 1, 0, workers=0, regions_root=tmp_path / "elsewhere")


def test_prepare_regions_reports_progress_as_clips_finish(tmp_path):
    rng = np.random.default_rng(1)
    clips = []
    for name in ("a", "b"):
        video = media.write_video(tmp_path / f"{name}.mp4",
                                  (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)))
        clips.append(file_clip(video))
    calls = []
    prepare_regions(clips, tmp_path / "regions", workers=0, progress=lambda *call: calls.append(call))
    assert calls == [(0, 2, ""), (1, 2, clips[0].clip_id), (2, 2, clips[1].clip_id)]
    calls.clear()
    assert prepare_regions(clips, tmp_path / "regions", workers=0, progress=lambda *call: calls.append(call)) == []
    assert calls == []  # nothing to prepare: no report


def test_a_clip_that_fails_costs_only_its_regions(tmp_path):
    rng = np.random.default_rng(0)
    video = media.write_video(tmp_path / "noise.mp4", (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(6)))
    good = file_clip(video)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    bad = dataclasses.replace(good, clip_id="broken", path=broken)
    with pytest.raises(TrainingDataError, match=r"regions failed for 1 of 2 clips: .*broken.mp4"):
        prepare_regions([bad, good], tmp_path / "regions", workers=0, progress=False)
    assert regions_path(tmp_path / "regions", good).is_file()
    assert not regions_path(tmp_path / "regions", bad).exists()


def test_prepare_controls_in_parallel_equal_serial_controls_and_resume(built, tmp_path):
    """Stage-2 controls on two local workers: a broken file fails by name while the other clips'
    files are stored, each equal to a serial ``clip_controls`` of the clip and where
    ``_sample`` reads them; a second call computes nothing."""
    clips = catalog_clips(built)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    cache = tmp_path / "cache"
    with pytest.raises(TrainingDataError, match=rf"^controls failed for 1 of 3 clips: {re.escape(str(broken))}: "):
        prepare_controls([clips[0], broken, clips[1]], cache, media.DEFAULT_FPS, workers=2)
    files = {c.clip_id: controls_cache_file(c.path, media.DEFAULT_FPS, cache) for c in clips}
    stamps = {name: f.stat().st_mtime_ns for name, f in files.items()}
    for clip in clips:
        got, serial = Controls.load(files[clip.clip_id]), clip_controls(clip.path, cache_dir=tmp_path / "serial")
        assert len(got) == 60 and got.found.any()
        for field in ("pose", "gaze", "blink", "found"):
            assert np.array_equal(getattr(got, field), getattr(serial, field)), (clip.clip_id, field)
    assert prepare_controls(clips, cache, media.DEFAULT_FPS, workers=2) == []
    assert {name: f.stat().st_mtime_ns for name, f in files.items()} == stamps


def test_fill_nearest_takes_the_nearest_face_earlier_on_ties():
    a, b = np.full((68, 2), 1.0), np.full((68, 2), 2.0)
    out = fill_nearest([None, a, None, None, b, None])
    assert out[:, 0, 0].tolist() == [1, 1, 1, 2, 2, 2]  # frame 2 is nearer a; none is a tie but 2.5
    out = fill_nearest([a, None, b])
    assert out[1, 0, 0] == 1  # a tie goes to the earlier frame, as min() over ascending frames did
    assert np.isnan(fill_nearest([None, None])).all()


def test_generator_samples_are_sharded_by_rank_and_equal_on_every_rank(built, tmp_path):
    """Two ranks in turn, no process group (nothing to wait on): rank 1 encodes its shard, finds
    rank 0's clip missing from the cache and raises an error naming its stage-1 file (no silent
    re-encoding); rank 0 then encodes its shard and reads rank 1's from the cache, and rank 1,
    run again, reads both; the samples are equal. The stage-1 targets, streamed from the file,
    are codec.encode_frames of the decoded frames. (The wait on a real process group:
    tests/vqtalker/test_waits.py.)"""
    from talkbench.vqtalker.codec import encode_frames
    from talkbench.vqtalker.cache import clip_key
    from talkbench.vqtalker.inference import load_tokenizer
    from talkbench.vqtalker.prepare import prepare_generator_samples, stage1_path
    from talkbench.vqtalker.speech import get_speech_backend
    from talkbench.vqtalker.training import DistInfo
    from talkbench.weights import file_sha256

    pytest.importorskip("faster_whisper")
    checkpoint = Path(__file__).parents[2] / "src/talkbench/vqtalker/pretrained/tiny-tokenizer.pt"
    tokenizer = load_tokenizer(checkpoint)
    sha = file_sha256(checkpoint)
    clips = catalog_clips(built)
    cache = tmp_path / "cache"
    kwargs = dict(tokenizer=tokenizer, tokenizer_sha=sha, speech_backend=get_speech_backend("whisper"),
                  cache_dir=cache, device="cpu")
    results = {}
    missing = stage1_path(clips[0].path, sha, media.DEFAULT_FPS, cache)
    with pytest.raises(TrainingDataError, match=rf"^1 of 1 stage-1 files other ranks encoded are missing from the "
                                                rf"stage-2 cache: {missing}; every node must see the stage-2 cache "
                                                rf"{cache} \(a shared filesystem"):
        prepare_generator_samples(clips, dist_info=DistInfo(1, 2), **kwargs)
    assert [p.parent.name for p in cache.glob("*/stage1_*.npz")] == [clip_key(clips[1].path)]  # its shard only
    results[0] = prepare_generator_samples(clips, dist_info=DistInfo(0, 2), **kwargs)
    stamps = {p: p.stat().st_mtime_ns for p in cache.glob("*/stage1_*.npz")}
    assert sorted(p.parent.name for p in stamps) == sorted(clip_key(c.path) for c in clips)
    results[1] = prepare_generator_samples(clips, dist_info=DistInfo(1, 2), **kwargs)
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*/stage1_*.npz")} == stamps  # read, not encoded again
    for a, b in zip(results[0], results[1], strict=True):
        assert a.clip == b.clip and np.array_equal(a.targets, b.targets) and np.array_equal(a.speech, b.speech)
    assert [s.clip for s in results[0]] == ["de_001", "en_001"]
    for clip, sample in zip(clips, results[0]):
        indices = encode_frames(tokenizer, media.read_frames(clip.path, size=tokenizer.config.size))
        assert sample.frames == 60 and sample.targets.shape == indices.shape[:2] + (60,)
        assert np.array_equal(sample.targets, indices[..., :60])
        assert sample.controls.shape == (60, 7) and sample.speech.shape[0] == 60
