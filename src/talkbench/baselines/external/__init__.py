"""External baselines: competitor methods run from their own checkouts (presets + the generic
subprocess adapter), or brought in from their released videos (grids and per-clip folders).

- ``preset``: the preset schema and the shipped ``presets/*.yaml`` (one per method).
- ``adapter``: ``ExternalMethod``, a ``Method`` that runs a preset's steps as subprocesses and
  normalises the output (``normalise``).
- ``import_grid``: split a COLSxROWS comparison video into per-panel videos.
- ``import_dir``: map a folder of per-clip videos onto a benchmark and write a submission.

Which of them can be run, imported or only quoted, per paper table:
``talkbench.leaderboard.baseline_status.baseline_status_rows()``.

``talkbench.baselines.registry.register_external_methods()`` puts the runnable presets in the
method registry.
"""

from talkbench.baselines.external.adapter import ExternalMethod, ExternalMethodError
from talkbench.baselines.external.preset import Preset, PresetError, all_presets, get_preset

__all__ = [
    "ExternalMethod", "ExternalMethodError", "Preset", "PresetError", "all_presets", "get_preset",
]

