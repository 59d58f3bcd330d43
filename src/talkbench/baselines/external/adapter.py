"""The generic external adapter: run a method from its own checkout and its own Python as a
subprocess, driven by a preset, and normalise what it writes onto the protocol.

Per clip: a fresh work directory gets the inputs in the forms the preset asks for (portrait
size/crop/format, audio sample rate, a re-encoded driving video or its frames, the control
file); config files are rendered; inputs some scripts only read from fixed places are staged
into the checkout (and removed afterwards); each step runs with a time-out in its own process
group; stdout and stderr go to ``<log_dir>/<clip_id>.log``. The newest file matching the
output pattern written during the run is then decoded, resampled to 25 fps, resized to the
protocol size, trimmed or padded to the clip's length and muxed with the clip's audio.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from talkbench import media
from talkbench.baselines.external.normalise import NormaliseReport, normalise_video
from talkbench.baselines.external.preset import Preset, PresetError, render
from talkbench.baselines.method import MethodError, Task

STDERR_TAIL_LINES = 15
KILL_GRACE_S = 5.0


class ExternalMethodError(MethodError):
    """An external method that failed, timed out, or wrote no usable video."""


@dataclass
class StepRecord:
    argv: list[str]
    cwd: str
    returncode: int | None
    seconds: float
    timed_out: bool = False


@dataclass
class RunRecord:
    method: str
    clip_id: str
    log: str
    steps: list[StepRecord] = field(default_factory=list)
    output: str | None = None
    normalised: NormaliseReport | None = None

    def to_dict(self) -> dict:
        return {
            "method": self.method, "clip_id": self.clip_id, "log": self.log,
            "steps": [s.__dict__ for s in self.steps], "output": self.output,
            "normalised": self.normalised.to_dict() if self.normalised else None,
        }


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    rows = [r for r in text.splitlines() if r.strip()]
    return "\n".join(rows[-lines:])


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """float32 mono in [-1, 1] → 16-bit PCM WAV (no codec involved)."""
    pcm = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    pcm = (pcm * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(int(sample_rate))
        fh.writeframes(pcm.tobytes())
    return path


def _still(frame: np.ndarray, size: int | None, crop: str):
    if crop == "center-square":
        h, w = frame.shape[:2]
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        frame = frame[y:y + s, x:x + s]
    image = Image.fromarray(frame)
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BOX)
    return image


def default_python(repo: Path) -> str:
    """The checkout's own venv if it has one, else ``python3`` on PATH."""
    for candidate in (repo / ".venv" / "bin" / "python", repo / "venv" / "bin" / "python"):
        if candidate.exists():
            return str(candidate)
    return shutil.which("python3") or "python3"


class ExternalMethod:
    """A ``Method`` (``info`` + ``generate(task, out)``) backed by a preset and a checkout."""

    def __init__(
        self,
        preset: Preset,
        repo: str | Path,
        python: str | None = None,
        log_dir: str | Path | None = None,
        size: int | None = None,
        timeout_s: float | None = None,
        controls_dir: str | Path | None = None,
        keep_work: bool = False,
    ):
        if preset.status != "runnable":
            raise ExternalMethodError(
                f"{preset.name} has no runnable preset ({preset.status_label}): "
                + ("its code is not public" if not preset.code.public else "no inference steps are known")
                + "; import its released videos with 'talkbench baselines import' instead")
        self.preset = preset
        self.repo = Path(repo).resolve()
        if not self.repo.is_dir():
            raise ExternalMethodError(
                f"{self.repo}: not a directory; clone {preset.code.url or preset.code.repository} at "
                f"{preset.code.commit} there (see 'talkbench baselines show {preset.name}')")
        self.python = python or default_python(self.repo)
        self.log_dir = Path(log_dir) if log_dir else None
        self.size = size
        self.timeout_s = timeout_s or preset.timeout_s
        self.controls_dir = Path(controls_dir) if controls_dir else None
        self.keep_work = keep_work
        self.info = preset.method_info()
        self.records: dict[str, RunRecord] = {}

    # -- inputs -------------------------------------------------------------------------------
    def _prepare(self, task: Task, work: Path, materialise: bool = True) -> dict[str, str]:
        """The placeholder values for ``task``; with ``materialise`` the inputs are also written."""
        p = self.preset
        frames = task.frames or media.frame_count_at(media.probe(task.reference), task.fps)
        out_dir = work / "output"
        if materialise:
            out_dir.mkdir(parents=True)
        values: dict[str, str] = {
            "python": self.python, "repo": str(self.repo), "work_dir": str(work),
            "output_dir": str(out_dir), "clip_id": task.clip_id, "fps": f"{task.fps:g}",
            "frames": str(frames),
        }
        if task.emotion is not None:
            values["emotion"] = task.emotion
        inputs = p.inputs

        def slot(folder: str, name: str, suffix: str) -> Path:
            if materialise:
                (work / folder).mkdir()
            return work / folder / f"{render(name, values)}.{suffix}"

        if inputs.portrait is not None:
            spec = inputs.portrait
            path = slot("portrait", spec.name, spec.format)
            values["portrait"] = str(path)
        if inputs.audio is not None:
            values["audio"] = str(slot("audio", inputs.audio.name, "wav"))
        if inputs.driving_video is not None:
            values["driving_video"] = str(slot("driving", inputs.driving_video.name, "mp4"))
        if inputs.driving_frames is not None:
            values["driving_frames"] = str(work / "driving_frames")
        if inputs.controls is not None:
            values["controls"] = self._controls(task, work, materialise)
        if not materialise:
            return values

        if inputs.portrait is not None:
            spec = inputs.portrait
            path = Path(values["portrait"])
            image = _still(task.portrait(), spec.size, spec.crop)
            if spec.format == "jpg":
                image.save(path, quality=95)
            else:
                image.save(path)
        if inputs.audio is not None:
            spec = inputs.audio
            write_wav(Path(values["audio"]), media.read_audio(task.reference, sample_rate=spec.sample_rate),
                      spec.sample_rate)
        if inputs.driving_video is not None:
            spec = inputs.driving_video
            audio = media.read_audio(task.reference) if spec.with_audio and media.probe(task.reference).has_audio else None
            media.write_video(values["driving_video"], media.iter_frames(task.reference, fps=spec.fps, size=spec.size),
                              fps=spec.fps, audio=audio)
        if inputs.driving_frames is not None:
            spec = inputs.driving_frames
            d = Path(values["driving_frames"])
            d.mkdir()
            for i, frame in enumerate(media.iter_frames(task.reference, fps=spec.fps, size=spec.size)):
                Image.fromarray(frame).save(d / (spec.pattern % (spec.start + i)), quality=95)
        return values

    def _controls(self, task: Task, work: Path, materialise: bool) -> str:
        spec = self.preset.inputs.controls
        assert spec is not None
        src = task.extra.get("controls")
        if src is None and self.controls_dir is not None:
            cand = self.controls_dir / f"{task.clip_id}{spec.suffix}"
            src = cand if cand.exists() else None
        if src is None:
            if spec.required:
                raise ExternalMethodError(
                    f"{self.preset.name} needs control signals for clip {task.clip_id}: "
                    f"{spec.description or 'see its preset'}; pass --controls DIR holding {task.clip_id}{spec.suffix}")
            return ""
        dst = work / "controls" / f"{task.clip_id}{spec.suffix}"
        if materialise:
            dst.parent.mkdir()
            shutil.copyfile(src, dst)
        return str(dst)

    def plan(self, task: Task) -> dict:
        """What ``generate`` would do for ``task`` (a dry run): the inputs it would write, the files
        and staged copies, the commands with every placeholder filled, where it would look for the
        output. Nothing is written or run."""
        p = self.preset
        work = Path(tempfile.gettempdir()) / f"talkbench_{_safe(p.name)}_{_safe(task.clip_id)}_XXXXXXXX"
        values = self._prepare(task, work, materialise=False)
        return {
            "method": p.name, "clip_id": task.clip_id, "python": self.python, "repo": str(self.repo),
            "inputs": {k: values[k] for k in ("portrait", "audio", "driving_video", "driving_frames", "controls")
                       if k in values},
            "files": [str(self._in_repo(render(f.path, values))) for f in p.files],
            "stage": [{"input": s.input, "to": str(self._in_repo(render(s.to, values)))} for s in p.stage],
            "steps": [{"cwd": str(self._in_repo(render(step.cwd, values))),
                       "argv": [render(a, values) for a in step.run],
                       "timeout_s": step.timeout_s or self.timeout_s} for step in p.steps],
            "cleanup": [str(self._in_repo(render(c, values))) for c in p.cleanup],
            "output": {"dir": str(self._in_repo(render(p.output.dir, values))), "glob": render(p.output.glob, values),
                       "panel": p.output.panel.model_dump() if p.output.panel else None},
        }

    def _in_repo(self, text: str) -> Path:
        path = Path(text)
        return path if path.is_absolute() else self.repo / path

    # -- running ------------------------------------------------------------------------------
    def _run_step(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float,
                  log: Path, record: RunRecord) -> None:
        p = self.preset
        stdout_path = log.with_suffix(".stdout.tmp")
        stderr_path = log.with_suffix(".stderr.tmp")
        start = time.monotonic()
        timed_out = False
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            try:
                proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            except FileNotFoundError as exc:
                raise ExternalMethodError(
                    f"{p.name}: cannot start {argv[0]!r} ({exc.strerror}); pass the method's interpreter "
                    "with --python or check the preset's command") from None
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                self._kill(proc)
        seconds = time.monotonic() - start
        step = StepRecord(argv=argv, cwd=str(cwd), returncode=proc.returncode, seconds=round(seconds, 3),
                          timed_out=timed_out)
        record.steps.append(step)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"$ cd {shlex.quote(str(cwd))} && {shlex.join(argv)}\n")
            fh.write(f"# exit {proc.returncode}{' (timed out)' if timed_out else ''} after {seconds:.1f} s\n")
            fh.write("--- stdout ---\n" + stdout_path.read_text(encoding="utf-8", errors="replace"))
            fh.write("\n--- stderr ---\n" + stderr_path.read_text(encoding="utf-8", errors="replace") + "\n")
        tail = _tail(stderr_path) or _tail(stdout_path)
        stdout_path.unlink(missing_ok=True)
        stderr_path.unlink(missing_ok=True)
        if timed_out:
            raise ExternalMethodError(
                f"{p.name} timed out on clip {record.clip_id} after {timeout:g} s running "
                f"{shlex.join(argv)}; raise --timeout if the method is just slow. Log: {log}")
        if proc.returncode != 0:
            raise ExternalMethodError(
                f"{p.name} failed on clip {record.clip_id}: {shlex.join(argv)} exited with "
                f"{proc.returncode}. Log: {log}\n{tail}")

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        """Terminate the step's whole process group (it runs in its own session)."""
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    def _cleanup(self, values: dict[str, str] | None) -> None:
        """Remove what the preset says the scripts leave in the checkout (never outside it)."""
        if not values:
            return
        for text in self.preset.cleanup:
            path = self._in_repo(render(text, values)).resolve()
            if path == self.repo or not path.is_relative_to(self.repo):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def _find_output(self, values: dict[str, str], since: float, record: RunRecord, log: Path) -> Path:
        spec = self.preset.output
        assert spec is not None
        base = self._in_repo(render(spec.dir, values))
        pattern = render(spec.glob, values)
        found = [
            f for f in base.glob(pattern)
            if f.is_file() and f.stat().st_mtime >= since - 1.0
            and not any(fnmatch.fnmatch(f.name, ex) for ex in spec.exclude)
        ]
        if not found:
            tail = _tail(log)
            raise ExternalMethodError(
                f"{self.preset.name} exited 0 on clip {record.clip_id} but wrote nothing matching "
                f"{pattern!r} in {base}. Log: {log}\n{tail}")
        if spec.pick == "only" and len(found) > 1:
            raise ExternalMethodError(
                f"{self.preset.name} wrote {len(found)} files matching {pattern!r} in {base} on clip "
                f"{record.clip_id}, expected one: {', '.join(f.name for f in found[:5])}")
        return max(found, key=lambda f: f.stat().st_mtime)

    def generate(self, task: Task, out: Path) -> Path:
        p = self.preset
        if task.kind not in p.tasks:
            raise ExternalMethodError(f"{p.name} does not do {task.kind} (it does {', '.join(p.tasks)})")
        out = Path(out)
        log_dir = self.log_dir or out.parent / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"{task.clip_id}.log"
        log.write_text(f"# {p.name} on {task.clip_id} ({task.kind}); preset commit {p.code.commit}\n",
                       encoding="utf-8")
        record = RunRecord(method=p.name, clip_id=task.clip_id, log=str(log))
        self.records[task.clip_id] = record
        work = Path(tempfile.mkdtemp(prefix=f"talkbench_{_safe(p.name)}_{_safe(task.clip_id)}_"))
        staged: list[Path] = []
        values: dict[str, str] | None = None
        try:
            values = self._prepare(task, work)
            for f in p.files:
                path = self._in_repo(render(f.path, values))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(render(f.text, values), encoding="utf-8")
            for s in p.stage:
                if not values.get(s.input):
                    raise ExternalMethodError(f"{p.name}: nothing to stage for input {s.input}")
                dst = self._in_repo(render(s.to, values))
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(values[s.input], dst)
                staged.append(dst)
            since = time.time()
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            for step in p.steps:
                argv = [render(a, values) for a in step.run]
                cwd = self._in_repo(render(step.cwd, values))
                if not cwd.is_dir():
                    raise ExternalMethodError(f"{p.name}: working directory {cwd} does not exist; is "
                                              f"{self.repo} a checkout of {p.code.repository}?")
                step_env = {**env, **{k: render(v, values) for k, v in step.env.items()}}
                self._run_step(argv, cwd, step_env, step.timeout_s or self.timeout_s, log, record)
            produced = self._find_output(values, since, record, log)
            record.output = str(produced)
            frames = task.frames or media.frame_count_at(media.probe(task.reference), task.fps)
            ref = media.probe(task.reference)
            size = self.size or (ref.width if ref.width == ref.height else (ref.width, ref.height))
            audio = media.read_audio(task.reference) if ref.has_audio else None
            panel = p.output.panel
            record.normalised = normalise_video(
                produced, out, frames=frames, size=size, fps=task.fps, audio=audio,
                panel=(panel.cols, panel.rows, panel.index) if panel else None)
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"# output {produced}\n# normalised {json.dumps(record.normalised.to_dict())}\n")
            return out
        except PresetError as exc:
            raise ExternalMethodError(f"{p.name}: {exc}") from None
        finally:
            for path in staged:
                path.unlink(missing_ok=True)
            self._cleanup(values)
            if not self.keep_work:
                shutil.rmtree(work, ignore_errors=True)


def _safe(text: str) -> str:
    """A file-name fragment without dots or separators (some scripts split paths on '.')."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:40]
