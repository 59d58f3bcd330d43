"""Which way a value is better, answered once for the rankings, the papers' tables and the site.

- A value a registered metric reports: the metric's declaration
  (``metrics.registry.value_higher_is_better``; LSE-D is the other way from LSE-C).
- A paper column: the direction of the value that measures it under its table's protocol
  (``metrics.paper_protocols``: CSIM is ``csim_arcface``, Sync_conf is ``lse_c``, Util.(%) is
  ``utilisation``).
- Only a column that nothing measures (the user study's 1–5 scores) keeps the direction its
  table declares (``paper.Column.higher_is_better``).
"""

from __future__ import annotations

from talkbench.leaderboard.paper import TABLES, Column, PaperTable
from talkbench.metrics.settings import SettingsError


def metric_direction(value: str) -> bool | None:
    """True / False when a registered metric reports ``value`` (or is named so); None otherwise."""
    # the registry imports every metric module (torch): loaded when a direction is first asked
    from talkbench.metrics.registry import value_higher_is_better

    try:
        return value_higher_is_better(value)
    except SettingsError:  # no metric declares it (a paper column's own name)
        return None


def measured_as(t: PaperTable, key: str) -> str | None:
    """The talkbench value that measures column ``key`` of ``t``: the one its table's protocol
    names, else a metric value of the column's own name; None when nothing measures it."""
    from talkbench.metrics.paper_protocols import protocol_for_table  # the metric registry (torch)

    protocol = protocol_for_table(t.key)
    if protocol is not None and key in protocol.columns:
        return protocol.columns[key].value
    return key if metric_direction(key) is not None else None


def column_direction(t: PaperTable, column: Column) -> bool:
    """Whether higher is better in a metric column of a paper table."""
    value = measured_as(t, column.key)
    direction = metric_direction(value) if value is not None else None
    if direction is not None:
        return direction
    if column.higher_is_better is None:
        raise ValueError(f"{t.key} column {column.key!r}: no metric measures it and the table declares no direction")
    return column.higher_is_better


def higher_is_better(name: str) -> bool:
    """A value name's direction (``ssim``, ``lse_d``), or a paper column's (``csim``,
    ``sync_conf``, ``lip_sync``)."""
    direction = metric_direction(name)
    if direction is not None:
        return direction
    for t in TABLES:
        for column in t.metrics:
            if column.key == name:
                return column_direction(t, column)
    return True  # a name nothing declares: none is stored today; ranked as the papers' default
