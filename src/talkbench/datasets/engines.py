"""Engines run ``stages.process_clip`` over many clips and yield rows as clips finish; the
caller (the pipeline) writes the catalog. ``local``: a process pool (``workers`` processes;
1 = in this process). ``ray``: the same function as Ray tasks, on a cluster
(``address``) or a local Ray started with ``num_cpus``."""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Iterator

from talkbench.datasets.sources import ClipSpec
from talkbench.datasets.stages import BuildConfig, base_row, process_clip
from talkbench.errors import TalkbenchError

ENGINES = ("local", "ray")


# One OpenMP thread per worker, in every engine: CTranslate2's int8 language probabilities
# move in the 3rd decimal with OMP_NUM_THREADS, and a catalog must not depend on the engine
# or the worker count. (Ray sets the same for its 1-CPU tasks; we set it explicitly too.)
WORKER_ENV = {"OMP_NUM_THREADS": "1"}


def _init_worker() -> None:
    os.environ.update(WORKER_ENV)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _crashed(spec: ClipSpec, cfg: BuildConfig, why: str) -> dict:
    row = base_row(spec, cfg)
    row.update(status="failed", stage=None, reason="error", error=why)
    return row


class LocalEngine:
    name = "local"

    def __init__(self, workers: int = 2, task=process_clip):
        self.workers = max(0, int(workers))
        self.task = task  # a picklable (spec, cfg, events) -> row; the pipeline's stages by default

    def run(self, specs: Iterable[ClipSpec], cfg: BuildConfig, on_stage=None) -> Iterator[dict]:
        """Clips run in ``workers`` fresh (spawned) processes; ``workers=0`` runs them in this
        process (for debugging: language probabilities may then differ in the 3rd decimal).
        ``on_stage(clip_id, stage)`` is called as clips enter each stage."""
        specs = list(specs)
        if not specs:
            return
        if self.workers == 0:
            events = _CallbackQueue(on_stage) if on_stage else None
            for spec in specs:
                yield self.task(spec, cfg, events)
            return
        import multiprocessing as mp

        saved = {k: os.environ.get(k) for k in WORKER_ENV}
        os.environ.update(WORKER_ENV)  # inherited by the spawned workers before any library loads
        try:
            yield from self._pool(specs, cfg, mp, on_stage)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def _pool(self, specs, cfg, mp, on_stage) -> Iterator[dict]:
        """A worker that dies (a codec segfault, the OOM killer) breaks the whole pool and every
        clip in flight with it. Those clips are then run again one per fresh process, so only
        the clip that kills its worker again is marked failed; the others still land."""
        ctx = mp.get_context("spawn")
        manager = ctx.Manager() if on_stage else None
        events = manager.Queue() if manager else None
        broken: list[ClipSpec] = []
        try:
            yield from self._run_pool(specs, cfg, ctx, events, on_stage, min(self.workers, len(specs)), broken)
            for spec in broken:
                again: list[ClipSpec] = []
                yield from self._run_pool([spec], cfg, ctx, events, on_stage, 1, again)
                if again:
                    yield _crashed(spec, cfg, "the worker process died while processing this clip (twice); "
                                              "re-run to retry")
        finally:
            if manager is not None:
                manager.shutdown()

    def _run_pool(self, specs, cfg, ctx, events, on_stage, workers: int, broken: list) -> Iterator[dict]:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
            futures = {pool.submit(self.task, s, cfg, events): s for s in specs}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                _drain(events, on_stage)
                for fut in done:
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken.append(futures[fut])


class _CallbackQueue:
    """In-process stand-in for a queue: ``put`` calls the callback at once."""

    def __init__(self, callback):
        self.callback = callback

    def put(self, item) -> None:
        self.callback(*item)


def _drain(events, on_stage) -> None:
    if events is None:
        return
    import queue

    while True:
        try:
            clip_id, stage = events.get_nowait()
        except (queue.Empty, EOFError, OSError):
            return
        on_stage(clip_id, stage)


class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise TalkbenchError("the ray engine needs Ray: pip install 'talkbench[ray]'") from None
        self.address = address
        self.num_cpus = num_cpus

    def run(self, specs: Iterable[ClipSpec], cfg: BuildConfig, on_stage=None) -> Iterator[dict]:
        """Rows as Ray tasks finish (``on_stage`` is not reported across the cluster)."""
        import ray

        started = False
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.num_cpus or os.cpu_count(), include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            started = True
        try:
            task = ray.remote(num_cpus=1, max_retries=1, runtime_env={"env_vars": WORKER_ENV})(process_clip)
            refs = {task.remote(s, cfg): s for s in specs}
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        yield ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a lost task must not stop the run
                        yield _crashed(refs[ref], cfg, f"ray task failed: {exc}")
        finally:
            if started:
                ray.shutdown()


def get_engine(name: str, workers: int = 2, ray_address: str | None = None):
    if name == "local":
        return LocalEngine(workers)
    if name == "ray":
        return RayEngine(ray_address, num_cpus=workers)
    raise TalkbenchError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
