"""Downloading a source video with yt-dlp: format choice, retries with backoff, the remux of
separate video and audio streams when no ffmpeg binary is there, and the classification of
failures into the pipeline's fetch reason codes.

One video is downloaded once into ``raw_dir`` as ``<key>.<ext>`` (the clips of one video share
it); a lock keeps two workers from downloading it twice; transient failures (rate limits,
network errors) are retried with exponential backoff. A failure raises ``DownloadFailed``
with its reason code, which the fetch stage turns into the clip's rejection."""

from __future__ import annotations

import fcntl
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from talkbench import media
from talkbench.errors import TalkbenchError

# reason codes worth retrying within the run (the fetch stage retries the clip on re-run too)
TRANSIENT = frozenset({"rate_limited", "network_error"})
SOCKET_TIMEOUT = 30  # seconds


class DownloadFailed(TalkbenchError):
    """A download that failed: ``code`` is a fetch reason code (``http_error``,
    ``video_unavailable``, ``rate_limited``, ...), ``detail`` names the URL and yt-dlp's words."""

    def __init__(self, code: str, detail: str):
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


@dataclass(frozen=True)
class DownloadOptions:
    max_height: int = 1080
    cookies: str | None = None  # a cookies file for yt-dlp
    retries: int = 3
    backoff: float = 2.0  # seconds, doubled per retry
    rate_limit: int | None = None  # bytes/s
    sleep_between: float = 0.0  # seconds between requests (yt-dlp sleep_interval_requests)


def classify_fetch_error(message: str) -> str:
    m = message.lower()
    if "http error 429" in m or "too many requests" in m or "sign in to confirm" in m or "not a bot" in m:
        return "rate_limited"
    if any(s in m for s in ("private video", "video unavailable", "has been removed", "been terminated",
                             "no longer available", "this video is not available", "members-only")):
        return "video_unavailable"
    if "requested format is not available" in m or "no video formats found" in m:
        return "format_unavailable"
    if "unsupported url" in m:
        return "not_video"
    if re.search(r"http error \d{3}", m):
        return "http_error"
    if any(s in m for s in ("timed out", "timeout", "connection", "name resolution", "network is unreachable",
                             "temporary failure", "reset by peer", "refused", "remote end closed")):
        return "network_error"
    return "fetch_failed"


def format_selector(max_height: int) -> str:
    single = f"b[height<=?{max_height}][ext=mp4]/b[height<=?{max_height}]"
    if shutil.which("ffmpeg"):  # yt-dlp needs ffmpeg to merge separate video and audio streams
        return f"bv*[height<=?{max_height}][ext=mp4]+ba[ext=m4a]/{single}/bv*[height<=?{max_height}]+ba"
    return single


def finished_download(raw_dir: Path, key: str) -> Path | None:
    """A finished download ``<key>.<ext>``; not ``.part`` files, locks, or the separate
    ``<key>.video.*`` / ``<key>.audio.*`` parts awaiting their remux."""
    for p in sorted(Path(raw_dir).glob(f"{key}.*")):
        ext = p.name[len(key) + 1 :]
        if "." not in ext and ext not in ("lock", "part", "ytdl", "tmp") and p.stat().st_size:
            return p
    return None


def download(url: str, key: str, raw_dir: Path, options: DownloadOptions) -> Path:
    """``url``'s video with audio, at most ``options.max_height`` tall, as ``raw_dir/<key>.<ext>``
    (reused when already there). Raises ``DownloadFailed``."""
    import yt_dlp

    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    with open(raw_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = finished_download(raw_dir, key)
        if done:
            return done
        opts = {
            "outtmpl": str(raw_dir / f"{key}.%(ext)s"),
            "format": format_selector(options.max_height),
            "merge_output_format": "mp4",
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "noplaylist": True,
            "retries": options.retries,
            "fragment_retries": options.retries,
            "socket_timeout": SOCKET_TIMEOUT,
            "logger": QuietLogger(),
        }
        if options.cookies:
            opts["cookiefile"] = options.cookies
        if options.rate_limit:
            opts["ratelimit"] = options.rate_limit
        if options.sleep_between:
            opts["sleep_interval_requests"] = options.sleep_between
        delay = options.backoff
        for attempt in range(options.retries + 1):
            try:
                if shutil.which("ffmpeg"):
                    path = ydl_download(opts, url)
                else:
                    path = download_and_remux(opts, url, raw_dir / key, options.max_height)
                if not path.is_file():
                    raise DownloadFailed("fetch_failed", f"yt-dlp reported {path} but it is not there")
                return path
            except yt_dlp.utils.DownloadError as exc:
                text = strip_ansi(str(exc))
                code = classify_fetch_error(text)
                if code not in TRANSIENT or attempt == options.retries:
                    raise DownloadFailed(code, f"{url}: {text}") from None
                time.sleep(delay)
                delay *= 2
    raise AssertionError("unreachable")


def ydl_download(opts: dict, url: str) -> Path:
    import yt_dlp

    with yt_dlp.YoutubeDL(opts) as ydl:
        info = ydl.extract_info(url, download=True)
        downloads = info.get("requested_downloads") or [{}]
        return Path(downloads[0].get("filepath") or ydl.prepare_filename(info))


def download_and_remux(opts: dict, url: str, stem: Path, max_height: int) -> Path:
    """Without an ffmpeg binary yt-dlp cannot merge a video-only and an audio-only stream, and
    YouTube serves 720p/1080p only that way. So: when the best video-only format is taller
    than the best combined one, download it and the best audio-only format separately and
    remux them (stream copy) with PyAV's bundled FFmpeg libraries."""
    import yt_dlp

    with yt_dlp.YoutubeDL({**opts, "format": None}) as ydl:
        info = ydl.extract_info(url, download=False)
    picked = pick_separate_formats(info.get("formats") or [], max_height)
    if picked is None:
        return ydl_download(opts, url)  # one file with both streams (or the best there is)
    best_video, best_audio = picked
    parts = []
    for fmt, tag in ((best_video, "video"), (best_audio, "audio")):
        part_opts = {**opts, "format": fmt["format_id"], "outtmpl": f"{stem}.{tag}.%(ext)s"}
        parts.append(ydl_download(part_opts, url))
    out = stem.with_suffix(".mp4")
    media.remux(parts[0], parts[1], out)
    for p in parts:
        p.unlink(missing_ok=True)
    return out


def pick_separate_formats(formats: list[dict], max_height: int) -> tuple[dict, dict] | None:
    """(video-only, audio-only) formats to download and remux, or None when a combined format
    is at least as tall as the best video-only one within ``max_height`` (or there is no
    separate audio). Prefers mp4 video and m4a audio at equal height / bitrate."""

    def height(f):
        return f.get("height") or 0

    def has(f, kind):
        return f.get(kind) not in (None, "none")

    fits = [f for f in formats if height(f) <= max_height]
    combined = [f for f in fits if has(f, "vcodec") and has(f, "acodec")]
    video_only = [f for f in fits if has(f, "vcodec") and f.get("acodec") == "none"]
    audio_only = [f for f in formats if f.get("vcodec") == "none" and has(f, "acodec")]
    if not video_only or not audio_only:
        return None
    best_video = max(video_only, key=lambda f: (height(f), f.get("ext") == "mp4", f.get("tbr") or 0))
    if height(best_video) <= max((height(f) for f in combined), default=-1):
        return None
    best_audio = max(audio_only, key=lambda f: (f.get("ext") == "m4a", f.get("abr") or f.get("tbr") or 0))
    return best_video, best_audio


class QuietLogger:
    """yt-dlp's logger, silenced: failures come back as exceptions and are classified."""

    def debug(self, msg):
        pass

    def info(self, msg):
        pass

    def warning(self, msg):
        pass

    def error(self, msg):
        pass


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
