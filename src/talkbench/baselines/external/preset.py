"""Presets: one YAML data file per competitor method, validated with pydantic.

A preset says where a method's code lives (repository, pinned commit, the files it was read
from), how to set it up, which inputs it wants in which form (portrait size and crop, audio
sample rate, a driving video or its frames, control signals), the commands that run it, and
where its output appears. Commands are argument lists, never shell strings; ``{name}``
placeholders are filled per clip (see ``PLACEHOLDERS``); ``{{`` and ``}}`` are literal braces.

A method whose code is not public gets a preset too (``code.public: false``), so the lists
can say so and still link the paper and any released videos.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from talkbench.baselines.method import MethodInfo
from talkbench.errors import TalkbenchError
from talkbench.util import Registry

# Everything a command, a staged path, a written file or an output pattern may refer to.
PLACEHOLDERS: dict[str, str] = {
    "python": "the method's own Python interpreter (--python; default: python3 on PATH)",
    "repo": "the method's checkout (--repo), absolute",
    "work_dir": "a fresh per-clip scratch directory, absolute",
    "output_dir": "a fresh, empty per-clip directory the method should write into",
    "clip_id": "the benchmark clip id (file stems use it)",
    "portrait": "the portrait image, written as inputs.portrait asks",
    "audio": "the clip's speech, written as inputs.audio asks",
    "driving_video": "the driving video (the reference), as inputs.driving_video asks",
    "driving_frames": "a directory of the driving video's frames, as inputs.driving_frames asks",
    "controls": "the clip's control-signal file (head pose ...), when the task provides one",
    "fps": "the protocol frame rate (25)",
    "emotion": "the clip's emotion label, MEAD's names (angry … surprised), on emotional benchmarks only",
    "frames": "the number of frames the output must have",
}

SUBSTITUTE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
TaskKind = Literal["speech-driven", "reconstruction"]
Status = Literal["runnable", "import-only", "reported-only"]
STATUS_LABEL = {"runnable": "runnable preset", "import-only": "import only", "reported-only": "reported only"}


class PresetError(TalkbenchError):
    """A preset file that is missing, malformed, or refers to unknown placeholders."""


def placeholders_in(text: str) -> set[str]:
    return set(SUBSTITUTE.findall(text.replace("{{", "").replace("}}", "")))


def render(text: str, values: dict[str, str]) -> str:
    """Fill ``{name}`` placeholders; a name without a value is an error, never left in."""
    missing = sorted(placeholders_in(text) - set(values))
    if missing:
        raise PresetError(f"no value for placeholder(s) {', '.join('{%s}' % m for m in missing)} in {text!r}")
    protected = text.replace("{{", "\x00").replace("}}", "\x01")
    filled = SUBSTITUTE.sub(lambda m: str(values[m.group(1)]), protected)
    return filled.replace("\x00", "{").replace("\x01", "}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceFile(_Strict):
    """A file of the method's repository that this preset was taken from."""

    path: str = Field(min_length=1)
    commit: str = Field(pattern=r"^[0-9a-f]{40}$")
    used_for: str = ""


class Code(_Strict):
    public: bool
    repository: str | None = None  # owner/name on GitHub
    url: str | None = None
    commit: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}$")  # the pinned checkout
    official: bool = True  # False: a third-party re-implementation
    licence: str = "unknown"
    licence_source: str = "not checked"  # where the licence statement was read
    sources: list[SourceFile] = Field(default_factory=list)
    note: str = ""

    @model_validator(mode="after")
    def _public_needs_source(self):
        if self.public and not (self.repository and self.commit and self.sources):
            raise ValueError("public code needs repository, commit and at least one cited source file")
        return self


class Paper(_Strict):
    title: str
    authors: list[str] = Field(default_factory=list)
    venue: str = ""
    year: int | None = Field(default=None, ge=1990, le=2100)
    url: str | None = None


class PortraitInput(_Strict):
    size: int | None = Field(default=256, ge=16)  # None: the reference's own size
    crop: Literal["none", "center-square"] = "none"
    format: Literal["png", "jpg"] = "png"
    name: str = "{clip_id}"  # file stem


class AudioInput(_Strict):
    sample_rate: int = Field(default=16_000, ge=8_000)
    format: Literal["wav"] = "wav"
    name: str = "{clip_id}"


class VideoInput(_Strict):
    size: int | None = Field(default=256, ge=16)
    fps: float = Field(default=25.0, gt=0)
    with_audio: bool = True
    name: str = "{clip_id}"


class FramesInput(_Strict):
    size: int | None = Field(default=256, ge=16)
    fps: float = Field(default=25.0, gt=0)
    pattern: str = "%06d.jpg"
    start: int = 0


class ControlsInput(_Strict):
    required: bool = False
    description: str = ""  # what the file must contain, e.g. "(T, 7) pose from 3DDFA_V2"
    suffix: str = ".npy"


class Inputs(_Strict):
    portrait: PortraitInput | None = None
    audio: AudioInput | None = None
    driving_video: VideoInput | None = None
    driving_frames: FramesInput | None = None
    controls: ControlsInput | None = None


class Stage(_Strict):
    """Copy an input to a fixed place the method's scripts read from (removed after the run)."""

    input: Literal["portrait", "audio", "driving_video", "controls"]
    to: str  # template, relative to {repo} unless absolute


class WriteFile(_Strict):
    """A small text file (a config the method reads), rendered per clip."""

    path: str
    text: str


class Step(_Strict):
    run: list[str] = Field(min_length=1)
    cwd: str = "{repo}"
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0)  # defaults to the preset's timeout


class Panel(_Strict):
    """The output is a side-by-side grid; the generated video is one panel of it."""

    cols: int = Field(ge=1)
    rows: int = Field(default=1, ge=1)
    index: int = Field(ge=0)  # row-major

    @model_validator(mode="after")
    def _in_grid(self):
        if self.index >= self.cols * self.rows:
            raise ValueError(f"panel index {self.index} is outside a {self.cols}x{self.rows} grid")
        return self


class Output(_Strict):
    dir: str = "{output_dir}"
    glob: str = "*.mp4"  # relative to dir; ** allowed
    exclude: list[str] = Field(default_factory=list)  # fnmatch patterns on the file name
    pick: Literal["newest", "only"] = "newest"
    panel: Panel | None = None
    native_fps: float | None = None  # what the method writes (informational; we resample)
    native_size: int | None = None
    has_audio: bool | None = None


class Preset(_Strict):
    name: str = Field(min_length=1, max_length=80)
    aliases: list[str] = Field(default_factory=list)  # spellings in the papers' tables
    paper: Paper
    tasks: list[TaskKind] = Field(min_length=1)
    tables: list[str] = Field(default_factory=list)  # "vqtalker:2", "flowvqtalker:1", ...
    code: Code
    released_outputs: list[str] = Field(default_factory=list)  # pages with the authors' videos
    setup: list[str] = Field(default_factory=list)  # shell lines from the README, for humans
    weights: list[str] = Field(default_factory=list)  # what to download, from the README
    requires_gpu: bool = True
    resolution: int | None = None  # the method's native output side
    bitrate_kbps: float | None = Field(default=None, ge=0)  # motion representation, VQTalker Table 7
    inputs: Inputs = Field(default_factory=Inputs)
    files: list[WriteFile] = Field(default_factory=list)
    stage: list[Stage] = Field(default_factory=list)
    cleanup: list[str] = Field(default_factory=list)  # files/dirs inside {repo} the scripts leave behind
    steps: list[Step] = Field(default_factory=list)
    output: Output | None = None
    timeout_s: float = Field(default=3600.0, gt=0)
    uses_ground_truth_controls: bool = False
    notes: str = ""

    @field_validator("tables")
    @classmethod
    def _table_keys(cls, v):
        for key in v:
            if not re.fullmatch(r"(vqtalker|flowvqtalker):\d+", key):
                raise ValueError(f"table key {key!r} must look like 'vqtalker:2'")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.steps and not self.code.public:
            raise ValueError("a method without public code cannot have run steps")
        if self.steps and self.output is None:
            raise ValueError("run steps need an output section (where the video appears)")
        for text in self.templates():
            unknown = placeholders_in(text) - set(PLACEHOLDERS)
            if unknown:
                raise ValueError(f"unknown placeholder(s) {sorted(unknown)} in {text!r}; "
                                 f"known: {', '.join(PLACEHOLDERS)}")
        used = set().union(*(placeholders_in(t) for t in self.templates())) if self.templates() else set()
        for name in ("portrait", "audio", "driving_video", "driving_frames", "controls"):
            staged = any(s.input == name for s in self.stage)
            if (name in used or staged) and getattr(self.inputs, name) is None:
                raise ValueError(f"{{{name}}} is used but inputs.{name} does not say its format")
        if "reconstruction" in self.tasks and self.steps and not (
                {"driving_video", "driving_frames"} & used or any(s.input == "driving_video" for s in self.stage)):
            raise ValueError("a reconstruction method must read the driving video or its frames")
        return self

    def templates(self) -> list[str]:
        """Every string that gets placeholders filled."""
        out: list[str] = []
        for step in self.steps:
            out += step.run + [step.cwd] + list(step.env.values())
        for f in self.files:
            out += [f.path, f.text]
        for s in self.stage:
            out.append(s.to)
        out += self.cleanup
        for spec in (self.inputs.portrait, self.inputs.audio, self.inputs.driving_video):
            if spec is not None:
                out.append(spec.name)
        if self.output is not None:
            out += [self.output.dir, self.output.glob]
        return out

    @property
    def status(self) -> Status:
        if self.code.public and self.steps:
            return "runnable"
        if self.released_outputs:
            return "import-only"
        return "reported-only"

    @property
    def status_label(self) -> str:
        return STATUS_LABEL[self.status]

    def method_info(self) -> MethodInfo:
        links = [u for u in (self.code.url, self.paper.url) if u] + list(self.released_outputs)
        return MethodInfo(
            name=self.name,
            kind="external",
            description=f"{self.paper.title} ({self.status_label}; preset talkbench.baselines.external)",
            paper=f"{self.paper.title}, {self.paper.venue}".strip(", "),
            year=self.paper.year,
            authors=list(self.paper.authors),
            links=links,
            licence=self.code.licence if self.code.public else None,
            resolution=self.resolution,
            bitrate_kbps=self.bitrate_kbps,
            tasks=list(self.tasks),
            uses_ground_truth_controls=self.uses_ground_truth_controls,
        )


def presets_dir() -> Path:
    return Path(str(resources.files("talkbench.baselines.external") / "presets"))


def load_preset_file(path: str | Path) -> Preset:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PresetError(f"{path}: preset file not found") from None
    except yaml.YAMLError as exc:
        raise PresetError(f"{path}: not valid YAML ({exc})") from None
    try:
        return Preset.model_validate(data)
    except ValidationError as exc:
        raise PresetError(f"{path}: not a valid preset:\n{exc}") from None


@lru_cache(maxsize=1)
def _all() -> tuple[Preset, ...]:
    return tuple(load_preset_file(p) for p in sorted(presets_dir().glob("*.yaml")))


@lru_cache(maxsize=1)
def _by_name() -> Registry[Preset]:
    """Every shipped preset under its name and each alias, lower-cased."""
    names: Registry[Preset] = Registry(kind="preset name or alias", error=PresetError)
    for p in _all():
        for key in dict.fromkeys(k.lower() for k in (p.name, *p.aliases)):
            if key in names:
                raise PresetError(f"preset name or alias {key!r} is used by both {names.get(key).name} and {p.name}")
            names.register(key, p)
    return names


def all_presets() -> list[Preset]:
    """Every shipped preset, sorted by file name."""
    _by_name()  # a name or alias two presets share is an error whichever function is called first
    return list(_all())


def get_preset(name: str) -> Preset:
    """A preset by name or alias (case-insensitive), or by path to a YAML file."""
    if name.endswith((".yaml", ".yml")) and Path(name).exists():
        return load_preset_file(name)
    if name.lower() not in _by_name():
        raise PresetError(f"no preset named {name!r}; known: {', '.join(p.name for p in _all())}")
    return _by_name().get(name.lower())
