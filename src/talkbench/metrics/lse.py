"""LSE-C and LSE-D, the lip-sync error metrics of Wav2Lip (Prajwal et al. 2020): SyncNet's
confidence and minimum mean embedding distance over ±15 frames of audio offset, computed as
syncnet_python does (``talkbench.metrics.syncnet`` has the definition and the network).
Higher LSE-C and lower LSE-D mean better sync.

A clip is scored like syncnet_python scores a video's face tracks, with the engine's face boxes
(``Batch.faces``) on the generated frames at the evaluation resolution instead of S3FD's:

- A frame without a face ends a run; each run of at least 7 consecutive frames with a face is
  one track, cropped, smoothed and scored on its own with the audio from its first frame on.
  The clip's values are the mean of the tracks' values weighted by their windows (one track,
  the usual case, is syncnet_python's number). Frames in shorter runs are not scored.
- Audio: ``ClipInfo.audio`` (the driving speech, else the file's own track) at 16 kHz mono,
  as ffmpeg's int16 ``pcm_s16le``. Audio shorter than the video limits the windows
  (``min_length`` of ``SyncNetInstance.evaluate``).
- SyncNet needs 25 fps (4 MFCC frames per video frame): at another evaluation fps the metric is
  unavailable rather than resampled.

Streaming: a frame is cropped once the 6 frames after it are seen (its smoothed box needs
them); the state keeps those frames, the last 4 crops (the next windows' first frames) and one
1024-d lip embedding per window — never the clip's crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkbench import media
from talkbench.errors import MediaError
from talkbench.metrics import syncnet
from talkbench.metrics.base import Batch, ClipInfo, Metric, MetricSpec, ModelSource, Need, Unavailable

VERSION = "1"


@dataclass
class FaceRun:
    """The run of consecutive frames with a face being read."""

    start: int  # clip index of its first frame
    centres: list[np.ndarray] = field(default_factory=list)  # unsmoothed (s, x, y) of each frame
    waiting: list[np.ndarray] = field(default_factory=list)  # frames not cropped yet
    tail: list[np.ndarray] = field(default_factory=list)  # the last WINDOW − 1 crops
    lip: list[np.ndarray] = field(default_factory=list)  # embeddings of its windows, in order


@dataclass
class Track:
    """A finished run: its frames and the lip embeddings of all its 5-frame windows."""

    start: int
    frames: int
    lip: np.ndarray  # (frames − 4, 1024) float32


@dataclass
class SyncState:
    audio: Path | None
    problem: str | None = None  # why the clip cannot be scored, known before any frame
    tracks: list[Track] = field(default_factory=list)
    run: FaceRun | None = None
    scores: list[syncnet.SyncScore] = field(default_factory=list)  # per track with audio, set by compute


class LSE(Metric):
    spec = MetricSpec(
        "lse", VERSION, "clip", ("lse_c", "lse_d"), True, frozenset({Need.FACES, Need.AUDIO}), (syncnet.WEIGHTS,),
        description="SyncNet confidence (LSE-C, higher better) and min distance (LSE-D, lower better), syncnet_python",
        opposite=("lse_d",), modules=("cv2", "python_speech_features"),
    )  # fmt: skip

    def load(self, models: ModelSource) -> None:
        syncnet.require_dependencies()
        self.net = models.get("lse", syncnet.load_syncnet, self.weights())  # supplied as models["lse"]

    def new_state(self, clip: ClipInfo) -> SyncState:
        state = SyncState(clip.audio)
        if clip.audio is None:
            state.problem = "no audio to compare the lips with"
        elif abs(clip.fps - syncnet.FPS) > 1e-6:
            state.problem = f"SyncNet needs 25 fps video (4 MFCC frames per frame); the evaluation fps is {clip.fps:g}"
        return state

    def update(self, state: SyncState, batch: Batch) -> None:
        if state.problem:
            return
        centres = syncnet.box_centres(batch.faces.boxes)
        for i, has_face in enumerate(batch.faces.valid):
            if not has_face:
                self._finish_run(state)
                continue
            if state.run is None:
                state.run = FaceRun(batch.start + i)
            state.run.centres.append(centres[i])
            state.run.waiting.append(batch.generated[i].copy())  # not a view that keeps the batch alive
        if state.run is not None:
            self._crop_and_embed(state.run, last=len(state.run.centres) - syncnet.SMOOTHING_REACH)

    def compute(self, state: SyncState) -> dict[str, float]:
        if state.problem:
            raise Unavailable(state.problem)
        self._finish_run(state)
        if not state.tracks:
            raise Unavailable(f"no run of {syncnet.MIN_RUN_FRAMES} consecutive frames with a face "
                              "(SyncNet scores 5-frame windows of a face track)")
        try:
            audio = syncnet.to_int16(media.read_audio(state.audio, syncnet.AUDIO_RATE))
        except MediaError as exc:
            raise Unavailable(f"cannot read the audio: {exc}") from exc
        scores = state.scores = []
        for track in state.tracks:
            first, end = track.start * syncnet.SAMPLES_PER_FRAME, (track.start + track.frames) * syncnet.SAMPLES_PER_FRAME
            score = syncnet.score_track(self.net, track.lip, audio[first:end], track.frames)
            if score is not None:
                scores.append(score)
        if not scores:
            seconds = len(audio) / syncnet.AUDIO_RATE
            raise Unavailable(f"the audio ({seconds:.2f} s) ends before a 5-frame window of a face track")
        windows = np.array([s.windows for s in scores], dtype=np.float64)
        return {
            "lse_c": float(np.dot(windows, [s.confidence for s in scores]) / windows.sum()),
            "lse_d": float(np.dot(windows, [s.min_distance for s in scores]) / windows.sum()),
        }

    def _crop_and_embed(self, run: FaceRun, last: int) -> None:
        """Crop the run's frames before index ``last`` (their smoothing windows are complete)
        and embed every 5-frame window they complete."""
        centres = np.array(run.centres)
        first = len(centres) - len(run.waiting)
        if last <= first:
            return
        crops = [syncnet.crop_face(frame, syncnet.smoothed_centre(centres, first + j))
                 for j, frame in enumerate(run.waiting[: last - first])]  # fmt: skip
        del run.waiting[: last - first]
        frames = run.tail + crops
        if len(frames) >= syncnet.WINDOW:
            run.lip.append(syncnet.lip_embeddings(self.net, np.stack(frames)))
        run.tail = frames[-(syncnet.WINDOW - 1) :]

    def _finish_run(self, state: SyncState) -> None:
        run, state.run = state.run, None
        if run is None or len(run.centres) < syncnet.MIN_RUN_FRAMES:
            return
        self._crop_and_embed(run, last=len(run.centres))  # past its end the median filter pads zeros
        state.tracks.append(Track(run.start, len(run.centres), np.concatenate(run.lip)))
