"""Run an external method over a benchmark's clips and leave a submission folder
(``submission.yaml`` + ``videos/<clip_id>.mp4``) that ``talkbench submit`` accepts.

The per-clip logs (the method's stdout and stderr, the commands, exit codes, timings and the
normalisation record) go beside the submission in ``<out>-logs/``: the submission itself may
only hold the metadata and the videos.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from talkbench import media
from talkbench.baselines.external.adapter import ExternalMethod, ExternalMethodError
from talkbench.baselines.external.import_dir import write_submission_meta
from talkbench.baselines.method import Task
from talkbench.util import ProgressCallback


@dataclass
class RunSummary:
    out: str
    logs: str
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def logs_dir_for(out: Path) -> Path:
    return out.parent / f"{out.name}-logs"


def run_benchmark(method: ExternalMethod, tasks: list[Task], out: str | Path,
                  keep_going: bool = False, progress: ProgressCallback | None = None) -> RunSummary:
    """Generate every task into ``out/videos`` and write ``out/submission.yaml``.

    Stops at the first failing clip (the error names the clip, the command and the log)
    unless ``keep_going``; then every failure is collected and no ``submission.yaml`` is
    written while clips are missing, so an incomplete folder is never mistaken for a result.
    ``progress(done, total, clip_id)`` is called before each clip.
    """
    out = Path(out)
    logs = logs_dir_for(out)
    method.log_dir = logs
    summary = RunSummary(out=str(out), logs=str(logs))
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    kinds = {t.kind for t in tasks}
    if len(kinds) != 1:
        raise ExternalMethodError(f"one run is one task kind; got {sorted(kinds)}")
    side = None
    for i, task in enumerate(tasks):
        if progress:
            progress(i, len(tasks), task.clip_id)
        try:
            path = method.generate(task, videos / f"{task.clip_id}.mp4")
        except ExternalMethodError as exc:
            if not keep_going:
                raise
            summary.failed[task.clip_id] = str(exc)
            continue
        summary.done.append(task.clip_id)
        rec = method.records.get(task.clip_id)
        if rec and rec.normalised:
            summary.warnings += [f"{task.clip_id}: {w}" for w in rec.normalised.warnings]
        side = side or media.probe(path).width
    (logs / "runs.json").write_text(
        json.dumps({cid: r.to_dict() for cid, r in method.records.items()}, indent=2, default=str),
        encoding="utf-8")
    if not summary.failed and side:
        p = method.preset
        write_submission_meta(
            out, method.info, kinds.pop(), side,
            description=f"{p.name} run by talkbench from {p.code.repository}@{(p.code.commit or '')[:12]} "
                        f"(preset talkbench.baselines.external/{p.name})")
    return summary
