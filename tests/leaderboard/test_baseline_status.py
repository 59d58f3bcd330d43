"""The competitor status rows the demo and ``talkbench baselines list`` show: what each
preset's code can do, per paper table, with the tables' tasks read from ``leaderboard.paper``."""

from __future__ import annotations

from talkbench.baselines.external import all_presets, get_preset
from talkbench.leaderboard.baseline_status import TABLE_ORDER, baseline_status_rows
from talkbench.leaderboard.paper import TABLES, table


def test_status_rows_for_the_demo():
    rows = baseline_status_rows()
    status = {r.method: r.status for r in rows}
    assert status["EMMN"] == "reported only"
    assert all(s == "runnable preset" for m, s in status.items() if m != "EMMN")
    vid2vid = next(r for r in rows if r.method == "Vid2Vid")
    assert not vid2vid.official and "re-implementation" in vid2vid.note
    assert {t for r in rows for t in r.tables} >= {"vqtalker:1", "vqtalker:2", "flowvqtalker:1"}
    assert get_preset("EDTalker").name == "EDTalk" and get_preset("emoportrait").name == "EMOPortraits"
    # AniTalker runs speech-driven, but its Table 1 (reconstruction) row can only be quoted
    anitalker = dict(next(r for r in rows if r.method == "AniTalker").by_table)
    assert anitalker["vqtalker:2"] == "runnable preset" and anitalker["vqtalker:1"] == "reported only"


def test_each_table_status_follows_that_tables_task():
    """A runnable method is runnable for a table exactly when it does that paper table's task."""
    rows = {r.method: r for r in baseline_status_rows()}
    assert len(rows) == len(all_presets())
    keys = {t.key for t in TABLES}
    checked = 0
    for p in all_presets():
        for key, shown in rows[p.name].by_table:
            assert key in keys, (p.name, key)
            if p.status == "runnable":
                paper, number = key.split(":")
                runs_it = table(paper, number).task in p.tasks
                assert (shown == "runnable preset") == runs_it, (p.name, key, shown)
                checked += 1
    assert checked >= 10


def test_rows_come_in_table_order():
    rows = baseline_status_rows()
    first = [min((TABLE_ORDER.get(t, 9) for t in r.tables), default=9) for r in rows]
    assert first == sorted(first) and first[0] == 0
    assert table("vqtalker", 1).task == "reconstruction" and table("vqtalker", 2).task == "speech-driven"
