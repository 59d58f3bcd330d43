"""The evaluation engine: scores many methods' clips against shared ground truths.

    report = evaluate(jobs, settings, workers=2)        # jobs: ClipJob(method, clip, generated, reference, portrait)

1. **Plan.** The selected metric modules declare what they need (``talkbench.metrics.base``);
   the engine assembles the ``Protocol`` from them and marks metrics whose weights are missing
   as unavailable, with the fix.
2. **References, once.** Each distinct ground truth (by content sha256) is analysed once —
   face track, identity embeddings, FID/FVD feature rows of all its frames — however many
   methods are scored against it, and the analysis is kept in the on-disk cache
   (``talkbench.metrics.cache``) for later runs and other processes.
3. **Clips.** Every (method, clip) streams its frames in batches (``scorer.BATCH``) through the
   face analysis and the metrics' ``update`` (``talkbench.metrics.scorer``); a finished clip's result and feature rows go to the
   cache, so a killed evaluation resumes where it stopped.
4. **Merge.** Per method: clip rows in job order, means with bootstrap intervals, FID/FVD from
   float64 sums of the clips' feature rows (added in job order, so 1 worker, N workers and Ray
   give identical numbers).

Steps 2 and 3 run in this process (``workers=1``), in a pool of spawned processes, or as
Ray actors (``engine="ray"``): ``talkbench.metrics.workers``. A clip that fails is reported in ``errors`` with the reason;
the other clips' results stand.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from talkbench.errors import MetricError
from talkbench.media import VIDEO_SUFFIXES
from talkbench.metrics import bootstrap, cache
from talkbench.metrics.analysis import clear_memo
from talkbench.metrics.base import DistributionMetric, clear_loaded_models
from talkbench.metrics.fid import GaussianStats
from talkbench.metrics.results import ClipError, DistributionValue, EvaluationReport, EvaluationResult, Summary, Timing
from talkbench.metrics.scorer import ClipJob, ClipOutcome, ReferenceAnalysis, Scorer, keep_heap_flat
from talkbench.metrics.settings import DEFAULT_METRICS, EvalSettings
from talkbench.metrics.workers import ENGINES, Runner, clip_task, forget_scorer, reference_task
from talkbench.util import ProgressCallback

__all__ = ["ClipJob", "DEFAULT_METRICS", "EvalSettings", "ENGINES", "evaluate", "evaluate_pair", "evaluate_folders",
           "match_folders", "clear_process_caches", "IMAGE_SUFFIXES"]  # fmt: skip

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # portraits matched by stem in a folder

# -- the entry point -------------------------------------------------------------------------


def evaluate(
    jobs: Iterable[ClipJob],
    settings: EvalSettings = EvalSettings(),
    workers: int = 1,
    engine: str = "local",
    progress: ProgressCallback | None = None,
    models: dict[str, object] | None = None,
    ray_address: str | None = None,
) -> EvaluationReport:
    """Score every job; one ``EvaluationResult`` per method, in the order methods first appear.
    ``models`` supplies loaded networks by name ("lpips", "fid", "fvd", "arcface", "face"),
    recorded in the protocol as ``caller-supplied`` and kept out of the on-disk cache."""
    started = time.perf_counter()
    jobs = list(jobs)
    if workers < 1:
        raise MetricError(f"workers must be at least 1, got {workers}")
    keep_heap_flat()  # in this process, which analyses the ground truths; workers do the same
    scorer = Scorer(settings, models)  # validates the settings before any process starts
    say = progress or (lambda done, total, label: None)

    outcomes: list[ClipOutcome | None] = [scorer.cached_outcome(job) for job in jobs]  # resumes a killed run
    todo = [i for i, o in enumerate(outcomes) if o is None]
    references: dict[str, tuple[Path | np.ndarray, bool]] = {}
    job_reference: list[str | None] = [None] * len(jobs)
    for i in todo:
        job = jobs[i]
        if job.reference is None:
            continue
        try:
            key = cache.content_sha256(job.reference)
        except OSError:
            key = f"unreadable:{job.reference}"  # the reference task reports it, naming the file
        identity = scorer.wants_identity() and scorer.csim_mode(job) == "ground-truth-frame"
        source, needed = references.get(key, (job.reference, False))
        references[key] = (source, needed or identity)
        job_reference[i] = key

    workers = max(1, min(workers, len(todo))) if engine == "local" else workers
    analyses: dict[str, ReferenceAnalysis] = {}
    if todo:
        with Runner(settings, scorer.supplied, workers, engine, ray_address) as runner:
            keys = list(references)
            say(0, len(keys), "ground truth")
            analysed = runner.map(reference_task, [references[k] for k in keys], say, ["ground truth"] * len(keys))
            analyses = dict(zip(keys, analysed))
            calls = [(jobs[i], analyses[job_reference[i]].for_clips() if job_reference[i] else None) for i in todo]
            say(0, len(todo), "clips")
            measured = runner.map(clip_task, calls, say, [jobs[i].clip_id for i in todo])
        for i, outcome in zip(todo, measured):
            outcomes[i] = outcome
    for i, job in enumerate(jobs):  # cached clips' ground-truth feature rows, for FID/FVD
        if job_reference[i] is None and job.reference is not None and outcomes[i].features:
            job_reference[i] = _cached_reference(scorer, job, analyses)

    methods = list(dict.fromkeys(job.method for job in jobs))
    report = EvaluationReport()
    for method in methods:
        picked = [(job, k, o) for job, k, o in zip(jobs, job_reference, outcomes) if job.method == method]
        report.evaluations.append(_assemble(scorer, method, picked, analyses, workers, engine))
    wall = time.perf_counter() - started
    for result in report.evaluations:
        result.timing.seconds = wall
    return report


def _cached_reference(scorer: Scorer, job: ClipJob, analyses: dict[str, ReferenceAnalysis]) -> str:
    """A ground truth's feature rows for a clip whose result came from the cache."""
    key = cache.content_sha256(job.reference)
    if key not in analyses:
        analyses[key] = reference_task(job.reference, False, scorer)
    return key


def _assemble(scorer: Scorer, method: str, picked: list, analyses: dict[str, ReferenceAnalysis],
              workers: int, engine: str) -> EvaluationResult:
    s = scorer.settings
    clips = [o.result for _, _, o in picked if o.result is not None]
    errors = [ClipError(job.clip_id, o.error) for job, _, o in picked if o.result is None]
    summary = {}
    for name in sorted({v for c in clips for v in c.values}):
        got = np.array([c.values[name] for c in clips if name in c.values])
        summary[name] = Summary(float(got.mean()), len(got), bootstrap.mean_interval(got, s.bootstrap_replicates, s.seed))
    unavailable = dict(scorer.unavailable)
    measured = [o.result for _, _, o in picked if o.result is not None]
    for name, metric in scorer.active().items():  # a metric no clip could give (weights that failed to load in a worker, …): say why, once
        if measured and all(name in c.unavailable for c in measured):
            reasons = sorted({c.unavailable[name] for c in measured})
            unavailable[name] = reasons[0] if len(reasons) == 1 else "; ".join(reasons[:3])
    distribution, by_group = {}, {}
    for name, metric in scorer.active().items():
        if not isinstance(metric, DistributionMetric) or name in unavailable:
            continue
        pairs = [(o.features[name], analyses[k].features[name], job.group)
                 for job, k, o in picked
                 if o.result is not None and k is not None and name in o.features and name in analyses[k].features]  # fmt: skip
        value = _distribution(metric, pairs, s)
        if isinstance(value, str):
            unavailable[name] = value
            continue
        distribution[name] = value
        groups = sorted({g for _, _, g in pairs})
        for group in groups if len(groups) > 1 else ():  # point values: intervals are for the headline
            grouped = _distribution(metric, [p for p in pairs if p[2] == group], replace(s, distribution_bootstrap_replicates=0))
            if not isinstance(grouped, str):
                by_group.setdefault(group, {})[name] = grouped
    csim_used = {c.identity_reference for c in clips if c.identity_reference}
    frame_counts = {c.id: {"generated": c.frames.generated, "reference": c.frames.reference, "compared": c.frames.compared}
                    for c in clips}  # fmt: skip
    timing = Timing(
        seconds=0.0, clip_seconds=sum(c.seconds for c in clips if not c.cached),
        cpu_seconds=sum(c.cpu_seconds for c in clips if not c.cached),
        frames=sum(c.frames.compared for c in clips if not c.cached),
        clips_cached=sum(c.cached for c in clips), workers=max(1, workers), engine=engine,
    )  # fmt: skip
    return EvaluationResult(method, scorer.protocol(csim_used, frame_counts), clips, summary, distribution, by_group,
                            unavailable, errors, timing)  # fmt: skip


def _distribution(metric: DistributionMetric, pairs: list, s: EvalSettings) -> DistributionValue | str:
    generated, reference = GaussianStats.empty(metric.dims), GaussianStats.empty(metric.dims)
    for gen_rows, ref_rows, _ in pairs:  # job order: the same sums for any number of workers
        generated.update(gen_rows)
        reference.update(ref_rows)
    if generated.count < 2 or reference.count < 2:
        return f"needs at least 2 samples on each side, have {generated.count} generated, {reference.count} reference"

    gen_rows, ref_rows = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    gen_clip = np.repeat(np.arange(len(pairs)), [len(p[0]) for p in pairs])  # each row's clip
    ref_clip = np.repeat(np.arange(len(pairs)), [len(p[1]) for p in pairs])

    def resampled(multiplicity: np.ndarray) -> float:
        a, b = GaussianStats.empty(metric.dims), GaussianStats.empty(metric.dims)
        a.update_weighted(gen_rows, multiplicity[gen_clip])
        b.update_weighted(ref_rows, multiplicity[ref_clip])
        return metric.resampled_distance(a, b)

    interval = bootstrap.distribution_interval(len(pairs), resampled, s.distribution_bootstrap_replicates, s.seed)
    return DistributionValue(metric.distance(generated, reference), generated.count, reference.count, interval)


# -- conveniences ----------------------------------------------------------------------------


def evaluate_pair(
    generated: str | Path | np.ndarray,
    reference: str | Path | np.ndarray | None = None,
    portrait: str | Path | np.ndarray | None = None,
    settings: EvalSettings = EvalSettings(),
    clip_id: str | None = None,
    models: dict[str, object] | None = None,
    method: str = "generated",
) -> EvaluationResult:
    """One generated video (path or uint8 frames) against its ground truth and/or portrait."""
    name = clip_id or (Path(generated).stem if not isinstance(generated, np.ndarray) else "clip")
    job = ClipJob(method, name, _as_path(generated), _as_path(reference), _as_path(portrait))
    return evaluate([job], settings, models=models).evaluations[0]


def _as_path(source):
    return Path(source) if isinstance(source, str) else source


def _videos(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES}


def match_folders(generated: Path, reference: Path | None, portrait: Path | None, method: str | None = None) -> list[ClipJob]:
    """Jobs for a folder of generated videos, matched by file stem to ground truths (every
    generated clip needs one when a reference folder is given) and portraits (a folder
    matched by stem, or one image for all)."""
    gen = _videos(generated)
    if not gen:
        raise MetricError(f"{generated}: no video files ({', '.join(VIDEO_SUFFIXES)})")
    refs = _videos(reference) if reference is not None else {}
    if reference is not None:
        missing = sorted(set(gen) - set(refs))
        if missing:
            raise MetricError(f"{reference}: no ground truth for generated clips {', '.join(missing[:10])}")
    portraits: dict[str, Path] = {}
    if portrait is not None and portrait.is_dir():
        portraits = {p.stem: p for p in sorted(portrait.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    name = method or generated.name
    return [
        ClipJob(name, cid, path, refs.get(cid), portraits.get(cid) if portrait is not None and portrait.is_dir() else portrait)
        for cid, path in gen.items()
    ]


def evaluate_folders(
    generated: str | Path | list[str | Path],
    reference: str | Path | None = None,
    portrait: str | Path | None = None,
    settings: EvalSettings = EvalSettings(),
    progress: ProgressCallback | None = None,
    models: dict[str, object] | None = None,
    workers: int = 1,
    engine: str = "local",
) -> EvaluationReport:
    """Folders of generated videos (one method each, named by the folder) against one folder
    of ground truths matched by file stem."""
    folders = [Path(g) for g in (generated if isinstance(generated, list) else [generated])]
    names = [f.name for f in folders]
    if len(set(names)) != len(names):
        names = [str(f) for f in folders]  # two folders called "outputs": name them by path
    jobs = []
    for folder, name in zip(folders, names):
        jobs += match_folders(folder, Path(reference) if reference else None, Path(portrait) if portrait else None, name)
    return evaluate(jobs, settings, workers, engine, progress, models)


def clear_process_caches() -> None:
    """Forget what this process remembers (the frame memo, loaded networks); the on-disk cache
    is cleared with ``talkbench cache clear``."""
    clear_memo()
    clear_loaded_models()
    forget_scorer()
