"""What stage 1 (tokenizer) and stage 2 (generator) training share: the distributed set-up,
config overrides and the batch size per process, the scalar log (CSV + TensorBoard), atomic
checkpoints, and one fit loop that drives a stage.

A stage (``Stage`` subclass: ``train.Trainer``, ``generator_train.GeneratorTrainer``) builds its
model and optimisers and implements ``train_step`` (all ranks, returns rank-averaged scalars),
``evaluate`` (a cheap loss on fixed data, every rank), ``validate`` (held-out metrics, rank 0
only), ``state_dict`` and ``load_state``. ``fit`` logs every ``log_every`` steps, evaluates every
``eval_every``, validates every ``validate_every`` (keeping ``checkpoints/best.pt`` by
``train.best_metric``) and checkpoints every ``checkpoint_every`` and at the last step.
"""

from __future__ import annotations

import copy
import csv
import datetime
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
import torch.distributed as dist
import yaml
from torch import nn

from talkbench import util
from talkbench.errors import TalkbenchError
from talkbench.vqtalker.inference import load_checkpoint

log = logging.getLogger(__name__)


class TrainingError(TalkbenchError):
    """A training run that cannot start or continue (no clips, bad checkpoint, …)."""


# ----------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(prepare_timeout_s: float | None = None) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): NCCL on GPUs, gloo on
    CPU. The collective timeout (``TALKBENCH_DIST_TIMEOUT_MIN``, default 60 minutes) covers the
    other ranks' wait while rank 0 runs held-out validation. Right after joining, before any
    rank's own work, every rank also creates the long group of ``preparing`` (timeout
    ``prepare_timeout_s``, default ``PREPARE_TIMEOUT_S``; pass ``prepare_timeout(config["train"])``):
    creating a group is itself a collective, so a rank that failed before a later, lazy creation
    would leave the others blocked in it for that whole timeout."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    timeout_s = _checked_timeout(PREPARE_TIMEOUT_S if prepare_timeout_s is None else prepare_timeout_s)
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        minutes = float(os.environ.get("TALKBENCH_DIST_TIMEOUT_MIN", "60"))
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=minutes))
    create_long_group(timeout_s)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def local_world_size() -> int:
    """Processes of this job on this node (torchrun's ``LOCAL_WORLD_SIZE``; 1 outside torchrun)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


PREPARE_TIMEOUT_S = 24 * 3600.0  # default train.prepare_timeout_s: preparing a large dataset takes hours
MAX_PREPARE_TIMEOUT_S = 30 * 24 * 3600.0  # far past any preparation, and far from timedelta's overflow


@dataclass(frozen=True)
class LongGroup:
    group: dist.ProcessGroup
    timeout_s: float


_long: LongGroup | None = None


def _checked_timeout(value) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds > 0:
        raise TrainingError(f"train.prepare_timeout_s={value!r} is not a positive number of seconds")
    if seconds > MAX_PREPARE_TIMEOUT_S:
        raise TrainingError(f"train.prepare_timeout_s={value!r} is more than {MAX_PREPARE_TIMEOUT_S:.0f} s "
                            f"(30 days): give a number of seconds up to that")
    return seconds


def prepare_timeout(train_config: dict) -> float:
    """``train.prepare_timeout_s``: how long ranks wait for each other's data preparation
    (positive, at most ``MAX_PREPARE_TIMEOUT_S``)."""
    return _checked_timeout(train_config.get("prepare_timeout_s", PREPARE_TIMEOUT_S))


def create_long_group(timeout_s: float = PREPARE_TIMEOUT_S) -> dist.ProcessGroup:
    """Create the gloo (CPU) group over all ranks whose collectives wait up to ``timeout_s``
    (kept for ``preparing``/``long_barrier``). A collective: every rank calls it at the same
    point, right after ``init_process_group`` (``init_distributed`` does); again with the same
    timeout, it returns the group it made."""
    global _long
    timeout_s = _checked_timeout(timeout_s)
    if _long is None or _long.timeout_s != timeout_s:
        _long = LongGroup(dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s)), timeout_s)
        log.info("preparation waits: gloo group with a %.0f s timeout (train.prepare_timeout_s)", timeout_s)
    return _long.group


def long_group(timeout_s: float | None = None) -> LongGroup:
    """The long group ``init_distributed`` created (never created here: a lazy creation is a
    collective that a rank which failed earlier never joins). ``timeout_s``, when given, must be
    the group's: the value the process group was joined with."""
    if _long is None:
        raise TrainingError("no long-timeout process group for the preparation waits: join with "
                            "training.init_distributed(prepare_timeout(config['train'])) (or call "
                            "training.create_long_group on every rank right after init_process_group)")
    if timeout_s is not None and _checked_timeout(timeout_s) != _long.timeout_s:
        raise TrainingError(f"train.prepare_timeout_s={timeout_s:g} s, but the process group was joined with "
                            f"{_long.timeout_s:g} s: pass the config's value to training.init_distributed")
    return _long


def long_barrier(info: DistInfo, what: str, failure: BaseException | None = None,
                 timeout_s: float | None = None) -> None:
    """Wait on the long group until every rank is here and share whether each failed: when any
    rank passes a ``failure`` (or one died), every rank raises ``TrainingError`` naming the ranks
    and their errors, instead of the others waiting until a timeout kills them. Without a
    process group, a ``failure`` is raised as it is. ``timeout_s``: see ``long_group``."""
    if not (info.enabled and dist.is_initialized()):
        if failure is not None:
            raise failure
        return
    long = long_group(timeout_s)
    mine = None if failure is None else f"{type(failure).__name__}: {failure}"
    reports: list[str | None] = [None] * info.world_size
    try:
        dist.all_gather_object(reports, mine, group=long.group)
    except RuntimeError as exc:  # gloo: a peer that died (connection closed) or the timeout passed
        raise TrainingError(
            f"{what}: rank {info.rank} lost the other ranks (one died, or they did not all finish within "
            f"train.prepare_timeout_s={long.timeout_s:g} s): {type(exc).__name__}: {exc}") from (failure or exc)
    failed = [(rank, report) for rank, report in enumerate(reports) if report is not None]
    if failed:
        raise TrainingError(f"{what} failed on " + "; ".join(f"rank {r}: {m}" for r, m in failed)) from failure


@contextmanager
def preparing(info: DistInfo, what: str, timeout_s: float | None = None) -> Iterator[None]:
    """A block the ranks run apart (rank 0 prepares for all, or each rank its shard), left
    together through ``long_barrier`` on the long group ``init_distributed`` created: the block
    may take hours, and an error in it on any rank is raised on every rank. Without a process
    group the block just runs. ``timeout_s``: see ``long_group``."""
    if not (info.enabled and dist.is_initialized()):
        yield
        return
    long_group(timeout_s)  # before the block: a missing group or another timeout is refused up front
    failure = None
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - reported to every rank by long_barrier, raised there
        failure = exc
    long_barrier(info, what, failure, timeout_s)


def finish_distributed(info: DistInfo) -> None:
    """Leave the process group together: a rank that tears down while another is still in a
    collective (e.g. the library quantizers' codebook sync) can abort at exit."""
    global _long
    if info.enabled and dist.is_initialized():
        dist.barrier()
        _long = None
        dist.destroy_process_group()


def default_device(info: DistInfo, device: str | torch.device | None = None) -> torch.device:
    """``device`` when given, else this rank's GPU when there is one, else the CPU."""
    if device is None:
        device = f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def unwrap(m: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (or ``m`` itself)."""
    return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m


def wrap_ddp(m: nn.Module, info: DistInfo, device: torch.device, **kwargs) -> nn.Module:
    if not info.enabled:
        return m
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(m, device_ids=ids, **kwargs)


def mean_over_ranks(terms: dict[str, torch.Tensor | float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """Scalars averaged over the ranks (one all-reduce on ``device``: NCCL reduces only GPU
    tensors), sorted by name."""
    names = sorted(terms)
    values = torch.tensor([float(terms[k]) for k in names], dtype=torch.float64, device=device)
    if info.enabled:
        dist.all_reduce(values)
        values /= info.world_size
    return dict(zip(names, values.tolist()))


# ----------------------------------------------------------------------------- config


def apply_overrides(config: dict, overrides: Iterable[str]) -> dict:
    """``section.key=value`` overrides (values parsed as YAML) on a copy of ``config``."""
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise TrainingError(f"override {item!r} is not KEY=VALUE (e.g. train.steps=100)")
        node = config
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return config


def per_process_batch(train_config: dict, world_size: int, grad_accum: int = 1) -> int:
    """Samples per process and micro-batch: ``train.global_batch`` (the whole job's batch per
    optimiser step) / (world_size × grad_accum), or, for configs without it, ``train.batch_size``
    (already per process)."""
    global_batch = train_config.get("global_batch")
    if global_batch is not None:
        global_batch, parts = int(global_batch), world_size * grad_accum
        if global_batch <= 0 or global_batch % parts:
            raise TrainingError(
                f"train.global_batch={global_batch} is not divisible by world_size ({world_size}) × "
                f"train.grad_accum ({grad_accum}) = {parts}: choose a multiple of {parts}")
        return global_batch // parts
    if train_config.get("batch_size") is None:
        raise TrainingError("the config sets neither train.global_batch nor train.batch_size")
    return int(train_config["batch_size"])


# ----------------------------------------------------------------------------- logging


class ScalarLog:
    """A run's scalars, a row per logged step: ``OUT/log.csv`` (appended across resumes) and
    TensorBoard under ``OUT/tensorboard`` when tensorboard is installed. Columns appear in the
    order first seen; a row with a new column (a validation metric) rewrites the CSV with the
    wider header, so earlier rows keep their values."""

    def __init__(self, out_dir: Path, fields: list[str]):
        self.out_dir, self.fields = Path(out_dir), list(fields)
        self._tb = None  # None: not opened yet; False: tensorboard is not installed
        self._header_read = False

    @property
    def path(self) -> Path:
        return self.out_dir / "log.csv"

    def _adopt_existing_header(self) -> None:
        self._header_read = True
        if self.path.is_file():
            with open(self.path, newline="") as fh:
                header = next(csv.reader(fh), [])
            self.fields = header + [f for f in self.fields if f not in header]

    def write(self, row: dict) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not self._header_read:
            self._adopt_existing_header()
        new_fields = [k for k in row if k not in self.fields]
        if new_fields:
            self.fields += new_fields
            if self.path.is_file():
                self._rewrite()
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))
            except ImportError:
                self._tb = False
        if self._tb:
            for k, v in row.items():
                if k not in ("step", "time") and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, row["step"])
            self._tb.flush()

    def drop_after(self, step: int) -> None:
        """Forget rows past ``step``: a run resumed from an earlier checkpoint logs them again."""
        if not self.path.is_file():
            return
        if not self._header_read:
            self._adopt_existing_header()
        self._rewrite(keep=lambda row: int(float(row["step"])) <= step)

    def _rewrite(self, keep: Callable[[dict], bool] = lambda row: True) -> None:
        with open(self.path, newline="") as fh:
            rows = [row for row in csv.DictReader(fh) if keep(row)]
        with util.atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)

    def close(self) -> None:
        if self._tb:
            self._tb.close()
        self._tb = None


# ----------------------------------------------------------------------------- checkpoints


def atomic_save(state: dict, path: Path) -> Path:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    with util.atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


# ----------------------------------------------------------------------------- stage + loop


class Stage:
    """One training stage; subclasses set ``checkpoint_format``, ``fields`` (log columns),
    ``defaults`` (log/checkpoint intervals) and implement the abstract methods."""

    checkpoint_format: str = ""
    defaults = {"log_every": 100, "checkpoint_every": 5000}
    fields: list[str] = []

    def __init__(self, config: dict, out_dir: str | Path, dist_info: DistInfo | None = None, device=None):
        self.config = config
        self.out_dir = Path(out_dir)
        self.dist = dist_info or DistInfo()
        self.device = default_device(self.dist, device)
        self.step = 0

    # -- stage-specific

    @property
    def model(self) -> nn.Module:
        raise NotImplementedError

    def train_step(self) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Scalars of a cheap held-out/fixed-data loss for the log row ({} when there is none)."""
        return {}

    def default_eval_every(self, log_every: int) -> int | None:
        """How often ``evaluate`` runs when neither the call nor ``train.eval_every`` says."""
        return None

    @property
    def validation_dir(self) -> Path:
        """``OUT/validation``: the run's validation folder, one ``step_NNNNNNN`` folder per
        validation and the shared references (the ``run_dir`` of ``validation``)."""
        return self.out_dir / "validation"

    def validate(self, out_dir: Path):
        """Held-out metrics (a ``validation.ValidationResult``) into ``out_dir``, run on rank 0
        only; None: no validation split. The training loop passes a folder of
        ``validation_dir``, whose other steps' renders may then be removed; any other folder
        leaves them."""
        return None

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state(self, ckpt: dict) -> None:
        raise NotImplementedError

    # -- shared

    def save(self, path: str | Path | None = None) -> Path:
        """``checkpoints/step_NNNNNNN.pt`` (or ``path``) and ``checkpoints/latest.pt``."""
        path = Path(path) if path else self.out_dir / "checkpoints" / f"step_{self.step:07d}.pt"
        state = {**self.state_dict(), "run_shape": self.run_shape()}
        atomic_save(state, path)
        if path.name != "latest.pt":
            atomic_save(state, path.parent / "latest.pt")
        return path

    def load(self, path: str | Path) -> None:
        """Resume from a checkpoint of this stage (weights, optimisers and step)."""
        ckpt = load_checkpoint(path, self.checkpoint_format)
        saved, now = ckpt.get("run_shape"), self.run_shape()
        if saved is not None and saved != now:
            log.warning("%s: saved by a run with %s, resumed with %s: the steps after %s draw other data than "
                        "the uninterrupted run would", path, saved, now, ckpt.get("step"))
        self.load_state(ckpt)
        self.on_resume()

    def on_resume(self) -> None:
        """Hook: drop anything built for the old step (a data iterator)."""

    def close(self) -> None:
        """Hook: release what training held (DataLoader worker processes)."""

    def run_shape(self) -> dict:
        """What the data stream of a step depends on besides (seed, step, rank); saved with
        every checkpoint, compared on resume."""
        return {"world_size": self.dist.world_size, "grad_accum": int(self.config["train"].get("grad_accum", 1))}

    def fit(self, steps: int | None = None, log_every: int | None = None, checkpoint_every: int | None = None,
            eval_every: int | None = None, validate_every: int | None = None,
            on_step: Callable[[int, dict], None] | None = None) -> list[dict]:
        """Train until ``self.step == steps``; returns the logged rows (the same on every rank,
        except that validation columns are only on rank 0)."""
        tc = self.config["train"]
        steps = int(steps if steps is not None else tc["steps"])
        log_every = int(log_every or tc.get("log_every") or self.defaults["log_every"])
        checkpoint_every = int(checkpoint_every or tc.get("checkpoint_every") or self.defaults["checkpoint_every"])
        eval_every = eval_every or tc.get("eval_every") or self.default_eval_every(log_every)
        validate_every = validate_every or tc.get("validate_every")
        return run_fit(self, steps, log_every, checkpoint_every, eval_every, validate_every, on_step)


def run_fit(stage: Stage, steps: int, log_every: int, checkpoint_every: int, eval_every: int | None,
            validate_every: int | None, on_step: Callable[[int, dict], None] | None = None) -> list[dict]:
    """The one training loop of both stages."""
    scalars = ScalarLog(stage.out_dir, ["step", "time", *stage.fields])
    if stage.dist.is_main:
        scalars.drop_after(stage.step)  # rows logged after the checkpoint a resumed run starts from
    best = None
    if validate_every:  # bad metric names fail here, on every rank, not at the first validation
        # here, not at the top: validation loads the metrics engine (cv2, scipy, skimage; seconds)
        from talkbench.vqtalker.best import BestCheckpoint
        from talkbench.vqtalker.validation import validation_settings

        tc = stage.config["train"]
        validation_settings(tc.get("validate_metrics"))
        best = BestCheckpoint(tc.get("best_metric", "ssim"), stage.out_dir)
    rows: list[dict] = []
    start = time.time()

    def emit(row: dict) -> None:
        if stage.dist.is_main:
            scalars.write(row)
        rows.append(row)

    if eval_every and stage.step == 0:
        emit({"step": 0, "time": 0.0, **stage.evaluate()})
    while stage.step < steps:
        terms = stage.train_step()
        step = stage.step
        if on_step:
            on_step(step, terms)
        last = step == steps
        do_eval = bool(eval_every) and (step % eval_every == 0 or last)
        do_validate = bool(validate_every) and step % validate_every == 0
        if step % log_every == 0 or last or do_eval or do_validate:
            row = {"step": step, "time": round(time.time() - start, 3), **terms}
            if do_eval:
                row.update(stage.evaluate())
            if do_validate:
                row.update(_validate(stage, best))
            emit(row)
        if stage.dist.is_main and (step % checkpoint_every == 0 or last):
            stage.save()
    scalars.close()
    stage.close()
    return rows


def _validate(stage: Stage, best) -> dict[str, float]:
    """Rank 0 scores the validation split while the other ranks wait at a barrier."""
    values: dict[str, float] = {}
    if stage.dist.is_main:
        try:
            result = stage.validate(stage.validation_dir / f"step_{stage.step:07d}")
            if result is not None:
                values = {f"val_{k}": float(v) for k, v in result.values.items()}
                if best is not None:
                    best.update(stage.step, result, lambda p: torch.save(stage.state_dict(), p))
        except Exception as exc:  # noqa: BLE001 - a failed validation costs its row, never the run
            log.error("validation at step %d failed: %s: %s", stage.step, type(exc).__name__, exc)
            values = {"val_error": 1.0}
    barrier(stage.dist)
    return values
