"""The method protocol: typed metadata (``MethodInfo``) plus ``generate(task, out) -> video``.

A **task** is one clip of a benchmark seen from the method's side:

- ``speech-driven``: the inputs are the first frame of the reference (the portrait) and the
  clip's audio; a method that takes control signals (pose, blinks) may read them from the
  ground truth (``task.reference``), and says so in ``MethodInfo.uses_ground_truth_controls``.
- ``reconstruction``: the first frame plus the driving video (the reference itself).

The output must have the reference's frame count (±2) at ``task.fps``, square, ≥ 256 px.
The methods by name are in ``talkbench.baselines.registry``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from talkbench import media
from talkbench.errors import TalkbenchError

TASKS = ("speech-driven", "reconstruction")
TaskKind = Literal["speech-driven", "reconstruction"]


class MethodError(TalkbenchError):
    """A method that cannot be registered, found or run."""


class MethodInfo(BaseModel):
    """What the leaderboard knows about a method (MTEB-style typed metadata)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=80)
    kind: Literal["builtin", "external", "reported", "submission"]
    description: str = ""
    paper: str | None = None
    year: int | None = Field(default=None, ge=1990, le=2100)
    authors: list[str] = Field(default_factory=list)
    links: list[str] = Field(default_factory=list)  # code, project page, weights
    licence: str | None = None
    contact: str | None = None
    resolution: int | None = Field(default=None, ge=1)  # output side in pixels
    bitrate_kbps: float | None = Field(default=None, ge=0)  # motion representation, Table 7 style
    tasks: list[TaskKind] = Field(default_factory=lambda: list(TASKS))
    uses_ground_truth_controls: bool = False


@dataclass(frozen=True)
class Task:
    """One clip to generate. ``reference`` is the ground-truth video (also the audio source and,
    for reconstruction, the driving video)."""

    kind: str
    clip_id: str
    reference: Path
    language: str = ""
    fps: float = media.DEFAULT_FPS
    frames: int = 0  # the reference's frame count at ``fps``
    emotion: str | None = None  # the emotion to express (MEAD's names), for methods that take one
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in TASKS:
            raise MethodError(f"unknown task kind {self.kind!r}; expected one of {TASKS}")

    def portrait(self) -> np.ndarray:
        """The first frame of the reference, uint8 RGB (H, W, 3)."""
        for frame in media.iter_frames(self.reference, fps=self.fps):
            return frame
        raise MethodError(f"{self.reference}: no frames")

    def audio(self) -> np.ndarray:
        """The clip's speech, float32 mono 16 kHz."""
        return media.read_audio(self.reference)

    def driving_video(self) -> Path:
        if self.kind != "reconstruction":
            raise MethodError(f"task {self.clip_id} is {self.kind}: there is no driving video")
        return self.reference


@runtime_checkable
class Method(Protocol):
    info: MethodInfo

    def generate(self, task: Task, out: Path) -> Path:
        """Write the generated video for ``task`` to ``out`` (an .mp4) and return its path."""
        ...
