"""Engines run ``stages.process_clip`` over many clips and yield rows as clips finish; the
caller (the pipeline) writes the catalog. ``local``: a process pool (``workers`` processes;
1 = in this process). ``ray``: the same function as Ray tasks, on a cluster
(``address``) or a local Ray started with ``num_cpus``."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Iterator

from talkbench.datasets.sources import ClipSpec
from talkbench.datasets.stages import STAGES, BuildConfig, base_row, process_clip
from talkbench.errors import TalkbenchError
from talkbench.util import ProgressCallback

ENGINES = ("local", "ray")


# One OpenMP thread per worker, in every engine: CTranslate2's int8 language probabilities
# move in the 3rd decimal with OMP_NUM_THREADS, and a catalog must not depend on the engine
# or the worker count. (Ray sets the same for its 1-CPU tasks; we set it explicitly too.)
WORKER_ENV = {"OMP_NUM_THREADS": "1"}


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_S = 0.5  # the portable watchdog's period

# Set in each worker by _init_worker: a multiprocessing queue can only reach a spawned
# process when it starts, not as an argument of each task.
_events = None


def _init_worker(parent_pid: int, events=None) -> None:
    global _events
    die_with_parent(parent_pid)
    if events is not None:
        events.cancel_join_thread()  # a progress event lost at exit must never block the worker's exit
    _events = events
    os.environ.update(WORKER_ENV)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _run_task(task, spec: ClipSpec, cfg: BuildConfig) -> dict:
    return task(spec, cfg, _events)


def die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` (its parent) ends, however it ends (SIGKILL too):
    a killed build must not leave workers holding their models and going on with clips
    nobody will collect. On Linux the kernel sends SIGKILL on the parent's death
    (PR_SET_PDEATHSIG); everywhere, a daemon thread checks the parent pid twice a second."""
    if sys.platform.startswith("linux"):
        # Strictly the kernel watches the parent *thread* that started this process: the one
        # iterating LocalEngine.run, which outlives the pool.
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still ends the process, a little later
    if os.getppid() != parent_pid:  # the parent died before the kernel was told to watch it
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="talkbench-parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _crashed(spec: ClipSpec, cfg: BuildConfig, why: str) -> dict:
    row = base_row(spec, cfg)
    row.update(status="failed", stage=None, reason="error", error=why)
    return row


class StageProgress:
    """Per-clip stage events turned into per-stage counts: ``progress(done, total, stage)``
    where ``done`` is how many of the ``total`` clips are past ``stage`` (they entered a later
    stage, or finished, whether accepted or stopped). Every stage is announced at 0 first."""

    def __init__(self, progress: ProgressCallback, total: int, stages: tuple[str, ...] = STAGES):
        self.progress = progress
        self.total = total
        self.stages = stages
        self.order = {s: i for i, s in enumerate(stages)}
        self.done = [0] * len(stages)
        self.reached: dict[str, int] = {}  # clip -> how many stages it is past
        for stage in stages:
            progress(0, total, stage)

    def entered(self, clip_id: str, stage: str) -> None:
        """``clip_id`` entered ``stage``: the ones before it are done."""
        self._move(clip_id, self.order[stage])

    def finished(self, clip_id: str) -> None:
        """``clip_id`` has its row: no more work for it in any stage."""
        self._move(clip_id, len(self.stages))

    def _move(self, clip_id: str, upto: int) -> None:
        for j in range(self.reached.get(clip_id, 0), upto):
            self.done[j] += 1
            self.progress(self.done[j], self.total, self.stages[j])
        self.reached[clip_id] = max(upto, self.reached.get(clip_id, 0))


def _counted(rows: Iterator[dict], counter: StageProgress | None) -> Iterator[dict]:
    with contextlib.closing(rows):  # a caller that stops early stops the engine's workers at once
        for row in rows:
            if counter is not None:
                counter.finished(row["clip_id"])
            yield row


@contextlib.contextmanager
def worker_environment() -> Iterator[None]:
    """WORKER_ENV set while worker processes are spawned (they inherit it before any library
    loads), the parent's environment restored after."""
    saved = {k: os.environ.get(k) for k in WORKER_ENV}
    os.environ.update(WORKER_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class LocalEngine:
    name = "local"

    def __init__(self, workers: int = 2, task=process_clip):
        self.workers = max(0, int(workers))
        self.task = task  # a picklable (spec, cfg, events) -> row; the pipeline's stages by default

    def run(self, specs: Iterable[ClipSpec], cfg: BuildConfig,
            progress: ProgressCallback | None = None) -> Iterator[dict]:
        """Clips run in ``workers`` fresh (spawned) processes; ``workers=0`` runs them in this
        process (for debugging: language probabilities may then differ in the 3rd decimal).
        ``progress(done, total, stage)`` counts the clips past each stage (``StageProgress``)."""
        specs = list(specs)
        counter = StageProgress(progress, len(specs)) if progress else None
        if not specs:
            return
        on_stage = counter.entered if counter else None
        if self.workers == 0:
            events = _CallbackQueue(on_stage) if on_stage else None
            yield from _counted((self.task(spec, cfg, events) for spec in specs), counter)
            return
        with worker_environment():
            yield from _counted(self._pool(specs, cfg, on_stage), counter)

    def _pool(self, specs, cfg, on_stage) -> Iterator[dict]:
        """A worker that dies (a codec segfault, the OOM killer) breaks the whole pool and every
        clip in flight with it. Those clips are then run again one per fresh process, so only
        the clip that kills its worker again is marked failed; the others still land."""
        ctx = mp.get_context("spawn")
        broken: list[ClipSpec] = []
        yield from self._run_pool(specs, cfg, ctx, on_stage, min(self.workers, len(specs)), broken)
        for spec in broken:
            again: list[ClipSpec] = []
            yield from self._run_pool([spec], cfg, ctx, on_stage, 1, again)
            if again:
                yield _crashed(spec, cfg, "the worker process died while processing this clip (twice); "
                                          "re-run to retry")

    def _run_pool(self, specs, cfg, ctx, on_stage, workers: int, broken: list) -> Iterator[dict]:
        """Progress events travel on a plain queue of this pool (a Manager would be one more
        process to outlive a killed build; a fresh queue per pool, as a worker killed while
        writing may leave its lock held). The pool's workers die with this process
        (``die_with_parent``); when the caller stops early (Ctrl-C, an error, ``close()``),
        they are killed at once rather than left to finish their clips."""
        events = ctx.Queue() if on_stage else None
        before = {p.pid for p in mp.active_children()}
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(os.getpid(), events))
        completed = False
        try:
            futures = {pool.submit(_run_task, self.task, s, cfg): s for s in specs}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                _drain(events, on_stage)
                for fut in done:
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken.append(futures[fut])
            completed = True
        finally:
            _shut_down(pool, completed, before)
            if events is not None:
                events.close()


def _shut_down(pool: ProcessPoolExecutor, completed: bool, before: set[int]) -> None:
    """Wait for a pool that ran to the end; one left early (an error, a caller that stopped
    reading) is killed at once, its running tasks with it."""
    if completed:
        pool.shutdown(wait=True)
    else:
        pool.shutdown(wait=False, cancel_futures=True)
        _kill_new_children(before)


def _kill_new_children(before: set[int]) -> None:
    """SIGKILL this process's multiprocessing children started since ``before`` was taken."""
    workers = [p for p in mp.active_children() if p.pid not in before]
    for p in workers:
        p.kill()
    for p in workers:
        p.join(timeout=5)


class _CallbackQueue:
    """In-process stand-in for a queue: ``put`` calls the callback at once."""

    def __init__(self, callback):
        self.callback = callback

    def put(self, item) -> None:
        self.callback(*item)


def _drain(events, on_stage) -> None:
    if events is None:
        return
    while True:
        try:
            clip_id, stage = events.get_nowait()
        except (queue.Empty, EOFError, OSError):
            return
        on_stage(clip_id, stage)


class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        _require_ray()
        self.address = address
        self.num_cpus = num_cpus

    def run(self, specs: Iterable[ClipSpec], cfg: BuildConfig,
            progress: ProgressCallback | None = None) -> Iterator[dict]:
        """Rows as Ray tasks finish. Stage events do not travel across the cluster: a clip
        moves every stage's count of ``progress`` when its row comes back."""
        specs = list(specs)
        counter = StageProgress(progress, len(specs)) if progress else None
        if specs:
            yield from _counted(self._run(specs, cfg), counter)

    def _run(self, specs: list[ClipSpec], cfg: BuildConfig) -> Iterator[dict]:
        ray = import_ray()
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


def map_tasks(fn, items: Iterable, engine: str = "local", workers: int = 2,
              ray_address: str | None = None) -> Iterator:
    """``fn(item)`` for every item, yielded as each finishes (in any order), on the engines'
    workers: ``local`` spawned processes (``workers``; 0 = in this process) set up as the
    build's (one OpenMP thread, die with this process), or Ray tasks. ``fn`` is a picklable
    module-level function that reports its own failures in what it returns; an exception it
    raises (or a dead worker) ends the map with that exception."""
    items = list(items)
    if not items:
        return
    if engine == "ray":
        yield from _ray_map(fn, items, ray_address, workers)
        return
    if engine != "local":
        raise TalkbenchError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if workers <= 0:
        for item in items:
            yield fn(item)
        return
    before = {p.pid for p in mp.active_children()}
    with worker_environment():  # the pool spawns its workers as work is submitted
        yield from _pool_map(fn, items, workers, before)


def _pool_map(fn, items: list, workers: int, before: set[int]) -> Iterator:
    pool = ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=mp.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(), None))
    completed = False
    try:
        pending = {pool.submit(fn, item) for item in items}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
        completed = True
    finally:
        _shut_down(pool, completed, before)


def _require_ray() -> None:
    """Ray is an optional extra and heavy to import: check that it is installed without loading it."""
    if importlib.util.find_spec("ray") is None:
        raise TalkbenchError("the ray engine needs Ray: pip install 'talkbench[ray]'")


def import_ray():
    """The ray module; an installed Ray that fails to import is a ``TalkbenchError`` too."""
    try:
        import ray
    except ImportError as exc:
        raise TalkbenchError(f"the ray engine cannot import Ray ({exc}): pip install 'talkbench[ray]'") from None
    return ray


def _ray_map(fn, items: list, address: str | None, num_cpus: int) -> Iterator:
    _require_ray()
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=1, runtime_env={"env_vars": WORKER_ENV})(fn)
        pending = [task.remote(item) for item in items]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        if started:
            ray.shutdown()


def get_engine(name: str, workers: int = 2, ray_address: str | None = None):
    if name == "local":
        return LocalEngine(workers)
    if name == "ray":
        return RayEngine(ray_address, num_cpus=workers)
    raise TalkbenchError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
