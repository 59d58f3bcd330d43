"""The lip-sync check of generated videos: does the mouth open and close with the speech?

The mouth opening of every frame (dlib landmarks) is correlated with the RMS envelope of the
audio, per 25 fps frame. A crude check, not a metric of the leaderboard: it says whether a
model's mouth follows the speech at all, which is what a tiny model can be asked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from talkbench import media
from talkbench.face import analyse_image, get_backend
from talkbench.vqtalker.speech import SAMPLES_PER_FRAME, frame_count


def mouth_opening(video: str | Path, upscale_to: int = 256) -> np.ndarray:
    """Per-frame mouth opening: mean inner-lip gap (dlib points 61-67, 62-66, 63-65) over the
    outer-eye-corner distance (36-45); NaN where no face is found. Frames smaller than
    ``upscale_to`` are upscaled first, so small renders (64 px) are measured too."""
    backend = get_backend("dlib")
    opening = []
    for frame in media.iter_frames(video):
        if frame.shape[0] < upscale_to:
            frame = np.asarray(Image.fromarray(frame).resize((upscale_to, upscale_to), Image.Resampling.LANCZOS))
        face = analyse_image(frame, backend, landmarks=True)
        if not face.found:
            opening.append(np.nan)
            continue
        lm = face.landmarks
        gap = np.mean([np.linalg.norm(lm[a] - lm[b]) for a, b in ((61, 67), (62, 66), (63, 65))])
        opening.append(gap / max(np.linalg.norm(lm[36] - lm[45]), 1e-6))
    return np.array(opening)


def speech_envelope(wave: np.ndarray, frames: int) -> np.ndarray:
    """RMS of each 25 fps frame's SAMPLES_PER_FRAME (640) samples (0 past the end of the audio)."""
    wave = np.asarray(wave, np.float32)
    return np.array([np.sqrt(np.mean(wave[i * SAMPLES_PER_FRAME : (i + 1) * SAMPLES_PER_FRAME] ** 2)) if i * SAMPLES_PER_FRAME < len(wave) else 0.0
                     for i in range(frames)])


def correlate(opening: np.ndarray, envelope: np.ndarray) -> float:
    """Pearson r over the frames where a face was found (NaN when undefined)."""
    n = min(len(opening), len(envelope))
    ok = np.isfinite(opening[:n])
    if ok.sum() < 3 or opening[:n][ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(opening[:n][ok], envelope[:n][ok])[0, 1])


def mouth_envelope_correlation(video: str | Path, audio: np.ndarray | None = None) -> dict:
    """Pearson correlation between a video's mouth opening and its speech envelope (the
    video's own audio unless ``audio`` is given): the lip-sync check of generated videos."""
    wave = media.read_audio(video) if audio is None else np.asarray(audio, np.float32)
    opening = mouth_opening(video)
    n = min(len(opening), frame_count(len(wave)))
    return {"video": str(video), "frames": int(n), "faces": int(np.isfinite(opening[:n]).sum()),
            "correlation": correlate(opening[:n], speech_envelope(wave, n)),
            "opening_std": float(np.nanstd(opening[:n])) if np.isfinite(opening).any() else float("nan")}
