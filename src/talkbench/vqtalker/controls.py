"""Per-frame control signals of the VQTalker generator: head pose h, gaze g and eye blink b.

All three come from the dlib 68-point landmarks (``talkbench.face``) of the main face in each
25 fps frame; a frame without a face takes the nearest detected frame's values.

* **Head pose** ``h = (yaw, pitch, roll)`` in degrees: ``cv2.solvePnP`` of six landmarks (nose
  tip 30, chin 8, outer eye corners 36 / 45, mouth corners 48 / 54) against the generic 3-D
  head template of Mallick's "Head Pose Estimation using OpenCV and Dlib" (LearnOpenCV, 2016),
  expressed in camera axes (x right, y down, z away from the camera) so a frontal face has
  R = I. Camera: pinhole, focal length = image width, principal point = image centre, no
  distortion. The paper used 3DDFA_V2, which needs downloaded weights; this is the offline
  substitute and its angles are coarser (a few degrees).
* **Gaze** ``g = (horizontal, vertical)``: the iris centre in eye coordinates, averaged over
  both eyes. Inside each eye's landmark polygon the darkest pixels (the iris and pupil; below
  the ``IRIS_PERCENTILE``-th percentile of grey level) give a darkness-weighted centroid,
  expressed along the eye-corner axis (-1 = outer/left corner side, +1 = right, 0 = centred)
  and across it (in units of half the eye width; positive = down). This is the classic
  landmark + threshold method of e.g. the GazeTracking project (A. Lame); the paper used an
  MPIIGaze network, and mediapipe's FaceMesh iris model (0.10.21) cannot run here because it
  needs protobuf < 5 while the environment has protobuf 7. Frames with closed eyes carry the
  nearest open frame's gaze.
* **Blink** ``b = (right eye, left eye)`` openness: eye height over eye width
  ((|p1 - p5| + |p2 - p4|) / 2) / |p0 - p3| on the six eye landmarks (the eye aspect ratio of
  Soukupová & Čech 2016; ~0.25-0.35 open, < 0.15 closed). The paper states the width-to-height
  ratio; we store its reciprocal, which is bounded when the eye closes (the paper's ratio
  diverges there). Either carries the same information.

Without any face, controls are neutral (pose 0, gaze 0, openness 0.3).
``clip_controls(path)`` computes them once per clip and caches them (``.npz`` keyed by the
file's path, size and mtime) in the VQTalker cache directory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.draw import polygon

from talkbench import media, util
from talkbench.face import analyse_image, get_backend
from talkbench.face.types import LEFT_EYE, RIGHT_EYE
from talkbench.vqtalker.cache import clip_cache_dir

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CONTROL_DIM = 7  # 3 pose + 2 gaze + 2 blink

# Generic head model (LearnOpenCV), model units ~ 0.1 mm, model axes x right, y up, z toward
# the camera; converted below to camera axes (y down, z away).
_TEMPLATE_MODEL = np.array(
    [
        (0.0, 0.0, 0.0),  # 30 nose tip
        (0.0, -330.0, -65.0),  # 8 chin
        (-225.0, 170.0, -135.0),  # 36 outer corner of the eye on the image left
        (225.0, 170.0, -135.0),  # 45 outer corner of the eye on the image right
        (-150.0, -150.0, -125.0),  # 48 mouth corner, image left
        (150.0, -150.0, -125.0),  # 54 mouth corner, image right
    ],
    dtype=np.float64,
)
POSE_LANDMARKS = (30, 8, 36, 45, 48, 54)
TEMPLATE_3D = _TEMPLATE_MODEL * np.array([1.0, -1.0, -1.0])  # camera axes: a rotation (det +1)

IRIS_PERCENTILE = 35.0  # share of the eye polygon's pixels taken as iris/pupil
CLOSED_EYE_RATIO = 0.12  # openness below this: gaze is not measured in that eye
OPEN_EYE_RATIO = 0.3  # openness used when no face is found at all (a neutral open eye)


@dataclass
class Controls:
    """Per-frame controls of one clip at ``fps``."""

    pose: np.ndarray  # (T, 3) yaw, pitch, roll in degrees
    gaze: np.ndarray  # (T, 2) horizontal, vertical iris offset
    blink: np.ndarray  # (T, 2) openness (height / width) of the subject's right, left eye
    found: np.ndarray  # (T,) bool: a face was detected in that frame
    fps: float = media.DEFAULT_FPS

    def __len__(self) -> int:
        return len(self.pose)

    def stacked(self) -> np.ndarray:
        """(T, 7) float32: pose, gaze, blink — the generator's per-frame control vector."""
        return np.concatenate([self.pose, self.gaze, self.blink], axis=1).astype(np.float32)

    def resized(self, frames: int) -> "Controls":
        """Truncated, or extended by repeating the last frame, to ``frames`` frames."""
        idx = np.minimum(np.arange(frames), len(self) - 1)
        return Controls(self.pose[idx], self.gaze[idx], self.blink[idx], self.found[idx], self.fps)

    @classmethod
    def constant(cls, values: "Controls", frames: int) -> "Controls":
        """The first frame of ``values`` held for ``frames`` frames (a still portrait)."""
        return values.resized(1).resized(frames)

    def save(self, target: str | Path) -> None:
        """An ``.npz`` of pose, gaze, blink, found and fps, written atomically."""
        util.save_arrays(target, {"pose": self.pose, "gaze": self.gaze, "blink": self.blink, "found": self.found,
                                  "fps": np.asarray(self.fps)})

    @classmethod
    def load(cls, path: str | Path) -> "Controls | None":
        """What ``save`` wrote; None when the file is missing or unreadable (recompute it)."""
        data = util.load_arrays(path)
        if data is None or not {"pose", "gaze", "blink", "found", "fps"} <= data.keys():
            return None
        return cls(data["pose"], data["gaze"], data["blink"], data["found"], float(data["fps"]))


# ----------------------------------------------------------------------------- per frame


def head_pose(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(yaw, pitch, roll) in degrees of one face from its (68, 2) landmarks."""
    import cv2

    image_points = landmarks[list(POSE_LANDMARKS)].astype(np.float64)
    focal = float(width)
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)
    # Start the iterative solver in front of the camera at the face's distance: a frontal
    # template whose eye corners span the detected ones.
    eye_span = max(float(np.linalg.norm(image_points[3] - image_points[2])), 1.0)
    z0 = focal * 450.0 / eye_span
    rvec0 = np.zeros((3, 1))
    tvec0 = np.array([[(image_points[0, 0] - width / 2) * z0 / focal], [(image_points[0, 1] - height / 2) * z0 / focal], [z0]])
    ok, rvec, _ = cv2.solvePnP(TEMPLATE_3D, image_points, camera, None, rvec0, tvec0, True, cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return np.full(3, np.nan)
    rot, _ = cv2.Rodrigues(rvec)
    return rotation_to_euler(rot)


def rotation_to_euler(rot: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) degrees of R = Rz(roll) @ Ry(yaw) @ Rx(pitch) (camera axes: yaw about
    y (down), pitch about x (right), roll about z (into the image))."""
    yaw = np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0))
    pitch = np.arctan2(rot[2, 1], rot[2, 2])
    roll = np.arctan2(rot[1, 0], rot[0, 0])
    return np.degrees(np.array([yaw, pitch, roll]))


def eye_openness(eye: np.ndarray) -> float:
    """Height over width of one eye from its six landmarks (p0 and p3 are the corners)."""
    width = np.linalg.norm(eye[0] - eye[3])
    height = (np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])) / 2
    return float(height / max(width, 1e-6))


def iris_offset(gray: np.ndarray, eye: np.ndarray) -> np.ndarray:
    """(along, across) position of the iris centre in one eye; NaN when it cannot be measured.

    ``along`` is -1 at the image-left corner and +1 at the image-right corner; ``across`` is the
    perpendicular offset from the corner axis in units of half the eye width, positive down.
    """
    h, w = gray.shape
    rr, cc = polygon(eye[:, 1], eye[:, 0], shape=(h, w))
    if len(rr) < 12:
        return np.full(2, np.nan)
    values = gray[rr, cc].astype(np.float64)
    threshold = np.percentile(values, IRIS_PERCENTILE)
    weight = np.clip(threshold - values, 0, None) + 1e-3 * (values <= threshold)
    if weight.sum() <= 0:
        return np.full(2, np.nan)
    centre = np.array([(cc * weight).sum(), (rr * weight).sum()]) / weight.sum()
    left, right = (eye[0], eye[3]) if eye[0, 0] <= eye[3, 0] else (eye[3], eye[0])
    axis = right - left
    half = np.linalg.norm(axis) / 2
    if half < 1e-6:
        return np.full(2, np.nan)
    unit = axis / (2 * half)
    normal = np.array([-unit[1], unit[0]])  # image y down: points down for a level eye
    rel = centre - (left + right) / 2
    return np.array([rel @ unit / half, rel @ normal / half])


def frame_controls(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pose (3,), gaze (2,) and blink (2,) of one frame's face."""
    h, w = image.shape[:2]
    pose = head_pose(landmarks, w, h)
    gray = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    blink, gazes = [], []
    for sl in (RIGHT_EYE, LEFT_EYE):
        eye = landmarks[sl].astype(np.float64)
        openness = eye_openness(eye)
        blink.append(openness)
        gazes.append(iris_offset(gray, eye) if openness >= CLOSED_EYE_RATIO else np.full(2, np.nan))
    gazes = np.array(gazes)
    gaze = np.nanmean(gazes, axis=0) if np.isfinite(gazes).any() else np.full(2, np.nan)
    return pose, gaze, np.array(blink)


def _fill_nearest(values: np.ndarray, neutral: float = 0.0) -> np.ndarray:
    """Replace NaN rows by the nearest finite row (``neutral`` everywhere when there is none)."""
    ok = np.isfinite(values).all(axis=1)
    if ok.all():
        return values
    if not ok.any():
        return np.full_like(values, neutral)
    good = np.flatnonzero(ok)
    idx = np.arange(len(values))
    pos = np.clip(np.searchsorted(good, idx), 1, len(good) - 1) if len(good) > 1 else np.zeros_like(idx)
    if len(good) > 1:
        before, after = good[pos - 1], good[pos]
        nearest = np.where(np.abs(idx - before) <= np.abs(after - idx), before, after)
    else:
        nearest = np.full_like(idx, good[0])
    out = values.copy()
    out[~ok] = values[nearest[~ok]]
    return out


def frames_controls(frames, backend=None, fps: float = media.DEFAULT_FPS) -> Controls:
    """Controls of an iterable of uint8 RGB frames."""
    backend = backend or get_backend("dlib")
    poses, gazes, blinks, found = [], [], [], []
    for frame in frames:
        face = analyse_image(frame, backend, landmarks=True)
        if face.found:
            p, g, b = frame_controls(frame, face.landmarks)
        else:
            p, g, b = np.full(3, np.nan), np.full(2, np.nan), np.full(2, np.nan)
        poses.append(p)
        gazes.append(g)
        blinks.append(b)
        found.append(face.found)
    if not found:
        raise ValueError("no frames")
    return Controls(
        _fill_nearest(np.array(poses)).astype(np.float32),
        _fill_nearest(np.array(gazes)).astype(np.float32),
        _fill_nearest(np.array(blinks), OPEN_EYE_RATIO).astype(np.float32),
        np.array(found),
        fps,
    )


def image_controls(image: np.ndarray, frames: int = 1) -> Controls:
    """Controls of a still portrait, held for ``frames`` frames."""
    return Controls.constant(frames_controls([image]), frames)


# ----------------------------------------------------------------------------- per clip, cached


def cache_file(path: str | Path, fps: float, cache_dir: str | Path | None = None) -> Path:
    """Where ``clip_controls`` keeps a clip's controls at ``fps``."""
    return clip_cache_dir(path, cache_dir) / f"controls_v{CACHE_VERSION}_{fps:g}fps.npz"


def clip_controls(path: str | Path, fps: float = media.DEFAULT_FPS, cache_dir: Path | None = None,
                  refresh: bool = False) -> Controls:
    """Controls of every frame of a video at ``fps``, computed once and cached."""
    path = Path(path)
    target = cache_file(path, fps, cache_dir)
    cached = Controls.load(target) if target.is_file() and not refresh else None
    if cached is not None:
        return cached
    controls = frames_controls(media.iter_frames(path, fps=fps), fps=fps)
    if not controls.found.any():
        log.warning("%s: no face found in any frame; controls are zeros", path)
    controls.save(target)
    return controls
