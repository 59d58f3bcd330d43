"""Generate the sample corpus: ``python -m talkbench.samples.generate [--out DIR]``.

Each clip is a real face photo that ships with a dependency (scikit-image's astronaut, Eileen
Collins; matplotlib's Grace Hopper), animated by landmark-driven warping: the jaw and lower lip
open with the speech envelope, the upper lip lifts a little, the eyes blink every couple of
seconds and the head sways slowly. The speech is synthesised by espeak-ng (a system program:
`apt-get install espeak-ng`). Output: 512x512, 25 fps, 16 kHz mono AAC, plus ``samples.json``.

The result is deterministic for a given espeak-ng version (recorded in samples.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from talkbench import media
from talkbench.face import analyse_image, get_backend

FPS = 25
SIZE = 512
FACE_SCALE = 1.8  # crop side = face-box side x this, before resizing to 512
JAW_OPENING = 0.11  # chin drop at full loudness, as a share of the nose-bridge-to-chin height


@dataclass(frozen=True)
class SampleSpec:
    id: str
    language: str  # ISO 639-1
    voice: str  # espeak-ng voice
    portrait: str
    text: str


SPECS = [
    SampleSpec("ar_001", "ar", "ar", "astronaut", "مرحبا بكم. نحن نتحدث العربية اليوم."),
    SampleSpec("sw_001", "sw", "sw", "grace_hopper", "Habari za asubuhi. Leo tunazungumza Kiswahili."),
    SampleSpec("zh_001", "zh", "cmn", "astronaut", "大家好，我们说普通话。"),
    SampleSpec("ko_001", "ko", "ko", "grace_hopper", "안녕하세요. 오늘은 한국어로 이야기합니다."),
    SampleSpec("ja_001", "ja", "ja", "astronaut", "こんにちは。きょうはにほんごではなします。よろしく。"),
    SampleSpec("tr_001", "tr", "tr", "grace_hopper", "Merhaba, bugün Türkçe konuşuyoruz."),
    SampleSpec("en_001", "en", "en-us", "astronaut", "Hello everyone, today we are speaking English together."),
    SampleSpec("de_001", "de", "de", "grace_hopper", "Guten Morgen, heute sprechen wir zusammen Deutsch."),
]


def load_portrait(name: str) -> np.ndarray:
    if name == "astronaut":
        from skimage import data

        return data.astronaut()
    if name == "grace_hopper":
        from matplotlib import cbook

        path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        return np.asarray(Image.open(path).convert("RGB"))
    raise ValueError(f"unknown portrait {name!r}")


def crop_face(image: np.ndarray) -> np.ndarray:
    """A square crop around the detected face, resized to SIZE."""
    face = analyse_image(image, get_backend(), landmarks=False)
    if face.box is None:
        raise RuntimeError("no face found in portrait")
    cx, cy = face.box.center
    half = face.box.size * FACE_SCALE / 2
    cy -= face.box.size * 0.1  # include the forehead: dlib boxes sit low on the face
    pad = int(np.ceil(half)) + 1
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    x0, y0 = int(round(cx - half)) + pad, int(round(cy - half)) + pad
    side = int(round(2 * half))
    crop = padded[y0 : y0 + side, x0 : x0 + side]
    return np.asarray(Image.fromarray(crop).resize((SIZE, SIZE), Image.LANCZOS))


def synthesise(text: str, voice: str) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True)
        return media.read_audio(wav)


def speech_envelope(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """Per-frame loudness in [0, 1]: RMS over each 40 ms frame, normalised, lightly smoothed."""
    hop = media.AUDIO_RATE // FPS
    padded = np.pad(audio, (0, max(0, n_frames * hop - len(audio))))
    rms = np.sqrt(np.mean(padded[: n_frames * hop].reshape(n_frames, hop) ** 2, axis=1))
    env = np.clip(rms / (np.percentile(rms, 95) + 1e-8), 0, 1)
    return ndimage.gaussian_filter1d(env, 0.8)


def blink_curve(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Eyelid closure in [0, 1]: a 5-frame blink roughly every 2-3 s."""
    closure = np.zeros(n_frames)
    t = int(rng.integers(15, 40))
    while t < n_frames - 5:
        closure[t : t + 5] = [0.4, 0.9, 1.0, 0.8, 0.3]
        t += int(rng.integers(50, 75))
    return closure


def displacement_field(points: np.ndarray, moves: np.ndarray, sigma: float) -> np.ndarray:
    """A smooth (H, W, 2) field: Gaussian-weighted blend of the control points' moves."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    field = np.zeros((SIZE, SIZE, 2), dtype=np.float32)
    for (px, py), move in zip(points, moves):
        if not move.any():
            continue
        weight = np.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma**2))
        field += weight[..., None] * move
    return field


def animate_frame(portrait: np.ndarray, lm: np.ndarray, opening: float, closure: float, t: float) -> np.ndarray:
    face_h = lm[8, 1] - lm[27, 1]  # nose bridge to chin
    jaw = opening * JAW_OPENING * face_h
    moves = np.zeros_like(lm)
    moves[5:12, 1] = jaw * np.array([0.3, 0.6, 0.85, 1.0, 0.85, 0.6, 0.3])  # jaw line
    moves[[55, 56, 57, 58, 59, 64, 65, 66, 67], 1] = jaw  # lower lip
    moves[[49, 50, 51, 52, 53, 61, 62, 63], 1] = -0.12 * jaw  # upper lip
    eye_h = np.mean(lm[[40, 41, 46, 47], 1] - lm[[38, 37, 44, 43], 1])
    moves[[37, 38, 43, 44], 1] = closure * 0.9 * eye_h  # upper eyelids
    field = displacement_field(lm, moves, sigma=0.09 * face_h)

    # Slow head sway: a small rotation and translation about the face centre.
    angle = np.deg2rad(1.5 * np.sin(2 * np.pi * 0.35 * t))
    shift = np.array([3.0 * np.sin(2 * np.pi * 0.23 * t), 2.0 * np.sin(2 * np.pi * 0.31 * t)])
    cx, cy = lm[30]
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    # Backward map: output pixel -> source pixel (inverse sway, then inverse warp).
    dx, dy = xs - cx - shift[0], ys - cy - shift[1]
    sx = np.cos(angle) * dx + np.sin(angle) * dy + cx
    sy = -np.sin(angle) * dx + np.cos(angle) * dy + cy
    sx -= ndimage.map_coordinates(field[..., 0], [sy, sx], order=1, mode="nearest")
    sy -= ndimage.map_coordinates(field[..., 1], [sy, sx], order=1, mode="nearest")
    out = np.stack(
        [ndimage.map_coordinates(portrait[..., c], [sy, sx], order=1, mode="reflect") for c in range(3)], axis=-1
    )
    return out.astype(np.uint8)


def darken_mouth(frame: np.ndarray, lm: np.ndarray, opening: float) -> np.ndarray:
    """Shade the gap between the lips, so an open mouth looks open rather than stretched."""
    if opening < 0.05:
        return frame
    from skimage.draw import polygon

    jaw = opening * JAW_OPENING * (lm[8, 1] - lm[27, 1])
    inner = lm[60:68].copy()
    inner[[5, 6, 7], 1] += jaw  # the lower inner lip moved with the jaw
    inner[[1, 2, 3], 1] -= 0.12 * jaw  # the upper inner lip lifted a little
    mask = np.zeros(frame.shape[:2], dtype=np.float32)
    rr, cc = polygon(inner[:, 1], inner[:, 0], frame.shape[:2])
    mask[rr, cc] = 1.0
    mask = ndimage.gaussian_filter(mask, 2.5)
    shade = 1.0 - 0.45 * min(opening, 1.0) * mask
    return (frame.astype(np.float32) * shade[..., None]).astype(np.uint8)


def make_clip(spec: SampleSpec, out_dir: Path, seed: int) -> dict:
    portrait = crop_face(load_portrait(spec.portrait))
    face = analyse_image(portrait, get_backend())
    if face.landmarks is None:
        raise RuntimeError(f"{spec.id}: no face in the cropped portrait")
    audio = synthesise(spec.text, spec.voice)
    duration = len(audio) / media.AUDIO_RATE
    n_frames = int(round(duration * FPS))
    audio = np.pad(audio, (0, max(0, n_frames * media.AUDIO_RATE // FPS - len(audio))))
    opening = speech_envelope(audio, n_frames)
    closure = blink_curve(n_frames, np.random.default_rng(seed))

    def frames():
        for i in range(n_frames):
            frame = animate_frame(portrait, face.landmarks, opening[i], closure[i], i / FPS)
            yield darken_mouth(frame, face.landmarks, opening[i])

    path = media.write_video(out_dir / f"{spec.id}.mp4", frames(), fps=FPS, audio=audio, crf=23)
    info = media.probe(path)
    return {
        "id": spec.id,
        "language": spec.language,
        "duration": round(info.duration, 3),
        "frames": info.frame_count,
        "file": path.name,
        "portrait": spec.portrait,
        "voice": f"espeak-ng {spec.voice}",
        "text": spec.text,
        "generator": "talkbench.samples.generate",
    }


def espeak_version() -> str:
    result = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args(argv)
    clips = []
    for i, spec in enumerate(SPECS):
        clips.append(make_clip(spec, args.out, seed=i))
        print(f"{spec.id}: {clips[-1]['duration']:.2f} s, {clips[-1]['frames']} frames")
    manifest = {"espeak_ng": espeak_version(), "fps": FPS, "size": SIZE, "clips": clips}
    (args.out / "samples.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
