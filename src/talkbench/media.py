"""The one place video and audio are read and written.

Everything goes through PyAV (FFmpeg bundled in its wheel), so no system ffmpeg is needed.
Conventions: frames are uint8 RGB arrays of shape (H, W, 3); audio is float32 mono at 16 kHz;
time is 25 fps unless the caller asks otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from talkbench import util
from talkbench.errors import MediaError

DEFAULT_FPS = 25
AUDIO_RATE = 16_000

# File names read as video / audio wherever talkbench lists a folder (matched case-insensitively).
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".flv", ".mpg", ".mpeg", ".ts")
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".m4a", ".ogg", ".opus", ".aac", ".wma")

# swscale interpolation used whenever frames are resized; recorded in every protocol.
RESIZE_INTERPOLATION = "AREA"

# What ``write_video(lossless=True)`` writes; recorded by the imports that use it.
LOSSLESS_CODEC = "libx264rgb qp=0 (H.264 High 4:4:4 Predictive, RGB, lossless)"


@dataclass(frozen=True)
class MediaInfo:
    path: str
    format: str
    duration: float  # seconds, of the longest stream
    bit_rate: int | None  # container bit rate in bit/s, as ffprobe's format.bit_rate
    has_video: bool
    width: int
    height: int
    fps: float
    frame_count: int
    video_codec: str | None
    video_bit_rate: int | None
    has_audio: bool
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None

    def to_dict(self) -> dict:
        return asdict(self)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaError(path, "file not found")
    if path.is_dir():
        raise MediaError(path, "is a directory, not a media file")
    if path.stat().st_size == 0:
        raise MediaError(path, "file is empty (0 bytes)")


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    _check_file(path)
    try:
        return av.open(str(path), mode="r")
    except av.error.InvalidDataError as exc:
        raise MediaError(path, f"not a media file FFmpeg can read, or truncated/corrupt ({exc})") from exc
    except av.error.FFmpegError as exc:
        raise MediaError(path, f"FFmpeg cannot open it ({exc})") from exc


def probe(path: str | Path) -> MediaInfo:
    """Duration, fps, frame count, resolution, codecs and whether there is audio."""
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise MediaError(path, "has neither a video nor an audio stream")
        duration = container.duration / av.time_base if container.duration else 0.0
        fps = float(video.average_rate or video.guessed_rate or 0) if video else 0.0
        frame_count = video.frames if video else 0
        if video is not None and frame_count <= 0:
            # Some containers (webm, mkv) do not store a frame count: count packets instead.
            frame_count = sum(1 for p in container.demux(video) if p.size)
        if video is not None and duration == 0.0 and fps:
            duration = frame_count / fps
        return MediaInfo(
            path=str(path),
            format=container.format.name,
            duration=duration,
            bit_rate=container.bit_rate or None,
            has_video=video is not None,
            width=video.codec_context.width if video else 0,
            height=video.codec_context.height if video else 0,
            fps=fps,
            frame_count=frame_count,
            video_codec=video.codec_context.name if video else None,
            video_bit_rate=(video.bit_rate or None) if video else None,
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio else None,
            audio_sample_rate=audio.codec_context.sample_rate if audio else None,
            audio_channels=audio.codec_context.channels if audio else None,
        )


def _size_arg(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def iter_frames(
    path: str | Path,
    fps: float | None = DEFAULT_FPS,
    size: int | tuple[int, int] | None = None,
) -> Iterator[np.ndarray]:
    """Yield uint8 RGB frames one at a time, resampled to ``fps`` and resized to ``size``.

    ``fps=None`` keeps the source rate. Resampling follows FFmpeg's ``fps`` filter with
    ``round=near``: each source frame is placed at the output slot nearest its timestamp,
    duplicated to fill gaps and dropped when a later frame takes its slot. ``size`` is an
    int (square) or (width, height); resizing is a plain scale (no crop) with
    ``RESIZE_INTERPOLATION``. A file that stops decoding early raises ``MediaError``.
    """
    wh = _size_arg(size)
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(path, "has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        expected = stream.frames

        def to_rgb(frame: av.VideoFrame) -> np.ndarray:
            if wh is None:
                return frame.to_ndarray(format="rgb24")
            return frame.to_ndarray(
                format="rgb24", width=wh[0], height=wh[1], interpolation=RESIZE_INTERPOLATION
            )

        decoded = 0
        start: float | None = None
        pending: av.VideoFrame | None = None  # last source frame not yet emitted
        next_slot = 0
        src_period = 1.0 / float(stream.average_rate or stream.guessed_rate or DEFAULT_FPS)
        last_time = 0.0
        try:
            for frame in container.decode(stream):
                decoded += 1
                t = float(frame.time) if frame.time is not None else (decoded - 1) * src_period
                if fps is None:
                    yield to_rgb(frame)
                    continue
                if start is None:
                    start = t
                slot = round((t - start) * fps)
                # Fill every output slot before this frame's slot with the previous frame.
                while pending is not None and next_slot < slot:
                    yield to_rgb(pending)
                    next_slot += 1
                pending = frame  # replaces an earlier frame that mapped to the same slot
                last_time = t
        except av.error.FFmpegError as exc:
            raise MediaError(path, f"decoding failed after {decoded} frames ({exc})") from exc

        if fps is not None and pending is not None:
            end_slot = max(round((last_time + src_period - (start or 0.0)) * fps), next_slot + 1)
            while next_slot < end_slot:
                yield to_rgb(pending)
                next_slot += 1

        if decoded == 0:
            raise MediaError(path, "video stream has no decodable frames (corrupt or truncated)")
        if expected and decoded < 0.9 * expected:
            raise MediaError(path, f"truncated: decoded {decoded} of {expected} frames")


def read_frames(
    path: str | Path, fps: float | None = DEFAULT_FPS, size: int | tuple[int, int] | None = None
) -> np.ndarray:
    """All frames as one (T, H, W, 3) uint8 array; for short clips only."""
    frames = list(iter_frames(path, fps=fps, size=size))
    return np.stack(frames)


SEEK_MARGIN = 2.0  # seconds decoded before the first wanted frame after seeking to a keyframe


def iter_frame_range(
    path: str | Path,
    first: int,
    last: int,
    fps: float = DEFAULT_FPS,
    size: int | tuple[int, int] | None = None,
    wanted: set[int] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, frame) for frames ``first`` to ``last - 1`` (only ``wanted`` ones when given).

    Frame k is exactly frame k of ``iter_frames(path, fps, size)`` (same slot rule: the source
    frame nearest k/fps after the first frame's time, same resize), but decoding starts at a
    keyframe ``SEEK_MARGIN`` seconds before ``first`` instead of at the file's start, and only
    the frames returned are converted to RGB. Indices past the end are simply not yielded."""
    wh = _size_arg(size)

    def emit(slot, frame):
        if slot >= first and (wanted is None or slot in wanted):
            if wh is None:
                return slot, frame.to_ndarray(format="rgb24")
            return slot, frame.to_ndarray(format="rgb24", width=wh[0], height=wh[1],
                                          interpolation=RESIZE_INTERPOLATION)
        return None

    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(path, "has no video stream")
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        period = 1.0 / float(vs.average_rate or vs.guessed_rate or DEFAULT_FPS)
        try:
            origin = None  # time of the file's first decoded frame: slot 0, as in iter_frames
            for frame in container.decode(vs):
                origin = frame.time
                break
            if origin is None:
                raise MediaError(path, "video stream has no decodable frames (corrupt or truncated)")
            target = first / fps - SEEK_MARGIN
            if target > 0:
                container.seek(int((origin + target) / vs.time_base), stream=vs, backward=True, any_frame=False)
            else:
                container.seek(0, stream=vs, backward=True, any_frame=False)
            pending, next_slot, last_time = None, None, origin
            for frame in container.decode(vs):
                if frame.time is None:
                    raise MediaError(path, "frames without timestamps: cannot seek frame-accurately")
                t = float(frame.time)
                slot = round((t - origin) * fps)
                if next_slot is None:
                    if slot > first:  # the keyframe landed after the first frame: decode from 0
                        for i, frame in enumerate(iter_frames(path, fps=fps, size=size)):
                            if i >= last:
                                break
                            if i >= first and (wanted is None or i in wanted):
                                yield i, frame
                        return
                    next_slot = slot
                while pending is not None and next_slot < slot:
                    if next_slot >= last:
                        return
                    out = emit(next_slot, pending)
                    if out:
                        yield out
                    next_slot += 1
                pending, last_time = frame, t
            if pending is not None:
                end_slot = max(round((last_time + period - origin) * fps), next_slot + 1)
                while next_slot < min(end_slot, last):
                    out = emit(next_slot, pending)
                    if out:
                        yield out
                    next_slot += 1
        except av.error.FFmpegError as exc:
            raise MediaError(path, f"decoding failed while seeking ({exc})") from exc


def read_frames_at(
    path: str | Path,
    indices: Iterable[int],
    fps: float = DEFAULT_FPS,
    size: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """(len(indices), H, W, 3) uint8 frames at ``indices`` (any order, repeats allowed), equal to
    ``read_frames(path, fps, size)[indices]`` but decoding only near them (``iter_frame_range``):
    indices further apart than twice ``SEEK_MARGIN`` are read by separate seeks."""
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("no frame indices to read")
    if min(indices) < 0:
        raise MediaError(path, f"frame index {min(indices)} is negative")
    gap = max(1, int(2 * SEEK_MARGIN * fps))
    order = sorted(set(indices))
    groups, start = [], 0
    for k in range(1, len(order) + 1):
        if k == len(order) or order[k] - order[k - 1] > gap:
            groups.append(order[start:k])
            start = k
    got: dict[int, np.ndarray] = {}
    for group in groups:
        got.update(iter_frame_range(path, group[0], group[-1] + 1, fps, size, set(group)))
    missing = [i for i in order if i not in got]
    if missing:
        raise MediaError(path, f"frame {missing[0]} is past the end of the video at {fps:g} fps")
    return np.stack([got[i] for i in indices])


def resize_image(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """A uint8 RGB image resized as ``iter_frames`` resizes frames (a plain swscale scale with
    ``RESIZE_INTERPOLATION``), e.g. a source portrait brought to the evaluation resolution."""
    width, height = _size_arg(size)
    if image.shape[:2] == (height, width):
        return image
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation=RESIZE_INTERPOLATION)


def read_audio(path: str | Path, sample_rate: int = AUDIO_RATE) -> np.ndarray:
    """The first audio stream as float32 mono at ``sample_rate`` (16 kHz by default)."""
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise MediaError(path, f"audio decoding failed ({exc})") from exc
        declared = stream.duration * stream.time_base if stream.duration else None
    if not chunks:
        raise MediaError(path, "audio stream has no decodable samples")
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    if declared:
        # AAC decodes whole 1024-sample frames; the container's duration says where to stop.
        samples = samples[: int(round(float(declared) * sample_rate))]
    return samples


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float = DEFAULT_FPS,
    audio: np.ndarray | None = None,
    sample_rate: int = AUDIO_RATE,
    crf: int = 18,
    bit_rate: int | None = None,
    lossless: bool = False,
    keyint: int | None = None,
) -> Path:
    """Encode uint8 RGB frames (and optional float32 mono audio) as H.264 + AAC mp4.

    The file is written to a temporary name beside ``path`` and renamed when complete, so
    an interrupted write never leaves a half file under the final name. ``bit_rate`` (bit/s)
    switches the encoder from constant quality (``crf``) to a target bitrate.

    ``lossless=True`` encodes ``LOSSLESS_CODEC`` instead: H.264 in RGB (no YUV 4:2:0 round
    trip, which alone loses colour) at qp 0, still an mp4 that ``iter_frames`` decodes to the
    very same uint8 RGB, any width and height. Use it for video that will be measured; it
    is about 20x larger (roughly 50 Mbit/s for 512x512 talking heads at 25 fps).

    ``keyint`` is the largest keyframe interval (GOP) in frames; None keeps x264's default
    (250). A short one makes seeking (``read_frames_at``) decode fewer frames per read.
    """
    if keyint is not None and (isinstance(keyint, bool) or not isinstance(keyint, int) or keyint < 1):
        raise ValueError(f"keyint must be a positive number of frames, got {keyint!r}")
    if lossless and bit_rate:
        raise ValueError("lossless and bit_rate exclude each other")
    path = Path(path)
    with util.atomic_path(path, suffix=".mp4") as tmp:
        if _encode(tmp, frames, fps, audio, sample_rate, crf, bit_rate, lossless, keyint) == 0:
            raise MediaError(path, "no frames to write")
    return path


def _encode(path, frames, fps, audio, sample_rate, crf, bit_rate, lossless, keyint=None) -> int:
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format="mp4") as out:
        vstream = out.add_stream("libx264rgb" if lossless else "libx264", rate=rate)
        vstream.pix_fmt = "rgb24" if lossless else "yuv420p"
        if lossless:
            # qp 0 is lossless at every preset; the preset only trades speed for size
            # (veryfast: 2-3x faster than medium for ~5% more bytes).
            vstream.options = {"qp": "0", "preset": "veryfast"}
        elif bit_rate:
            vstream.bit_rate = int(bit_rate)
        else:
            vstream.options = {"crf": str(crf), "preset": "medium"}
        if keyint is not None:
            vstream.codec_context.gop_size = keyint
        astream = None
        if audio is not None:
            astream = out.add_stream("aac", rate=sample_rate, layout="mono")

        count = 0
        for frame in frames:
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got shape {frame.shape}")
            if count == 0:
                height, width = frame.shape[:2]
                if not lossless and (width % 2 or height % 2):
                    raise ValueError(f"H.264 4:2:0 needs even width and height, got {width}x{height}")
                vstream.width, vstream.height = width, height
            elif frame.shape[:2] != (height, width):
                raise ValueError(f"frame {count} is {frame.shape[1]}x{frame.shape[0]}, expected {width}x{height}")
            out.mux(vstream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            count += 1
        if count:
            out.mux(vstream.encode(None))

        if astream is not None and count:
            samples = np.asarray(audio, dtype=np.float32).reshape(1, -1)
            chunk = 1024
            for i in range(0, samples.shape[1], chunk):
                part = np.ascontiguousarray(samples[:, i : i + chunk])
                aframe = av.AudioFrame.from_ndarray(part, format="flt", layout="mono")
                aframe.sample_rate = sample_rate
                aframe.pts = i
                aframe.time_base = Fraction(1, sample_rate)
                out.mux(astream.encode(aframe))
            out.mux(astream.encode(None))
    return count


def frame_count_at(info: MediaInfo, fps: float = DEFAULT_FPS) -> int:
    """How many frames ``iter_frames(fps=fps)`` yields for a probed file (before decoding)."""
    if not info.fps:
        return 0
    return max(1, math.floor(info.frame_count / info.fps * fps + 0.5))


def remux(video: str | Path, audio: str | Path, out: str | Path) -> None:
    """Stream-copy the first video stream of ``video`` and audio stream of ``audio`` into an
    mp4 (no re-encoding), written to a temporary name and renamed."""
    with util.atomic_path(out, suffix=".mp4") as tmp:
        with av.open(str(video)) as vin, av.open(str(audio)) as ain, av.open(str(tmp), "w", format="mp4") as dst:
            vs, as_ = vin.streams.video[0], ain.streams.audio[0]
            ov, oa = dst.add_stream_from_template(vs), dst.add_stream_from_template(as_)
            for src, ost in ((vin.demux(vs), ov), (ain.demux(as_), oa)):
                for packet in src:
                    if packet.dts is None:
                        continue
                    packet.stream = ost
                    dst.mux(packet)


def is_codec_error(exc: BaseException) -> bool:
    """An error raised by the codec library itself (a corrupt stream, a failed seek)."""
    return isinstance(exc, av.error.FFmpegError)
