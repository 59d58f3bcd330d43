"""From method outputs to a stored run: generate (built-in methods), evaluate with the metrics
engine (``talkbench.metrics.engine``; nothing is re-implemented here), store.

Evaluation uses one engine ``Evaluator`` per language group (Indo-European / not), so per-clip
values are computed once while FID/FVD get their own statistics per group; the two merge by
addition into the whole-benchmark numbers. A clip that fails makes the whole evaluation fail
(``EvaluationError``) and nothing is stored: a run is all its clips or nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from talkbench import media
from talkbench.baselines.protocol import MethodInfo, Task, get_method, method_names
from talkbench.clip import Clip
from talkbench.errors import TalkbenchError
from talkbench.leaderboard.benchmarks import BenchmarkSpec, get_benchmark, resolve_clips, sha256_file
from talkbench.leaderboard.store import AggregateValue, ClipValue, Run, Store

GROUPS = ("indo_european", "non_indo_european")
Progress = Callable[[str], None]


class EvaluationError(TalkbenchError):
    """An evaluation that did not complete for every clip; nothing was stored."""


@dataclass
class Evaluation:
    protocol: dict
    protocol_sha256: str
    clip_values: list[ClipValue]
    aggregates: list[AggregateValue]
    attributes: dict = field(default_factory=dict)


def _group(clip: Clip) -> str:
    return "indo_european" if clip.family == "Indo-European" else "non_indo_european"


def references_digest(clips: list[Clip]) -> str:
    """sha256 over the clips' (id, reference sha256): runs on different reference files (two
    MNTE builds) must never rank together."""
    items = sorted((c.id, sha256_file(c.video)) for c in clips)
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def default_settings(metrics: tuple[str, ...] | None = None):
    from talkbench.metrics.engine import DEFAULT_METRICS, EvalSettings

    return EvalSettings(metrics=tuple(metrics) if metrics else DEFAULT_METRICS)


def evaluate_outputs(
    spec: BenchmarkSpec,
    clips: list[Clip],
    videos: dict[str, Path],
    task: str,
    settings=None,
    progress: Progress | None = None,
) -> Evaluation:
    """Score ``videos`` (clip id → generated file) against the benchmark's references."""
    from talkbench.metrics.engine import Evaluator

    settings = settings or default_settings()
    say = progress or (lambda message: None)
    evaluators = {g: Evaluator(settings) for g in GROUPS}
    errors: list[str] = []
    for i, clip in enumerate(clips, 1):
        say(f"evaluating {clip.id} ({i}/{len(clips)})")
        portrait = next(iter(media.iter_frames(clip.video, fps=spec.fps)))
        try:
            evaluators[_group(clip)].evaluate_clip(clip.id, videos[clip.id], clip.video, portrait)
        except TalkbenchError as exc:
            errors.append(f"{clip.id}: {exc}")
    if errors:
        raise EvaluationError("evaluation failed, nothing stored:\n  - " + "\n  - ".join(errors))

    total = Evaluator(settings)
    for g in GROUPS:
        total.merge(evaluators[g])
    result = total.result()

    clip_values = [
        ClipValue(c["id"], name, value)
        for c in result["clips"]
        for name, value in sorted(c["values"].items())
        if isinstance(value, (int, float))
    ]
    aggregates = [AggregateValue("all", name, agg["mean"]) for name, agg in result["aggregates"].items()]
    for name, value in result["distribution"].items():
        if isinstance(value, (int, float)):
            aggregates.append(AggregateValue("all", name, value))
    for g, ev in evaluators.items():
        if not ev.clips:
            continue
        values, _ = ev.distribution_values()
        for name, value in values.items():
            if isinstance(value, (int, float)):
                aggregates.append(AggregateValue(f"group:{g}", name, value))
    attributes = {
        "unavailable": result["unavailable"],
        "references_sha256": references_digest(clips),
        "clips": len(clips),
        "timing": result["timing"],
        "faces": {c["id"]: c["faces"] for c in result["clips"]},
    }
    return Evaluation(result["protocol"], result["protocol_sha256"], clip_values, aggregates, attributes)


def make_tasks(spec: BenchmarkSpec, clips: list[Clip], kind: str) -> list[Task]:
    if kind not in spec.tasks:
        raise EvaluationError(f"benchmark {spec.key} has no {kind!r} task; it has {', '.join(spec.tasks)}")
    tasks = []
    for clip in clips:
        frames = spec.clip(clip.id).frames or media.frame_count_at(media.probe(clip.video), spec.fps)
        tasks.append(Task(kind=kind, clip_id=clip.id, reference=clip.video, language=clip.language,
                          fps=spec.fps, frames=frames))
    return tasks


def generate_outputs(method, tasks: list[Task], out_dir: Path, progress: Progress | None = None) -> dict[str, Path]:
    say = progress or (lambda message: None)
    out_dir = Path(out_dir)
    videos = {}
    for i, task in enumerate(tasks, 1):
        say(f"{method.info.name}: generating {task.clip_id} ({i}/{len(tasks)})")
        videos[task.clip_id] = method.generate(task, out_dir / f"{task.clip_id}.mp4")
    return videos


def store_evaluation(store: Store, spec: BenchmarkSpec, info: MethodInfo, task: str,
                     evaluation: Evaluation, extra: dict | None = None) -> str:
    store.upsert_benchmark(spec)
    attributes = dict(evaluation.attributes)
    attributes.update(extra or {})
    run = Run(
        method=info.name, benchmark=spec.name, benchmark_version=spec.version, task=task,
        provenance="measured", protocol=evaluation.protocol, attributes=attributes,
        row_label=info.name, protocol_sha256=evaluation.protocol_sha256,
    )
    return store.add_run(run, evaluation.clip_values, evaluation.aggregates, method=info)


def run_method(
    store: Store,
    method_name: str,
    benchmark: str | BenchmarkSpec = "sample",
    task: str = "speech-driven",
    out_dir: str | Path = "talkbench-outputs",
    data_dir: str | Path | None = None,
    settings=None,
    progress: Progress | None = None,
    **method_kwargs,
) -> str:
    """Generate a built-in method's outputs for a benchmark, evaluate them, store the run."""
    spec = benchmark if isinstance(benchmark, BenchmarkSpec) else get_benchmark(benchmark)
    clips = resolve_clips(spec, data_dir)
    method = get_method(method_name, **method_kwargs)
    out = Path(out_dir) / spec.name / method.info.name
    videos = generate_outputs(method, make_tasks(spec, clips, task), out, progress)
    evaluation = evaluate_outputs(spec, clips, videos, task, settings, progress)
    extra = {"outputs": str(out)}
    measured = getattr(method, "measured_kbps", None)
    if measured:
        extra["measured_kbps"] = measured
        extra["mean_measured_kbps"] = sum(measured.values()) / len(measured)
    return store_evaluation(store, spec, method.info, task, evaluation, extra)


def _name_key(name: str) -> str:
    """Names that differ only in case or punctuation are one name: they share a site page."""
    from talkbench.leaderboard.site import slug

    return slug(name)


def check_submission_name(path: str | Path, name: str, store: Store) -> None:
    """A submission may re-use its own earlier name (a new run of the same method), never the
    name of a built-in, reported or external method, which it would replace on the board."""
    from talkbench.leaderboard.ranking import REFERENCE_METHODS

    key = _name_key(name)
    if key in {_name_key(m) for m in (*method_names(), *REFERENCE_METHODS)}:
        raise EvaluationError(f"{path}: method name {name!r} is reserved for a built-in or external method; "
                              "choose another name in submission.yaml (nothing was stored)")
    for other, info in store.methods().items():
        if _name_key(other) == key and (info.get("kind") != "submission" or other != name):
            owner = "a submitted method" if info.get("kind") == "submission" else f"a {info.get('kind')} method"
            raise EvaluationError(f"{path}: method name {name!r} is taken by {owner} ({other!r}); "
                                  "choose another name in submission.yaml (nothing was stored)")


def submit(
    path: str | Path,
    benchmark: str | BenchmarkSpec,
    store: Store,
    data_dir: str | Path | None = None,
    settings=None,
    progress: Progress | None = None,
    limits=None,
) -> str:
    """Validate a submission (every problem at once), evaluate it, store it; returns the run id.
    Nothing is stored unless validation and evaluation both succeed."""
    from talkbench.leaderboard.submission import Limits, validate_submission

    spec = benchmark if isinstance(benchmark, BenchmarkSpec) else get_benchmark(benchmark)
    clips = resolve_clips(spec, data_dir)
    say = progress or (lambda message: None)
    say(f"validating {path} against {spec.key}")
    with validate_submission(path, spec, clips, limits or Limits()) as sub:
        check_submission_name(path, sub.meta.method, store)
        task = sub.meta.task
        if task not in spec.tasks:
            raise EvaluationError(f"{path}: task {task!r} is not a task of {spec.key} ({', '.join(spec.tasks)})")
        evaluation = evaluate_outputs(spec, clips, sub.videos, task, settings, progress)
        meta = sub.meta
        info = MethodInfo(
            name=meta.method, kind="submission", description=meta.description, paper=meta.paper,
            year=meta.year, authors=meta.authors, links=[meta.code] if meta.code else [],
            licence=meta.licence, contact=meta.contact, resolution=meta.resolution,
            tasks=[task],
        )
        return store_evaluation(store, spec, info, task, evaluation, {"submission": str(path)})
