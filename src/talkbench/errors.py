"""Error types that every layer raises, so callers (and the CLI) can report them uniformly."""

from __future__ import annotations

from pathlib import Path


class TalkbenchError(Exception):
    """Base class: something the user can act on, with a message that says what and where."""


class FileProblem(TalkbenchError):
    """A problem with one file: the message names the file, then the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class MediaError(FileProblem):
    """A file that cannot be used as media: missing, empty, truncated, not media, no stream."""


class FaceModelError(TalkbenchError):
    """A face-analysis model file that cannot be found or loaded."""


class WeightsError(TalkbenchError):
    """A network weight file that is missing, unknown, or fails its sha256 check."""


class MetricError(TalkbenchError):
    """Inputs a metric cannot compare (frame counts that differ, empty clips, …)."""
