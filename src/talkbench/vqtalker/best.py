"""The best checkpoint of a training run: ``OUT/checkpoints/best.pt``, the checkpoint of the
validation run (``validation.ValidationResult``) with the best value of ``train.best_metric``
so far, the metric's direction taken from the metrics registry, recorded in
``OUT/checkpoints/best.json`` and read back on resume.

    best = BestCheckpoint("lmd", run_dir)
    best.update(step, result, save=lambda path: torch.save(state, path))

``best.json``: ``{"metric", "value_name", "value", "step", "higher_is_better", "checkpoint",
"values", "validation"}`` (the configured metric, the value name it was read from, its value,
the step, its direction, ``best.pt``, all values of that validation run, and the path of its
``validation.json``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from talkbench import util
from talkbench.metrics.registry import available_metrics, get_metric
from talkbench.vqtalker.validation import RESULT_FILE, ValidationError, ValidationResult

log = logging.getLogger(__name__)

BEST_CHECKPOINT = "best.pt"
BEST_RECORD = "best.json"


def metric_direction(metric: str) -> tuple[str, tuple[str, ...], bool]:
    """(registered metric, the value names that stand for ``metric``, higher is better), from
    the metrics registry. ``metric`` is a value name (``lmd``, ``csim_arcface``) or a metric
    name (``csim``: whichever of its values the run gave)."""
    names = available_metrics()
    if metric in names:
        spec = get_metric(metric)
        values = (metric,) if metric in spec.values else spec.values
        return metric, values, spec.higher_is_better_for(values[0])
    for name in names:
        spec = get_metric(name)
        if metric in spec.values:
            return name, (metric,), spec.higher_is_better_for(metric)
    known = sorted({v for n in names for v in (n, *get_metric(n).values)})
    raise ValidationError(f"train.best_metric {metric!r}: not a metric or metric value; known: {', '.join(known)}")


@dataclass
class BestRecord:
    metric: str  # as configured
    value_name: str  # the value it was read from
    value: float
    step: int
    higher_is_better: bool


class BestCheckpoint:
    """Keeps ``OUT/checkpoints/best.pt`` and its ``best.json`` record (see the module doc)."""

    def __init__(self, metric: str, out_dir: str | Path):
        self.metric = metric
        self.registered, self.value_names, self.higher_is_better = metric_direction(metric)
        self.dir = Path(out_dir) / "checkpoints"
        self.path = self.dir / BEST_CHECKPOINT
        self.record_path = self.dir / BEST_RECORD
        self.best: BestRecord | None = self._read()

    def _read(self) -> BestRecord | None:
        if not self.record_path.is_file():
            return None
        try:
            data = json.loads(self.record_path.read_text())
            record = BestRecord(**{k: data[k] for k in BestRecord.__dataclass_fields__})
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationError(f"{self.record_path}: not a best-checkpoint record ({exc}); delete it to start afresh") from None
        if record.metric != self.metric:
            log.warning("%s: kept by %s, now by %s: the next validation replaces it", self.record_path, record.metric, self.metric)
            return None
        return record

    def value_of(self, result: ValidationResult) -> tuple[str, float] | None:
        """The (value name, value) ``metric`` stands for in ``result``; None when it has none."""
        for name in self.value_names:
            value = result.values.get(name)
            if value is not None and math.isfinite(value):
                return name, float(value)
        return None

    def is_better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best.value if self.higher_is_better else value < self.best.value

    def update(self, step: int, result: ValidationResult, save: Callable[[Path], None]) -> bool:
        """When ``result`` beats the best so far: ``save(path)`` writes the checkpoint to a
        temporary path that then replaces best.pt, and best.json records it. Returns whether
        it did; a result without the metric (skipped this time) changes nothing."""
        got = self.value_of(result)
        if got is None:
            log.warning("validation at step %d has no %s (%s): best checkpoint unchanged", step, self.metric,
                        result.skipped.get(self.registered, "no value"))  # fmt: skip
            return False
        name, value = got
        if not self.is_better(value):
            return False
        with util.atomic_path(self.path) as tmp:
            save(tmp)
        self.best = BestRecord(self.metric, name, value, int(step), self.higher_is_better)
        record = {**asdict(self.best), "checkpoint": BEST_CHECKPOINT, "values": result.values,
                  "validation": str(Path(result.out_dir) / RESULT_FILE)}
        util.atomic_write_text(self.record_path, json.dumps(record, indent=2, default=str) + "\n")
        return True
