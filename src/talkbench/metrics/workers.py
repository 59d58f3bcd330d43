"""Where the engine's tasks run: in this process, in a pool of spawned worker processes, or
as Ray actors. Each worker holds one ``Scorer`` (metrics and models loaded once); tasks return
results in input order, so the caller can add sums in a fixed order whatever ran them.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence

import torch

from talkbench.errors import MetricError
from talkbench.metrics.scorer import ClipJob, ClipOutcome, ReferenceAnalysis, Scorer, describe, keep_heap_flat
from talkbench.metrics.settings import EvalSettings
from talkbench.util import ProgressCallback

ENGINES = ("local", "ray")

_SCORER: Scorer | None = None  # this worker's


def forget_scorer() -> None:
    global _SCORER
    _SCORER = None


def _init_worker(settings: EvalSettings, supplied: dict, threads: int) -> None:
    global _SCORER
    torch.set_num_threads(threads)
    keep_heap_flat()
    _SCORER = Scorer(settings, supplied)


def reference_task(source, identity: bool, scorer: Scorer | None = None) -> ReferenceAnalysis:
    try:
        return (scorer or _SCORER).analyse_reference(source, identity)
    except Exception as exc:  # noqa: BLE001 - one bad ground truth fails only its clips
        return ReferenceAnalysis(0, None, None, error=_message(source, exc))


def clip_task(job: ClipJob, reference: ReferenceAnalysis | None) -> ClipOutcome:
    try:
        return _SCORER.score(job, reference)
    except Exception as exc:  # noqa: BLE001 - one bad clip never loses the others
        return ClipOutcome(None, error=_message(job.generated, exc))


def _message(source, exc: Exception) -> str:
    text = str(exc)
    where = describe(source)
    if isinstance(exc, MetricError) or (where and where in text):
        return text
    return f"{where or 'frames'}: {type(exc).__name__}: {text}"


class Runner:
    """Calls ``reference_task`` / ``clip_task`` on lists of arguments; results in input order."""

    def __init__(self, settings: EvalSettings, supplied: dict, workers: int, engine: str, ray_address: str | None):
        if engine not in ENGINES:
            raise MetricError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
        self.settings, self.supplied, self.workers, self.engine = settings, supplied, max(1, workers), engine
        self.ray_address = ray_address
        self._pool = self._actors = None
        self._ray_started = False

    def __enter__(self) -> Runner:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        if self.engine == "ray":
            self._start_ray(threads)
        elif self.workers > 1:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.settings, self.supplied, threads))  # fmt: skip
        else:
            _init_worker(self.settings, self.supplied, _current_threads())
        return self

    def _start_ray(self, threads: int) -> None:
        try:
            import ray
        except ImportError:
            raise MetricError("the ray engine needs Ray: pip install 'talkbench[ray]'") from None
        if not ray.is_initialized():
            if self.ray_address:
                ray.init(address=self.ray_address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
            self._ray_started = True
        env = {k: v for k, v in os.environ.items() if k.startswith("TALKBENCH_")}
        actor = ray.remote(num_cpus=1)(_RayWorker).options(runtime_env={"env_vars": env} if env else None)
        self._actors = [actor.remote(self.settings, self.supplied, threads) for _ in range(self.workers)]

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if self._actors is not None:
            import ray

            for a in self._actors:
                ray.kill(a)
            if self._ray_started:
                ray.shutdown()

    def map(self, fn: Callable, calls: list[tuple], progress: ProgressCallback, labels: Sequence[str]) -> list:
        """``fn(*args)`` for each call; ``progress(done, len(calls), labels[done - 1])`` after each
        result. A worker that dies (a crash in native code, killed for memory) costs only the
        calls it had: their results say so, the others stand."""
        if not calls:
            return []
        if self._actors is not None:
            import ray

            refs = [self._actors[i % len(self._actors)].call.remote(fn.__name__, *args) for i, args in enumerate(calls)]
            wait = ray.get
        elif self._pool is not None:
            refs = [self._pool.submit(fn, *args) for args in calls]
            wait = lambda future: future.result()  # noqa: E731
        else:
            refs, wait = calls, lambda args: fn(*args)  # noqa: E731
        out = []
        for args, ref in zip(calls, refs):
            try:
                out.append(wait(ref))
            except Exception as exc:  # noqa: BLE001 - BrokenProcessPool, RayActorError, ...
                out.append(lost(fn, args, f"the worker running it was lost ({type(exc).__name__}: {exc})"))
            progress(len(out), len(calls), labels[len(out) - 1])
        return out


def lost(fn: Callable, args: tuple, why: str):
    """The result of a task whose worker died."""
    if fn is reference_task:
        return ReferenceAnalysis(0, None, None, error=f"{describe(args[0]) or 'reference frames'}: {why}")
    return ClipOutcome(None, error=f"{describe(args[0].generated) or 'generated frames'}: {why}")


class _RayWorker:
    def __init__(self, settings: EvalSettings, supplied: dict, threads: int) -> None:
        _init_worker(settings, supplied, threads)

    def call(self, name: str, *args):
        return {"reference_task": reference_task, "clip_task": clip_task}[name](*args)


def _current_threads() -> int:
    return torch.get_num_threads()
