"""One answer to "is higher better?": the metrics' declarations, which the rankings, the papers'
tables and the site all ask through ``leaderboard.directions``."""

from __future__ import annotations

import pytest

from talkbench.leaderboard import directions, ranking
from talkbench.leaderboard.directions import column_direction, higher_is_better, measured_as, metric_direction
from talkbench.leaderboard.paper import TABLES, table
from talkbench.metrics.registry import available_metrics, get_metric

# the arrows the papers print beside their metric columns (↑ higher is better, ↓ lower)
PRINTED = {"ssim": True, "lpips": False, "csim": True, "lmd": False, "cpbd": True, "fid": False, "fvd": False,
           "msi": True, "utilization_pct": True, "m_lmd": False, "f_lmd": False, "sync_conf": True,
           "acc_emo_pct": True, "lip_sync": True, "visual_appeal": True, "prompt_following": True,
           "naturalness": True}


def test_every_value_takes_its_metrics_declaration():
    for name in available_metrics():
        spec = get_metric(name)
        for value in spec.values:
            assert higher_is_better(value) == spec.higher_is_better_for(value), value
    assert not higher_is_better("lse_d") and higher_is_better("lse_c") and not higher_is_better("bitrate_kbps")
    assert ranking.higher_is_better is directions.higher_is_better  # the rankings ask the same function


def test_paper_columns_agree_with_the_papers_arrows():
    """Where a metric measures a paper column, its declaration is the paper's direction; a column
    declares one of its own only where nothing measures it."""
    seen = set()
    for t in TABLES:
        for column in t.metrics:
            measured = measured_as(t, column.key)
            if measured is None:
                assert column.higher_is_better is not None, (t.key, column.key)
            else:
                assert column.higher_is_better is None, (t.key, column.key)  # one source per column
                assert metric_direction(measured) is not None
            assert column_direction(t, column) == PRINTED[column.key], (t.key, column.key)
            assert higher_is_better(column.key) == PRINTED[column.key], column.key
            seen.add(column.key)
    assert seen == set(PRINTED)
    assert measured_as(table("flowvqtalker", 1), "sync_conf") == "lse_c"
    assert measured_as(table("vqtalker", 2), "csim") == "csim_arcface"
    assert measured_as(table("vqtalker", 8), "lip_sync") is None


def test_a_column_without_metric_or_declaration_is_an_error():
    from talkbench.leaderboard.paper import Column

    with pytest.raises(ValueError, match="no metric measures it"):
        column_direction(table("vqtalker", 8), Column("applause", "A", "metric"))
