"""From method outputs to a stored run: generate (built-in methods), evaluate with the metrics
engine (``talkbench.metrics.engine``; nothing is re-implemented here), store.

Each clip is tagged with its language group (Indo-European / not), so the engine gives FID/FVD
per group beside the whole-benchmark numbers. Every mean carries its bootstrap interval. A clip
that fails makes the whole evaluation fail (``EvaluationError``) and nothing is stored: a run
is all its clips or nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from talkbench import media
from talkbench.baselines.method import MethodInfo, Task
from talkbench.baselines.registry import get_method, method_options
from talkbench.clip import Clip
from talkbench.errors import TalkbenchError
from talkbench.leaderboard.benchmarks import BenchmarkSpec, get_benchmark, resolve_clips
from talkbench.leaderboard.names import (
    KEY_ENV, MAKE_KEY, NameTakenError, SubmitterKey, SubmitterKeyError, name_key, refusal, reserved_names,
)
from talkbench.leaderboard.paper import table_by_key
from talkbench.leaderboard.store import AggregateValue, ClipValue, Run, Store
from talkbench.leaderboard.submission import Limits, validate_submission
from talkbench.metrics.engine import ClipJob, evaluate
from talkbench.metrics.paper_protocols import get_protocol
from talkbench.metrics.settings import DEFAULT_METRICS, EvalSettings
from talkbench.util import ProgressCallback, sha256_file

GROUPS = ("indo_european", "non_indo_european")
Say = Callable[[str], None]  # one line about what is being done now ("generating ar_001 (1/8)")


class EvaluationError(TalkbenchError):
    """An evaluation that did not complete for every clip; nothing was stored."""


@dataclass
class Evaluation:
    protocol: dict
    protocol_sha256: str
    clip_values: list[ClipValue]
    aggregates: list[AggregateValue]
    attributes: dict = field(default_factory=dict)


def quiet(message: str) -> None:
    """A ``Say`` that says nothing."""


def counted(say: Say, doing: str) -> ProgressCallback:
    """The engine's counts (done, total, label) as ``say`` lines: "evaluating ar_001 (3/8)"."""
    return lambda done, total, label: say(f"{doing} {label} ({done}/{total})")


def _group(clip: Clip) -> str:
    return "indo_european" if clip.family == "Indo-European" else "non_indo_european"


def references_digest(clips: list[Clip]) -> str:
    """sha256 over the clips' (id, reference sha256): runs on different reference files (two
    MNTE builds) must never rank together."""
    items = sorted((c.id, sha256_file(c.video)) for c in clips)
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def default_settings(metrics: tuple[str, ...] | None = None) -> EvalSettings:
    return EvalSettings(metrics=tuple(metrics) if metrics else DEFAULT_METRICS)


def evaluate_outputs(
    spec: BenchmarkSpec,
    clips: list[Clip],
    videos: dict[str, Path],
    task: str,
    settings: EvalSettings | None = None,
    say: Say | None = None,
    workers: int = 1,
    engine: str = "local",
) -> Evaluation:
    """Score ``videos`` (clip id → generated file) against the benchmark's references."""
    return evaluate_many(spec, clips, {"method": videos}, settings, say, workers, engine)["method"]


def evaluate_many(
    spec: BenchmarkSpec,
    clips: list[Clip],
    outputs: dict[str, dict[str, Path]],
    settings: EvalSettings | None = None,
    say: Say | None = None,
    workers: int = 1,
    engine: str = "local",
) -> dict[str, Evaluation]:
    """Score several methods' outputs (label → clip id → file) in one engine call: each ground
    truth is analysed once for all of them, and clips spread over ``workers``. Raises
    ``EvaluationError`` naming every failed clip if any method has one."""
    settings = settings or default_settings()
    say = say or quiet
    portraits = {clip.id: _first_frame(clip.video, spec.fps) for clip in clips}
    jobs = [ClipJob(label, clip.id, Path(videos[clip.id]), clip.video, portraits[clip.id], _group(clip), audio=clip.video,
                    emotion=clip.emotion)
            for label, videos in outputs.items() for clip in clips]  # the reference clip carries the driving speech
    report = evaluate(jobs, settings, workers=workers, engine=engine, progress=counted(say, "evaluating"))
    failed = [f"{r.method}/{e.id}: {e.error}" if len(outputs) > 1 else f"{e.id}: {e.error}"
              for r in report.evaluations for e in r.errors]  # fmt: skip
    if failed:
        raise EvaluationError("evaluation failed, nothing stored:\n  - " + "\n  - ".join(failed))
    digest = references_digest(clips)
    return {result.method: _evaluation(result, digest, len(clips)) for result in report.evaluations}


def _evaluation(result, references_sha256: str, clips: int) -> Evaluation:
    clip_values = [ClipValue(c.id, name, value) for c in result.clips for name, value in sorted(c.values.items())]
    aggregates = [AggregateValue("all", name, s.mean, ci=s.ci95) for name, s in result.summary.items()]
    for name, d in result.distribution.items():
        aggregates.append(AggregateValue("all", name, d.value, ci=d.ci95))
    for group, values in result.group_distribution.items():
        for name, d in values.items():
            aggregates.append(AggregateValue(f"group:{group}", name, d.value, ci=d.ci95))
    attributes = {
        "unavailable": result.unavailable,
        "references_sha256": references_sha256,
        "clips": clips,
        "timing": asdict(result.timing),
        "faces": {c.id: c.faces for c in result.clips},
    }
    return Evaluation(result.protocol.to_dict(), result.protocol_sha256, clip_values, aggregates, attributes)


def _first_frame(video: Path, fps: float) -> np.ndarray:
    """The speech-driven task's source image: the reference clip's first frame."""
    return next(iter(media.iter_frames(video, fps=fps)))


def make_tasks(spec: BenchmarkSpec, clips: list[Clip], kind: str) -> list[Task]:
    if kind not in spec.tasks:
        raise EvaluationError(f"benchmark {spec.key} has no {kind!r} task; it has {', '.join(spec.tasks)}")
    tasks = []
    for clip in clips:
        frames = spec.clip(clip.id).frames or media.frame_count_at(media.probe(clip.video), spec.fps)
        tasks.append(Task(kind=kind, clip_id=clip.id, reference=clip.video, language=clip.language,
                          fps=spec.fps, frames=frames, emotion=clip.emotion))
    return tasks


def generate_outputs(method, tasks: list[Task], out_dir: Path, say: Say | None = None) -> dict[str, Path]:
    say = say or quiet
    out_dir = Path(out_dir)
    videos = {}
    for i, task in enumerate(tasks, 1):
        say(f"{method.info.name}: generating {task.clip_id} ({i}/{len(tasks)})")
        videos[task.clip_id] = method.generate(task, out_dir / f"{task.clip_id}.mp4")
    return videos


def store_evaluation(store: Store, spec: BenchmarkSpec, info: MethodInfo, task: str,
                     evaluation: Evaluation, extra: dict | None = None, owner: str | None = None) -> str:
    """Store one evaluated run; the method's name is claimed in the run's transaction (for
    ``owner``, a ``SubmitterKey.owner``, when ``info`` is a submission)."""
    store.upsert_benchmark(spec)
    attributes = dict(evaluation.attributes)
    attributes.update(extra or {})
    run = Run(
        method=info.name, benchmark=spec.name, benchmark_version=spec.version, task=task,
        provenance="measured", protocol=evaluation.protocol, attributes=attributes,
        row_label=info.name, protocol_sha256=evaluation.protocol_sha256,
    )
    return store.add_run(run, evaluation.clip_values, evaluation.aggregates, method=info, owner=owner)


def run_method(store: Store, method_name: str, *args, **kwargs) -> str:
    """``run_methods`` for one built-in method; returns its run id."""
    return run_methods(store, [method_name], *args, **kwargs)[method_name]


def run_methods(
    store: Store,
    method_names: list[str],
    benchmark: str | BenchmarkSpec = "sample",
    task: str = "speech-driven",
    out_dir: str | Path = "talkbench-outputs",
    data_dir: str | Path | None = None,
    settings=None,
    say: Say | None = None,
    workers: int = 1,
    engine: str = "local",
    device: str | None = None,
    **method_kwargs,
) -> dict[str, str]:
    """Generate several built-in methods' outputs, evaluate them in one engine call (each
    ground truth analysed once), store one run each; returns method name → run id.
    ``device`` goes to the methods that take one (VQTalker's); the others run as they do."""
    spec = benchmark if isinstance(benchmark, BenchmarkSpec) else get_benchmark(benchmark)
    clips = resolve_clips(spec, data_dir)
    tasks = make_tasks(spec, clips, task)

    def options(name: str) -> dict:
        takes_device = device is not None and "device" in method_options(name)
        return {**method_kwargs, "device": device} if takes_device else method_kwargs

    methods = {name: get_method(name, **options(name)) for name in method_names}  # a bad name fails before any work
    outputs, folders = {}, {}
    for name, method in methods.items():
        folders[name] = Path(out_dir) / spec.name / method.info.name
        outputs[name] = generate_outputs(method, tasks, folders[name], say)
    evaluations = evaluate_many(spec, clips, outputs, settings, say, workers, engine)
    run_ids = {}
    for name, method in methods.items():
        extra = {"outputs": str(folders[name])}
        if getattr(method, "device", None) is not None:  # outputs may differ between devices
            extra["device"] = str(method.device)
        measured = getattr(method, "measured_kbps", None)
        if measured:
            extra["measured_kbps"] = measured
            extra["mean_measured_kbps"] = sum(measured.values()) / len(measured)
        run_ids[name] = store_evaluation(store, spec, method.info, task, evaluations[name], extra)
    return run_ids


def check_submission_name(path: str | Path, name: str, store: Store | None, key: SubmitterKey) -> None:
    """Refuse, before the slow evaluation, a name ``key`` may not store under: one of
    talkbench's own (built-in, external, reported) or one another key holds, however spelled
    (``names.name_key``). The same key may submit again under its own name. ``store`` None:
    no store file yet, only the reserved names are checked. The claim in the run's transaction
    (``Store.add_runs``) is the authority; this only fails early."""
    if not name_key(name):
        reason = f"method name {name!r} has no letters or digits"
    else:
        if store is not None:
            held = store.name_holder(name)
        else:  # as a new store would claim them: the first of a key's names wins
            held = next(((n, owner) for n, owner in reserved_names() if name_key(n) == name_key(name)), None)
        reason = refusal(name, *held, key.owner) if held else None
    if reason:
        raise EvaluationError(f"{path}: {reason}; choose another name in submission.yaml (nothing was stored)")


def check_protocol_fits(protocol_name: str, task: str | None, benchmark: str, path: str | Path) -> None:
    """A run under a paper table's protocol must be a run that table has rows for: its task,
    on one of its benchmarks; otherwise it would be stored under a protocol that fills nothing.
    ``task`` None: only the benchmark is checked (before a submission's videos are validated)."""
    protocol = get_protocol(protocol_name)
    if protocol.table is None:
        return
    t = table_by_key(protocol.table)
    if (task is not None and task != t.task) or benchmark not in t.benchmarks:
        raise EvaluationError(f"{path}: protocol {protocol.name} reproduces {t.paper} Table {t.number} "
                              f"({t.task} on {', '.join(t.benchmarks)}); this is {task or 'a run'} on {benchmark}"
                              + ("; talkbench has no cross-identity task: measure it with talkbench eval"
                                 if t.task == "cross-identity" else ""))  # fmt: skip


def submit(
    path: str | Path,
    benchmark: str | BenchmarkSpec,
    store: Store | str | Path,
    data_dir: str | Path | None = None,
    settings=None,
    say: Say | None = None,
    limits=None,
    workers: int = 1,
    engine: str = "local",
    key: SubmitterKey | None = None,
) -> str:
    """Validate a submission (every problem at once), evaluate it, store it; returns the run id.
    Nothing is stored unless validation and evaluation both succeed and the method name is
    ``key``'s (its first submission under that name makes it so). ``store`` may be a path: a
    store file that does not exist yet is only created once there is a run to put in it."""
    if key is None:
        raise SubmitterKeyError(f"{path}: a submission needs a submitter key (--key-file or ${KEY_ENV}); "
                                f"make one with: {MAKE_KEY}")
    spec = benchmark if isinstance(benchmark, BenchmarkSpec) else get_benchmark(benchmark)
    clips = resolve_clips(spec, data_dir)
    say = say or quiet
    if settings is not None:
        check_protocol_fits(settings.protocol_name, None, spec.name, path)
    say(f"validating {path} against {spec.key}")
    with validate_submission(path, spec, clips, limits or Limits()) as sub:
        if not isinstance(store, Store):
            store = Store(store) if Path(store).exists() else Path(store)
        check_submission_name(path, sub.meta.method, store if isinstance(store, Store) else None, key)
        task = sub.meta.task
        if task not in spec.tasks:
            raise EvaluationError(f"{path}: task {task!r} is not a task of {spec.key} ({', '.join(spec.tasks)})")
        if settings is not None:
            check_protocol_fits(settings.protocol_name, task, spec.name, path)
        evaluation = evaluate_outputs(spec, clips, sub.videos, task, settings, say, workers, engine)
        meta = sub.meta
        info = MethodInfo(
            name=meta.method, kind="submission", description=meta.description, paper=meta.paper,
            year=meta.year, authors=meta.authors, links=[meta.code] if meta.code else [],
            licence=meta.licence, contact=meta.contact, resolution=meta.resolution,
            tasks=[task],
        )
        if not isinstance(store, Store):
            store = Store(store)
        try:
            return store_evaluation(store, spec, info, task, evaluation, {"submission": str(path)}, key.owner)
        except NameTakenError as exc:  # claimed by another submit while this one was evaluated
            raise EvaluationError(f"{path}: {exc.reason}; choose another name in submission.yaml "
                                  "(nothing was stored)") from None
