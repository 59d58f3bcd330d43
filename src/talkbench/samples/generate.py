"""Generate the sample corpus: ``python -m talkbench.samples.generate --speech DIR [--out DIR]``.

Each clip is a real face photo that ships with a dependency (scikit-image's astronaut, Eileen
Collins; matplotlib's Grace Hopper), animated by landmark-driven warping: the jaw and lower lip
open with the speech envelope, the upper lip lifts a little, the eyes blink every couple of
seconds and the head sways slowly.

The speech is real: a short excerpt of a recording published under a permissive licence (MIT or
Apache-2.0), read from ``DIR`` (the ``speech/`` folder of talkbench's shared real media, whose
``catalog.csv`` records each file's source). Turkish is the exception: no permissively licensed
Turkish recording was available, so that clip's speech is synthesised by espeak-ng (which Whisper
recognises as Turkish). ``samples.json`` records every clip's source, licence and excerpt.
Output: 512x512, 25 fps, 16 kHz mono AAC.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image
from scipy import ndimage
from skimage.draw import polygon

from talkbench import media
from talkbench.face import analyse_image, get_backend

FPS = 25
SIZE = 512
FACE_SCALE = 1.8  # crop side = face-box side x this, before resizing to 512
JAW_OPENING = 0.11  # chin drop at full loudness, as a share of the nose-bridge-to-chin height
MAX_SECONDS = 5.0  # an excerpt ends at the quietest 20 ms between MIN_SECONDS and this
MIN_SECONDS = 3.8
FADE_SECONDS = 0.02


@dataclass(frozen=True)
class RecordedSpeech:
    """An excerpt of a real recording: ``path`` under the speech folder, from ``start`` seconds."""

    path: str
    start: float
    licence: str
    source: str  # repository/path@commit, as the shared data's catalog.csv gives it
    speaker: str


@dataclass(frozen=True)
class SynthesisedSpeech:
    """espeak-ng speech, for a language without a permissively licensed recording."""

    voice: str
    text: str


@dataclass(frozen=True)
class SampleSpec:
    id: str
    language: str  # ISO 639-1
    portrait: str
    speech: RecordedSpeech | SynthesisedSpeech


SPECS = [
    SampleSpec("ar_001", "ar", "astronaut", RecordedSpeech(
        "ar/IRQ.wav", 0.0, "MIT",
        "Hashad1/Habibi-TTS src/habibi_tts/assets/IRQ.wav@b2c92b880ac11603f09e13475c1cc1612dd1dd3b",
        "Iraqi Arabic speaker of the Habibi benchmark")),
    SampleSpec("sw_001", "sw", "grace_hopper", RecordedSpeech(
        "sw/200701-101457_swh_35d_elicit_1.wav", 2.0, "MIT",
        "CateGitau/Swahili-Speech data/records/test/200701-101457_swh_35d_elicit_1.wav"
        "@3f51a8d096f68e3df8ad80a8145cca6f41e21800",
        "Swahili read speech (VOA text)")),
    SampleSpec("zh_001", "zh", "astronaut", RecordedSpeech(
        "zh/BAC009S0764W0121.wav", 0.0, "Apache-2.0",
        "xingchensong/S3Tokenizer s3tokenizer/assets/BAC009S0764W0121.wav@2abe1c503b863ec8c6ee7e98f86e25cd01f5f587",
        "Mandarin read speech, AISHELL-1 utterance")),
    SampleSpec("ko_001", "ko", "grace_hopper", RecordedSpeech(
        "ko/ko.mp3", 0.0, "Apache-2.0",
        "DakeQQ/Automatic-Speech-Recognition-ASR-ONNX Test_Examples/ko/ko.mp3@4d85807c5349005ba04dd35c882c068f0ac3e40f",
        "Korean example utterance")),
    SampleSpec("ja_001", "ja", "astronaut", RecordedSpeech(
        "ja/ja.mp3", 0.0, "Apache-2.0",
        "DakeQQ/Automatic-Speech-Recognition-ASR-ONNX Test_Examples/ja/ja.mp3@4d85807c5349005ba04dd35c882c068f0ac3e40f",
        "Japanese example utterance")),
    SampleSpec("tr_001", "tr", "grace_hopper", SynthesisedSpeech("tr", "Merhaba, bugün Türkçe konuşuyoruz.")),
    SampleSpec("en_001", "en", "astronaut", RecordedSpeech(
        "en/jfk.flac", 0.0, "MIT",
        "openai/whisper tests/jfk.flac@c0d2f624c09dc18e709e37c2ad90c039a4eb72a2",
        "John F. Kennedy, inaugural address (1961)")),
    SampleSpec("de_001", "de", "grace_hopper", RecordedSpeech(
        "de/deyu.wav", 0.0, "Apache-2.0",
        "OpenTalker/SadTalker examples/driven_audio/deyu.wav@cd4c0465ae0b54a6f85af57f5c65fec9fe23e7f8",
        "German example utterance")),
]


def default_speech_dir() -> Path | None:
    shared = os.environ.get("TALKBENCH_SHARED_DATA")
    return Path(shared) / "speech" if shared else None


def load_portrait(name: str) -> np.ndarray:
    if name == "astronaut":
        return skimage.data.astronaut()
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


def excerpt(audio: np.ndarray, start: float) -> np.ndarray:
    """From ``start``, up to the quietest 20 ms between MIN_SECONDS and MAX_SECONDS, so the cut
    falls in a pause rather than mid-word; short fades keep the edges click-free."""
    rate = media.AUDIO_RATE
    audio = audio[int(round(start * rate)) :]
    window = rate // 50
    lo, hi = int(MIN_SECONDS * rate) // window, int(MAX_SECONDS * rate) // window
    if len(audio) > hi * window:
        rms = np.sqrt(np.mean(audio[: hi * window].reshape(hi, window) ** 2, axis=1))
        audio = audio[: (lo + int(np.argmin(rms[lo:]))) * window + window // 2]
    fade = int(FADE_SECONDS * rate)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    audio = audio.copy()
    audio[:fade] *= ramp
    audio[-fade:] *= ramp[::-1]
    return audio


def load_speech(speech: RecordedSpeech | SynthesisedSpeech, speech_dir: Path | None) -> np.ndarray:
    if isinstance(speech, SynthesisedSpeech):
        return synthesise(speech.text, speech.voice)
    if speech_dir is None:
        raise RuntimeError("the recorded speech needs --speech DIR (or TALKBENCH_SHARED_DATA)")
    return excerpt(media.read_audio(speech_dir / speech.path), speech.start)


def speech_record(speech: RecordedSpeech | SynthesisedSpeech, seconds: float) -> dict:
    """What samples.json says about a clip's speech: where it came from and under what licence."""
    if isinstance(speech, SynthesisedSpeech):
        return {"kind": "synthesised", "voice": f"espeak-ng {speech.voice}", "text": speech.text,
                "licence": "generated by talkbench (espeak-ng output is not covered by its GPL)"}
    return {"kind": "recorded", "source": speech.source, "file": Path(speech.path).name,
            "excerpt": [speech.start, round(speech.start + seconds, 3)], "licence": speech.licence,
            "speaker": speech.speaker}


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


def make_clip(spec: SampleSpec, out_dir: Path, seed: int, speech_dir: Path | None = None) -> dict:
    portrait = crop_face(load_portrait(spec.portrait))
    face = analyse_image(portrait, get_backend())
    if face.landmarks is None:
        raise RuntimeError(f"{spec.id}: no face in the cropped portrait")
    audio = load_speech(spec.speech, speech_dir if speech_dir is not None else default_speech_dir())
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
        "speech": speech_record(spec.speech, len(audio) / media.AUDIO_RATE),
        "generator": "talkbench.samples.generate",
    }


def espeak_version() -> str:
    """'eSpeak NG text-to-speech: 1.51', without the machine's data path that follows it."""
    result = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True)
    return result.stdout.split("Data at:")[0].strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech", type=Path, default=default_speech_dir(),
                        help="the shared real media's speech/ folder (default: $TALKBENCH_SHARED_DATA/speech)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args(argv)
    clips = []
    for i, spec in enumerate(SPECS):
        clips.append(make_clip(spec, args.out, seed=i, speech_dir=args.speech))
        print(f"{spec.id}: {clips[-1]['duration']:.2f} s, {clips[-1]['frames']} frames")
    manifest = {"espeak_ng": espeak_version(), "fps": FPS, "size": SIZE, "clips": clips}
    (args.out / "samples.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
