"""External baselines: competitor methods run from their own checkouts (presets + the generic
subprocess adapter), or brought in from their released videos (grids and per-clip folders).

- ``preset``: the preset schema and the shipped ``presets/*.yaml`` (one per method).
- ``adapter``: ``ExternalMethod``, a ``Method`` that runs a preset's steps as subprocesses and
  normalises the output (``normalise``).
- ``import_grid``: split a COLSxROWS comparison video into per-panel videos.
- ``import_dir``: map a folder of per-clip videos onto a benchmark and write a submission.
- ``status``: ``baseline_status_rows()`` — runnable / import only / reported only, per table.
"""

from talkbench.baselines.external.adapter import ExternalMethod, ExternalMethodError
from talkbench.baselines.external.preset import Preset, PresetError, all_presets, get_preset
from talkbench.baselines.external.status import StatusRow, baseline_status_rows

__all__ = [
    "ExternalMethod", "ExternalMethodError", "Preset", "PresetError", "StatusRow",
    "all_presets", "baseline_status_rows", "get_preset", "register_external_methods",
]


def register_external_methods() -> list[str]:
    """Put every runnable preset in the method registry, so that
    ``get_method("SadTalker", repo=..., python=...)`` returns an ``ExternalMethod``. Safe to call
    more than once; returns the names registered by this call."""
    from functools import partial

    from talkbench.baselines.method import MethodError, register_method

    added = []
    for preset in all_presets():
        if preset.status != "runnable":
            continue
        try:
            register_method(preset.name, partial(ExternalMethod, preset))
        except MethodError:
            continue  # already registered
        added.append(preset.name)
    return added
