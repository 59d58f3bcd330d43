"""media: round trips, fps resampling, and clear errors for files that are not usable media."""

from __future__ import annotations

import os

import numpy as np
import pytest

from talkbench import media
from talkbench.errors import MediaError


def moving_square(n: int, size: int = 64) -> np.ndarray:
    """Frames whose content identifies the frame index (a square at x = 2*i, brightness i)."""
    frames = np.zeros((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        frames[i, 8:24, 2 * i % (size - 16) : 2 * i % (size - 16) + 16] = 255
        frames[i, 40:, :, 1] = (i * 7) % 256
    return frames


def tone(seconds: float, rate: int = media.AUDIO_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_round_trip_frames_fps_size_audio(tmp_path):
    frames = moving_square(50)
    audio = tone(2.0)
    path = media.write_video(tmp_path / "clip.mp4", frames, fps=25, audio=audio)

    info = media.probe(path)
    assert info.frame_count == 50
    assert info.fps == 25
    assert (info.width, info.height) == (64, 64)
    assert info.has_audio and info.audio_codec == "aac" and info.video_codec == "h264"
    assert info.duration == pytest.approx(2.0, abs=1 / 25)

    decoded = media.read_frames(path)
    assert decoded.shape == frames.shape
    # Lossy, but each decoded frame must be closest to its own source frame.
    errors = np.abs(decoded.astype(int)[:, None] - frames.astype(int)[None]).mean(axis=(2, 3, 4))
    assert (errors.argmin(axis=1) == np.arange(50)).all()

    samples = media.read_audio(path)
    assert samples.dtype == np.float32
    assert abs(len(samples) - len(audio)) <= media.AUDIO_RATE / 25  # within one frame
    # The tone survives AAC: its dominant frequency is still 440 Hz.
    spectrum = np.abs(np.fft.rfft(samples[:16000]))
    assert np.argmax(spectrum) * media.AUDIO_RATE / 16000 == pytest.approx(440, abs=2)


def test_resize_on_read(tmp_path):
    path = media.write_video(tmp_path / "clip.mp4", moving_square(5, size=128))
    assert media.read_frames(path, size=32).shape == (5, 32, 32, 3)
    assert media.read_frames(path, size=(48, 24)).shape == (5, 24, 48, 3)


def test_resample_30_to_25_fps(tmp_path):
    frames = moving_square(90)  # 3 s at 30 fps
    path = media.write_video(tmp_path / "clip30.mp4", frames, fps=30)
    assert media.probe(path).fps == 30

    resampled = media.read_frames(path, fps=25)
    assert len(resampled) == 75
    # Output frame k shows the source frame nearest to time k/25: index round(k * 30 / 25).
    errors = np.abs(resampled.astype(int)[:, None] - frames.astype(int)[None]).mean(axis=(2, 3, 4))
    chosen = errors.argmin(axis=1)
    expected = np.array([round(k * 30 / 25) for k in range(75)])
    assert (np.abs(chosen - expected) <= 1).all()
    assert (np.diff(chosen) >= 0).all()

    native = media.read_frames(path, fps=None)
    assert len(native) == 90


def test_upsample_12_to_25_fps_duplicates_frames(tmp_path):
    path = media.write_video(tmp_path / "clip12.mp4", moving_square(24), fps=12)
    assert len(media.read_frames(path, fps=25)) == 50


def test_audio_resampled_to_16k_mono(tmp_path):
    path = media.write_video(tmp_path / "a.mp4", moving_square(25), audio=tone(1.0, 16000))
    assert len(media.read_audio(path, sample_rate=8000)) == pytest.approx(8000, abs=8000 / 25)


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="file not found") as info:
        media.probe(tmp_path / "nope.mp4")
    assert "nope.mp4" in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        list(media.iter_frames(path))


def test_not_media(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is a text file pretending to be a video\n" * 50)
    with pytest.raises(MediaError, match="notes.mp4"):
        media.probe(path)


def test_truncated_file(tmp_path):
    path = media.write_video(tmp_path / "full.mp4", moving_square(50), audio=tone(2.0))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(MediaError, match="cut.mp4"):
        list(media.iter_frames(cut))


def test_audio_only_file_has_no_video(tmp_path):
    import av

    path = tmp_path / "speech.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone(0.5).reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert media.probe(path).has_video is False
    with pytest.raises(MediaError, match="no video stream"):
        list(media.iter_frames(path))
    assert len(media.read_audio(path)) > 0


def test_write_is_atomic_on_failure(tmp_path):
    def frames():
        yield np.zeros((16, 16, 3), np.uint8)
        raise RuntimeError("generator failed mid-way")

    with pytest.raises(RuntimeError):
        media.write_video(tmp_path / "out.mp4", frames())
    assert list(tmp_path.iterdir()) == []


def test_written_file_gets_the_usual_mode(tmp_path):
    path = media.write_video(tmp_path / "out.mp4", moving_square(3))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the 0600 of a temporary file


def test_remux_joins_streams_and_leaves_nothing_when_it_fails(tmp_path):
    video = media.write_video(tmp_path / "v.mp4", moving_square(25))
    speech = media.write_video(tmp_path / "a.mp4", moving_square(25), audio=tone(1.0))
    media.remux(video, speech, tmp_path / "joined.mp4")
    info = media.probe(tmp_path / "joined.mp4")
    assert info.has_audio and info.frame_count == 25 and info.audio_codec == "aac"
    with pytest.raises(IndexError):  # the "audio" file has no audio stream
        media.remux(video, video, tmp_path / "broken.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "joined.mp4", "v.mp4"]


def test_odd_size_rejected(tmp_path):
    with pytest.raises(ValueError, match="even"):
        media.write_video(tmp_path / "odd.mp4", np.zeros((2, 15, 16, 3), np.uint8))


@pytest.mark.shared_data
def test_real_clips_probe_and_decode(shared_data):
    path = shared_data / "video" / "WDA_KatieHill_000.mp4"
    info = media.probe(path)
    assert (info.width, info.height, info.fps) == (512, 512, 25)
    frames = media.read_frames(path, size=256)
    assert frames.shape == (info.frame_count, 256, 256, 3)
    assert len(media.read_audio(path)) == pytest.approx(info.duration * 16000, abs=640)


@pytest.mark.shared_data
def test_lossless_write_is_bit_exact_on_real_frames(shared_data, tmp_path):
    """``lossless=True`` gives back the very uint8 RGB frames written (real faces, native size,
    odd sizes too), where the default H.264 4:2:0 write does not."""
    import itertools

    source = shared_data / "video" / "WDA_KatieHill_000.mp4"
    frames = np.stack(list(itertools.islice(media.iter_frames(source, fps=None), 12)))
    audio = media.read_audio(source)[: 12 * media.AUDIO_RATE // 25]

    path = media.write_video(tmp_path / "lossless.mp4", frames, fps=25, audio=audio, lossless=True)
    info = media.probe(path)
    assert (info.video_codec, info.frame_count, info.width, info.fps) == ("h264", 12, 512, 25)
    assert info.has_audio and info.format.startswith("mov,mp4")
    assert np.array_equal(media.read_frames(path, fps=None), frames)

    odd = np.ascontiguousarray(frames[:4, 100:357, 50:305])  # 255 wide, 257 high
    path = media.write_video(tmp_path / "odd.mp4", odd, fps=25, lossless=True)
    assert np.array_equal(media.read_frames(path, fps=None), odd)

    lossy = media.read_frames(media.write_video(tmp_path / "lossy.mp4", frames, fps=25), fps=None)
    assert np.abs(lossy.astype(int) - frames).max() > 10  # what lossless avoids
    with pytest.raises(ValueError, match="exclude"):
        media.write_video(tmp_path / "x.mp4", frames, lossless=True, bit_rate=1_000_000)
