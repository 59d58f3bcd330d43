"""Pieces of the fetch stage that need no server: failure classification on yt-dlp's real
messages, the choice between one combined format and separate video + audio (YouTube's
720p/1080p come only as separate streams), and the PyAV remux that joins them when no
ffmpeg binary is there for yt-dlp to merge with."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from talkbench import media
from talkbench.datasets.download import classify_fetch_error, finished_download, pick_separate_formats
from talkbench.datasets.sources import ClipSpec
from talkbench.datasets.stages import BuildConfig, Reject, cut, iter_range


def test_classify_fetch_errors():
    cases = {
        "ERROR: [generic] Unable to download webpage: HTTP Error 404: Not Found (caused by <HTTPError 404>)": "http_error",
        "ERROR: [youtube] abc: Private video. Sign in if you've been granted access to this video": "video_unavailable",
        "ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader": "video_unavailable",
        "ERROR: [youtube] abc: Sign in to confirm you're not a bot. Use --cookies-from-browser": "rate_limited",
        "ERROR: Unable to download webpage: HTTP Error 429: Too Many Requests": "rate_limited",
        "ERROR: [youtube] abc: Requested format is not available. Use --list-formats": "format_unavailable",
        "ERROR: Unable to download webpage: <urlopen error [Errno -3] Temporary failure in name resolution>": "network_error",
        "ERROR: Unsupported URL: http://127.0.0.1/notes.txt": "not_video",
        "ERROR: something else entirely": "fetch_failed",
    }
    assert {m: classify_fetch_error(m) for m in cases} == cases


YOUTUBE_LIKE = [
    {"format_id": "18", "ext": "mp4", "height": 360, "vcodec": "avc1.42001E", "acodec": "mp4a.40.2"},
    {"format_id": "140", "ext": "m4a", "vcodec": "none", "acodec": "mp4a.40.2", "abr": 129},
    {"format_id": "251", "ext": "webm", "vcodec": "none", "acodec": "opus", "abr": 135},
    {"format_id": "136", "ext": "mp4", "height": 720, "vcodec": "avc1.4d401f", "acodec": "none", "tbr": 1500},
    {"format_id": "247", "ext": "webm", "height": 720, "vcodec": "vp9", "acodec": "none", "tbr": 1500},
    {"format_id": "137", "ext": "mp4", "height": 1080, "vcodec": "avc1.640028", "acodec": "none", "tbr": 4000},
    {"format_id": "313", "ext": "webm", "height": 2160, "vcodec": "vp9", "acodec": "none", "tbr": 18000},
]


def test_pick_separate_formats():
    video, audio = pick_separate_formats(YOUTUBE_LIKE, 1080)
    assert (video["format_id"], audio["format_id"]) == ("137", "140")
    video, _ = pick_separate_formats(YOUTUBE_LIKE, 720)
    assert video["format_id"] == "136"  # mp4 preferred at equal height
    assert pick_separate_formats(YOUTUBE_LIKE, 360) is None  # the combined 360p is as tall
    assert pick_separate_formats([{"format_id": "mp4", "ext": "mp4", "url": "http://x/a.mp4"}], 1080) is None


def _aac_only(path, audio: np.ndarray) -> None:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        for i in range(0, len(audio), 1024):
            frame = av.AudioFrame.from_ndarray(audio[None, i : i + 1024].copy(), format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, i, Fraction(1, 16000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@pytest.mark.shared_data
def test_remux_joins_real_video_only_and_audio_only(shared_data, tmp_path):
    video = shared_data / "video" / "liveportrait_d13.mp4"  # real, video only, 720x1280 30 fps
    speech = media.read_audio(shared_data / "speech" / "en" / "jfk.flac")
    _aac_only(tmp_path / "k.audio.m4a", speech)
    media.remux(video, tmp_path / "k.audio.m4a", tmp_path / "k.mp4")
    src, got = media.probe(video), media.probe(tmp_path / "k.mp4")
    assert (got.width, got.height, got.frame_count, got.video_codec) == (720, 1280, src.frame_count, src.video_codec)
    assert got.has_audio and got.audio_codec == "aac"
    assert abs(len(media.read_audio(tmp_path / "k.mp4")) - len(speech)) < 2048
    # the parts are not mistaken for a finished download on resume
    assert finished_download(tmp_path, "k") == tmp_path / "k.mp4"
    (tmp_path / "k.mp4").unlink()
    assert finished_download(tmp_path, "k") is None


@pytest.mark.shared_data
def test_truncated_file_whose_header_survives(shared_data, tmp_path):
    """A 'faststart' mp4 (index first) cut short still probes as 8 s; the cut frames run out,
    and the clip is rejected as truncated instead of being encoded short."""
    src = shared_data / "video" / "WDA_KatieHill_000.mp4"
    full = tmp_path / "fast.mp4"
    with av.open(str(src)) as inp, av.open(str(full), "w", format="mp4", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        for packet in inp.demux():
            if packet.dts is not None and packet.stream.index in streams:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    data = full.read_bytes()
    short = tmp_path / "short.mp4"
    short.write_bytes(data[: len(data) // 2])
    cfg = BuildConfig(out_dir=tmp_path)
    c = cut(ClipSpec("x", "t", str(short), 4.0, 8.0), short, cfg)
    assert c.frames == 100  # the header still says 8 s
    with pytest.raises(Reject) as err:
        list(iter_range(c, 25))
    assert err.value.code == "truncated"
    whole = cut(ClipSpec("x", "t", str(full), 4.0, 8.0), full, cfg)
    assert [i for i, _ in iter_range(whole, 25)] == list(range(100, 200))
