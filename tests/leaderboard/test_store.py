"""The DuckDB store: migrations, provenance, all-or-nothing runs, concurrent writers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import duckdb
import pytest

from talkbench.leaderboard.store import (
    SCHEMA_VERSION, AggregateValue, ClipValue, Run, Store, StoreError, migrations,
)


def _run(method="m", benchmark="sample", version="1", **kw) -> Run:
    return Run(method=method, benchmark=benchmark, benchmark_version=version, task="speech-driven",
               provenance="measured", protocol={"resolution": 256, "seed": 0}, **kw)


def test_fresh_store_is_at_the_latest_schema_with_every_table(store):
    assert SCHEMA_VERSION == len(migrations()) >= 2
    assert store.schema_version() == SCHEMA_VERSION
    assert store.counts() == {t: 0 for t in ("benchmarks", "clips", "methods", "runs", "clip_results", "aggregates")}
    names = {r["table_name"] for r in store.query("SELECT table_name FROM information_schema.tables")}
    assert {"complete_runs", "clip_values", "language_means", "group_means", "schema_migrations"} <= names


def test_migrates_an_old_file_forward_and_refuses_a_newer_one(tmp_path):
    path = tmp_path / "old.duckdb"
    s = Store.__new__(Store)
    s.path, s.lock_path, s.timeout = path, path.with_name(path.name + ".lock"), 10
    assert s.migrate(target=1) == 1
    names = {r["table_name"] for r in s.query("SELECT table_name FROM information_schema.tables")}
    assert "runs" in names and "group_means" not in names
    assert Store(path).schema_version() == SCHEMA_VERSION  # opening migrates 1 -> latest
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_migrations VALUES (99, 'future', now())")
    con.close()
    with pytest.raises(StoreError, match="schema version 99 was written by a newer talkbench"):
        Store(path)


def test_reported_entries_carry_paper_table_and_printed_text(store):
    from talkbench.leaderboard.reported import load_reported

    added = load_reported(store)
    assert added == 73  # every row of the shipped tables except Table 6 (dataset statistics)
    assert load_reported(store) == 0  # idempotent
    runs = store.runs(provenance="reported", source_paper="VQTalker", source_table="1")
    assert [r["method"] for r in runs][:2] == ["H.264 Codec", "FOMM"]
    assert {r["provenance"] for r in store.runs()} == {"reported"}
    cells = store.aggregates([runs[-1]["run_id"]])[runs[-1]["run_id"]]
    assert cells[("all", "ssim")] == {"value": 0.874, "text": "0.874", "ci": None}  # reported: no interval
    t3 = store.runs(source_paper="VQTalker", source_table="3")
    vq = store.aggregates([t3[0]["run_id"]])[t3[0]["run_id"]]
    assert vq[("all", "bitrate_kbps")] == {"value": 1.0, "text": "<1", "ci": None}
    assert store.methods()["FOMM"]["kind"] == "reported"


def test_run_with_per_clip_values_shows_in_the_views(store):
    from talkbench.leaderboard.benchmarks import get_benchmark

    spec = get_benchmark("sample")
    store.upsert_benchmark(spec)
    value = {c.id: 0.5 if c.family == "Indo-European" else 0.25 for c in spec.clips}
    n_ie = sum(v == 0.5 for v in value.values())
    assert 0 < n_ie < len(spec.clips)  # both groups are present
    values = [ClipValue(cid, "ssim", v) for cid, v in value.items()]
    # a run of the version just stored: the views find its clips' families by (name, version)
    rid = store.add_run(_run(version=spec.version), values, [AggregateValue("all", "fid", 12.5)])
    means = store.group_means([rid])[rid]
    assert means[("indo_european", "ssim")] == pytest.approx(0.5)
    assert means[("non_indo_european", "ssim")] == pytest.approx(0.25)
    assert means[("all", "ssim")] == pytest.approx((n_ie * 0.5 + (len(spec.clips) - n_ie) * 0.25) / len(spec.clips))
    langs = {r["language"]: r["value"] for r in store.language_means([rid])}
    by_language: dict[str, list[float]] = {}
    for c in spec.clips:
        by_language.setdefault(c.language, []).append(value[c.id])
    assert langs == pytest.approx({lang: sum(v) / len(v) for lang, v in by_language.items()})
    assert store.runs()[0]["provenance"] == "measured"


def test_changed_clip_list_under_the_same_version_is_refused(store):
    from talkbench.leaderboard.benchmarks import clip_list_sha256, get_benchmark

    spec = get_benchmark("sample")
    store.upsert_benchmark(spec)
    store.upsert_benchmark(spec)  # same list: fine
    fewer = spec.model_copy(update={"clips": spec.clips[:3], "clip_list_sha256": clip_list_sha256(spec.clips[:3])})
    with pytest.raises(StoreError, match="a changed clip list needs a new version"):
        store.upsert_benchmark(fewer)


def test_a_failure_half_way_through_a_run_leaves_nothing(store):
    def values():
        yield ClipValue("de_001", "ssim", 0.9)
        yield ClipValue("tr_001", "ssim", 0.8)
        raise RuntimeError("evaluation interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        store.add_run(_run(), values())
    assert store.counts()["runs"] == 0 and store.counts()["clip_results"] == 0
    assert store.add_run(_run(), [ClipValue("de_001", "ssim", 0.9)])  # the store still works


def test_duplicate_run_id_is_refused_without_replace(store):
    run = _run()
    store.add_run(run, [ClipValue("a", "ssim", 1.0)])
    with pytest.raises(StoreError, match="already stored"):
        store.add_run(run, [ClipValue("a", "ssim", 0.0)])
    store.add_run(run, [ClipValue("a", "ssim", 0.5)], replace=True)
    assert store.query("SELECT value FROM clip_results")[0]["value"] == 0.5


WRITER = textwrap.dedent("""
    import sys
    from talkbench.leaderboard.store import Store, Run, ClipValue
    store = Store(sys.argv[1])
    for i in range(int(sys.argv[3])):
        run = Run(method=sys.argv[2], benchmark="sample", benchmark_version="1", task="speech-driven",
                  provenance="measured", protocol={"i": i})
        store.add_run(run, [ClipValue(f"clip{k}", "ssim", k / 10) for k in range(10)])
""")


def test_two_processes_writing_at_once_both_land(tmp_path):
    path = tmp_path / "lb.duckdb"
    Store(path)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, "15"],
                              stderr=subprocess.PIPE, text=True) for name in ("alpha", "beta")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    store = Store(path)
    per_method = {r["method"]: r["n"] for r in store.query("SELECT method, count(*) AS n FROM runs GROUP BY method")}
    assert per_method == {"alpha": 15, "beta": 15}
    assert store.counts()["clip_results"] == 300


def test_lock_timeout_names_the_file(tmp_path):
    import fcntl

    store = Store(tmp_path / "lb.duckdb", timeout=0.3)
    with open(store.lock_path, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(StoreError, match="lb.duckdb: still locked by another talkbench process"):
            store.counts()


LOADER = textwrap.dedent("""
    import sys
    from talkbench.leaderboard.store import Store
    from talkbench.leaderboard.reported import load_reported
    print(load_reported(Store(sys.argv[1])))
""")


def test_two_processes_loading_reported_rows_add_each_once(tmp_path):
    path = tmp_path / "lb.duckdb"
    procs = [subprocess.Popen([sys.executable, "-c", LOADER, str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(int(out))
    assert sorted(outs) == [0, 73]
    assert Store(path).counts()["runs"] == 73


def test_add_missing_runs_skips_stored_runs_and_stores_each_method_once(store):
    from talkbench.baselines.method import MethodInfo

    def item(i: int, method: str):
        run = Run(
            method=method, benchmark="hdtf-test", benchmark_version="paper", task="speech-driven",
            provenance="reported", protocol={"paper": "P"}, run_id=f"r{i}")
        return run, [AggregateValue("all", "ssim", 0.5 + i / 10, f"0.{5 + i}")], MethodInfo(name=method, kind="reported")

    assert store.add_missing_runs([item(0, "Alpha"), item(1, "Alpha"), item(2, "Beta")]) == 3
    assert store.add_missing_runs([item(1, "Alpha"), item(3, "Gamma")]) == 1  # r1 is stored already
    assert sorted(store.methods()) == ["Alpha", "Beta", "Gamma"]
    assert store.name_holder("ALPHA") == ("Alpha", "reported")
    assert {r["run_id"] for r in store.runs()} == {"r0", "r1", "r2", "r3"}
    assert store.aggregates(["r3"])["r3"][("all", "ssim")]["text"] == "0.8"
