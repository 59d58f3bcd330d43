"""``build_dataset``: manifest -> specs -> engine -> catalog, with progress and a summary.

Re-running skips clips whose outcome is final (accepted / rejected) and retries 'failed'
ones; a run killed at any point and re-run ends with the same catalog as one uninterrupted
run (rows are keyed by clip id; clip files are written atomically before their row)."""

from __future__ import annotations

from contextlib import closing, contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from talkbench.clip import Clip
from talkbench.datasets.catalog import CATALOG_NAME, BuildSummary, Catalog, CatalogRow, summarise
from talkbench.datasets.engines import get_engine
from talkbench.datasets.sources import ClipSpec, check_build_options, load_source, select
from talkbench.datasets.sources.mnte import mnte_report
from talkbench.datasets.stages import STAGES, BuildConfig
from talkbench.errors import TalkbenchError
from talkbench.util import ProgressCallback


class BuildError(TalkbenchError):
    """A build that cannot go on in its output folder as asked."""


MIN_FACE_PX = 512  # the paper's rule
MEAD_MIN_FACE_PX = 256  # MEAD is evaluated at 256x256 and its front faces are about that size (docs/datasets/mead.md)


def build_dataset(
    source: str,
    manifest,
    out_dir: str | Path,
    *,
    engine: str = "local",
    workers: int = 2,
    ray_address: str | None = None,
    limit: int | None = None,
    split: str | None = None,
    view: str | None = None,
    languages: list[str] | None = None,
    seed: int = 0,
    min_face_px: int | None = None,
    min_seconds: float = 3.0,
    check_language: bool | None = None,
    require_audio: bool | None = None,
    lid_engine: str = "faster-whisper",
    lid_model: str = "base",
    cookies: str | None = None,
    retries: int = 3,
    backoff: float = 2.0,
    rate_limit: int | None = None,
    keyint: int | None = None,
    force: bool = False,
    console: Console | None = None,
    progress: bool | ProgressCallback = True,
    specs: list[ClipSpec] | None = None,
) -> BuildSummary:
    """Build (or resume) a dataset in ``out_dir``; returns the catalog summary.

    ``source`` is ``hdtf | voxceleb | vfhq | mnte | mead | files``; ``manifest`` its manifest
    path (for ``files``: a folder or list of video files; for ``mead``: the download's root
    folder, and ``view`` the camera view, front by default; the view is a build setting like
    the others). ``min_face_px`` defaults to 512, 256 for MEAD, and is recorded in every row.
    ``check_language`` defaults to True for MNTE (the paper's rule) and False elsewhere;
    ``require_audio`` to False for VFHQ only (its released clips have no sound; the paper uses
    it for the first, video-only training stage). ``keyint`` is the keyframe interval (frames)
    the clips are encoded with (None: x264's default, 250); a short one, e.g. 25, makes training
    loaders that seek (``media.read_frames_at``) decode far fewer frames per read.

    ``progress``: True draws one bar per stage on ``console`` (stderr by default), False
    nothing; a ``ProgressCallback`` gets ``(done, total, stage)`` as clips get past each stage.
    """
    source = source.lower()
    out_dir = Path(out_dir)
    if keyint is not None and (isinstance(keyint, bool) or not isinstance(keyint, int) or keyint < 1):
        raise BuildError(f"--keyint {keyint!r}: the keyframe interval must be a positive whole number of frames")
    if view is not None and source != "mead":
        raise BuildError(f"a camera view is a MEAD option; source {source!r} has none")
    if min_face_px is None:
        min_face_px = MEAD_MIN_FACE_PX if source == "mead" else MIN_FACE_PX
    check_build_options(source, min_seconds=min_seconds, min_face_px=min_face_px,
                        check_language=check_language)  # MNTE's 3 s, 512 px and Whisper check
    view = view or "front"
    if specs is None:
        options = {"view": view, "split": split} if source == "mead" else {}
        specs = load_source(source, manifest, **options)
    specs = select(specs, limit=limit, split=split, languages=languages, seed=seed)
    cfg = BuildConfig(
        out_dir=out_dir,
        min_face_px=min_face_px,
        min_seconds=min_seconds,
        check_language=(source == "mnte") if check_language is None else check_language,
        require_audio=(source != "vfhq") if require_audio is None else require_audio,
        lid_engine=lid_engine,
        lid_model=lid_model,
        lid_threads=1,  # one thread per worker: results must not depend on the engine (engines.py)
        cookies=cookies,
        retries=retries,
        backoff=backoff,
        rate_limit=rate_limit,
        keyint=keyint,
    )
    params = cfg.params() | ({"view": view} if source == "mead" else {})
    with Catalog(out_dir) as cat:
        if not force:
            _check_same_settings(out_dir, cat.meta().get("params"), params)
        cat.set_meta("source", source)
        cat.set_meta("manifest", [str(m) for m in manifest] if isinstance(manifest, (list, tuple)) else str(manifest))
        cat.set_meta("params", params)
        _remove_stale_temp_files(out_dir)
        done = set() if force else cat.finished_ids()
        todo = [s for s in specs if s.clip_id not in done]
        wanted_ids = {s.clip_id for s in specs}
        eng = get_engine(engine, workers=workers, ray_address=ray_address)
        shown = stage_bars(console or Console(stderr=True)) if progress is True else nullcontext(progress or None)
        # closing: an error or Ctrl-C here stops the engine's workers at once (engines.py)
        with shown as on_progress, closing(eng.run(todo, cfg, progress=on_progress)) as finished:
            for row in finished:  # the stages' row (a dict) becomes a typed row here
                cat.upsert(CatalogRow.from_dict(row))
        rows = [r for r in cat.records() if r.clip_id in wanted_ids]
    summary = summarise(rows)
    if source == "mnte":
        summary.mnte = mnte_report(rows)
    summary.catalog = str(out_dir / CATALOG_NAME)
    summary.skipped = len(specs) - len(todo)
    summary.engine = engine
    summary.min_face_px = min_face_px
    return summary


@contextmanager
def stage_bars(console: Console) -> Iterator[ProgressCallback]:
    """One rich bar per stage on ``console`` while the block runs: a ``ProgressCallback``
    for ``build_dataset(progress=...)``."""
    with Progress(
        TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    ) as bar:
        tasks = {s: bar.add_task(s, total=None) for s in STAGES}

        def update(done: int, total: int | None, stage: str) -> None:
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _check_same_settings(out_dir: Path, stored: dict | None, wanted: dict) -> None:
    """Resuming with other settings would keep clips built under the old ones beside new ones
    in one catalog that claims a single set of settings: refuse, and say what differs."""
    if not stored:
        return
    # A setting missing from an older catalog's params (e.g. keyint) had the default None then.
    differ = ", ".join(f"{k}: {stored.get(k)!r} -> {wanted.get(k)!r}"
                       for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k))
    if not differ:
        return
    raise BuildError(f"{out_dir / CATALOG_NAME}: built with other settings ({differ}); re-run with the "
                       "same settings to resume, use --force to rebuild every clip, or choose another --out")


def specs_from_clips(clips: list[Clip]) -> list[ClipSpec]:
    """``talkbench.clip.Clip`` records (e.g. the sample corpus) as whole-file specs."""
    return [
        ClipSpec(clip_id=c.id, dataset=c.dataset, source=str(Path(c.video).resolve()), language=c.language or None)
        for c in clips
    ]


def build_clips(clips: list[Clip], out_dir: str | Path, **kwargs) -> BuildSummary:
    """``build_dataset`` over local ``Clip`` records, e.g.
    ``build_clips(load_sample_corpus(), out, min_face_px=256, check_language=True)``."""
    clips = list(clips)
    return build_dataset("files", [str(c.video) for c in clips], out_dir, specs=specs_from_clips(clips), **kwargs)


def _remove_stale_temp_files(out_dir: Path) -> None:
    """Half-written clips of a killed run (``media.write_video`` writes ``.<stem>.*.mp4`` and
    renames). Safe: the open catalog is the lock, so no other build writes here now."""
    clips = out_dir / "clips"
    if clips.is_dir():
        for tmp in clips.glob(".*.mp4"):
            tmp.unlink(missing_ok=True)


def summary_tables(summary: BuildSummary) -> list[Table]:
    stages = Table("stage", "entered", "passed", "rejected", "failed", title="clips per stage")
    for s in summary.stages:
        stages.add_row(s.stage, str(s.entered), str(s.passed), str(s.rejected), str(s.failed))
    reasons = Table("reason", "stage", "clips", "meaning", title="clips per reason")
    for code, r in summary.reasons.items():
        reasons.add_row(code, r.stage, str(r.count), r.meaning)
    totals = Table("clips", "accepted", "rejected", "failed", "languages (accepted)", title="totals")
    langs = ", ".join(f"{k}:{v}" for k, v in summary.languages.items()) or "-"
    totals.add_row(str(summary.clips), str(summary.accepted), str(summary.rejected), str(summary.failed), langs)
    tables = [totals, stages] + ([reasons] if summary.reasons else [])
    if summary.mnte is not None:  # the curator's view: what each MNTE language still lacks
        mnte = Table("language", "accepted", "still needed", "rejected candidates (reason)",
                     title="MNTE: 5 clips per language")
        for lang, r in summary.mnte.items():
            rejected = ", ".join(f"{cid} ({why})" for cid, why in r["rejected"].items()) or "-"
            mnte.add_row(lang, str(len(r["accepted"])), str(r["missing"]), rejected)
        tables.append(mnte)
    return tables
