"""Method names: one key per name however spelled, held by the first submitter's key, claimed in
the run's own transaction (so racing writers cannot both land), and a failing submit leaves no
store behind."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from talkbench.baselines.method import MethodInfo
from talkbench.baselines.registry import register_external_methods
from talkbench.leaderboard.evaluate import EvaluationError, check_submission_name, default_settings, submit
from talkbench.leaderboard.names import (
    KEY_ENV, NameTakenError, SubmitterKey, SubmitterKeyError, load_submitter_key, name_key, reserved_names,
)
from talkbench.leaderboard.store import ClipValue, Run, Store, StoreError

ALICE = SubmitterKey("alice-secret-key-0123456789")
MALLORY = SubmitterKey("mallory-secret-key-987654321")


def _run(method: str) -> Run:
    return Run(method=method, benchmark="sample", benchmark_version="1", task="speech-driven",
               provenance="measured", protocol={"seed": 0})


def _info(name: str, **extra) -> MethodInfo:
    return MethodInfo(name=name, kind="submission", authors=["A. Lice"], contact="alice@example.org", **extra)


def _submission(valid_submission: Path, root: Path, **meta) -> Path:
    sub = root / "sub"
    shutil.copytree(valid_submission, sub, dirs_exist_ok=True)
    data = yaml.safe_load((valid_submission / "submission.yaml").read_text())
    (sub / "submission.yaml").write_text(yaml.safe_dump(data | meta))
    return sub


# -- normalisation ----------------------------------------------------------------------------

@pytest.mark.parametrize("a, b", [
    ("Hostile-Test", "HostileTest"),
    ("Sad-Talker", "SadTalker"),
    ("Race.Same", "Race_Same"),
    ("S\u0430dTalker", "SadTalker"),                      # Cyrillic а
    ("\u0395\u039cO Talker", "EMO talker"),                # Greek Ε, Μ
    ("\uff33\uff41\uff44\uff34\uff41\uff4c\uff4b\uff45\uff52", "sadtalker"),  # full-width
    ("Sadtalk\u00e9r", "SadTalker"),                       # an accent
    ("Sad\u200bTalker", "SadTalker"),                      # a zero-width space
    ("H.264", "h-264"),
    ("SadTaIker", "SadTalker"),                            # a capital I for an l
    ("FIowVQTalker", "FlowVQTalker"),
    ("EM0", "EMO"),                                        # a zero for an O
    ("VQ1", "VQl"),
])
def test_names_that_read_alike_share_one_key(a, b):
    assert name_key(a) == name_key(b)


def test_names_that_differ_keep_their_own_keys():
    assert name_key("SadTalker") == "sadtalker"
    assert name_key("SadTalker2") != name_key("SadTalker")
    assert name_key("EMOPortrait") != name_key("EMOPortraits")
    assert name_key("VQ2") != name_key("VQZ")  # only i/l/1/| and 0/o are folded
    assert name_key("模型") == "模型"  # letters of other scripts are kept, not dropped


# -- submitter keys ---------------------------------------------------------------------------

def test_a_submitter_key_comes_from_a_file_or_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "key"
    path.write_text("alice-secret-key-0123456789\n")
    assert load_submitter_key(path).owner == ALICE.owner
    assert ALICE.owner.startswith("submitter:") and "alice" not in ALICE.owner and "alice" not in repr(ALICE)
    monkeypatch.setenv(KEY_ENV, "mallory-secret-key-987654321")
    assert load_submitter_key().owner == MALLORY.owner
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(SubmitterKeyError, match=r"needs a submitter key \(--key-file or \$TALKBENCH_SUBMITTER_KEY\)"
                                                r".*secrets.token_urlsafe"):
        load_submitter_key()
    path.write_text("short\n")
    with pytest.raises(SubmitterKeyError, match=rf"{path} \(--key-file\): a submitter key needs at least 16 "
                                                r"characters \(it has 5\)"):
        load_submitter_key(path)


# -- ownership in the store -------------------------------------------------------------------

def test_a_name_belongs_to_the_first_submitters_key(store):
    store.add_run(_run("MyTalker"), [ClipValue("de_001", "ssim", 0.5)], method=_info("MyTalker"), owner=ALICE.owner)
    for name in ("MyTalker", "my-talker", "MYTALKER"):
        with pytest.raises(NameTakenError, match=r"is taken by a submitted method \('MyTalker'\) under another "
                                                 r"submitter key.*nothing was stored"):
            store.add_run(_run(name), [ClipValue("de_001", "ssim", 0.1)],
                          method=MethodInfo(name=name, kind="submission", authors=["M. Allory"],
                                            contact="mallory@example.org"), owner=MALLORY.owner)
    with pytest.raises(StoreError, match="'MyTalker' needs its submitter's key"):
        store.add_run(_run("MyTalker"), method=_info("MyTalker"))
    assert store.methods()["MyTalker"]["contact"] == "alice@example.org"
    assert [r["method"] for r in store.runs()] == ["MyTalker"]
    # the same key: a new run, and it may update its own metadata; but not respell the name
    store.add_run(_run("MyTalker"), method=_info("MyTalker", description="v2"), owner=ALICE.owner)
    assert store.methods()["MyTalker"]["description"] == "v2"
    with pytest.raises(NameTakenError, match=r"\('MyTalker'\): your own, so submit under that exact spelling"):
        store.add_run(_run("my-talker"), method=_info("my-talker"), owner=ALICE.owner)
    assert len(store.runs()) == 2 and store.name_holder("MY.TALKER") == ("MyTalker", ALICE.owner)
    # a bare run (no method description) under the name needs the key too
    with pytest.raises(NameTakenError, match=r"'my-talker' is held by a submitted method \('MyTalker'\)"):
        store.add_run(_run("my-talker"), [ClipValue("de_001", "ssim", 0.9)])
    store.add_run(_run("MyTalker"), owner=ALICE.owner)
    assert len(store.runs()) == 3


def test_talkbench_names_are_reserved_in_every_store(store):
    assert store.name_holder("sad-talker") == ("SadTalker", "external")
    assert store.name_holder("FlowVQTalker") == ("FlowVQTalker", "reported")
    assert store.name_holder("Ground Truth") == ("ground-truth", "builtin")
    for name, holder in (("Sad-Talker", "built-in or external method"), ("S\u0430dTalker", "built-in or external"),
                         ("flow_vq_talker", "reported method"), ("GT", "built-in or external")):
        with pytest.raises(NameTakenError, match=holder):
            store.add_run(_run(name), method=_info(name), owner=ALICE.owner)
    assert store.counts()["runs"] == 0
    # talkbench's own writers share their names: a built-in run of VQTalker, a reported row of it
    store.add_run(_run("vqtalker"), method=MethodInfo(name="vqtalker", kind="builtin"))
    store.add_run(_run("VQTalker"), method=MethodInfo(name="VQTalker", kind="reported"))


def test_a_registered_preset_stays_external_whatever_ran_first(tmp_path):
    """The CLI puts runnable presets in the method registry; the reserved names must not then
    call them built-in (the holder depended on which test ran first)."""
    register_external_methods()
    reserved_names.cache_clear()
    try:
        assert Store(tmp_path / "r.duckdb").name_holder("sad-talker") == ("SadTalker", "external")
    finally:
        reserved_names.cache_clear()


def test_talkbenchs_own_rows_load_under_a_name_a_submitter_holds(store):
    """A later talkbench may reserve a name a submitter already holds: the papers' rows still
    load, and the name stays the submitter's."""
    store.add_run(_run("Hostile-Test"), method=_info("Hostile-Test"), owner=ALICE.owner)
    store.add_run(_run("HostileTest"), method=MethodInfo(name="HostileTest", kind="reported"))
    assert store.name_holder("hostiletest") == ("Hostile-Test", ALICE.owner)
    assert len(store.runs()) == 2


def test_the_early_check_refuses_before_any_store_exists(tmp_path):
    with pytest.raises(EvaluationError, match=r"sub: method name 'Sad-Talker' is reserved for a built-in or "
                                              r"external method \('SadTalker'\); choose another name"):
        check_submission_name("sub", "Sad-Talker", None, ALICE)
    with pytest.raises(EvaluationError, match="'---' has no letters or digits"):
        check_submission_name("sub", "---", None, ALICE)
    check_submission_name("sub", "Hostile-Test", None, ALICE)


def test_the_store_refuses_a_second_row_for_one_key(store):
    """The primary key is the authority, not the read before it."""
    store.add_run(_run("Hostile-Test"), method=_info("Hostile-Test"), owner=ALICE.owner)
    with duckdb.connect(str(store.path)) as con:
        with pytest.raises(duckdb.ConstraintException):
            con.execute("INSERT INTO method_names VALUES (?, 'HostileTest', ?, now())",
                        [name_key("HostileTest"), MALLORY.owner])


def test_methods_stored_before_keys_are_held_by_no_key(tmp_path):
    path = tmp_path / "old.duckdb"
    old = Store.__new__(Store)
    old.path, old.lock_path, old.timeout = path, path.with_name(path.name + ".lock"), 10
    assert old.migrate(target=3) == 3
    with old.transaction() as con:  # what a version-3 talkbench wrote: two spellings, both stored
        for i, name in enumerate(("Race.Same", "Race_Same")):
            con.execute("INSERT INTO methods VALUES (?, 'submission', NULL, NULL, '[]', NULL, NULL, '{}')", [name])
            run = _run(name)
            run.created_at = run.created_at.replace(year=2020 + i)
            old._insert_run(con, run, (), (), replace=False)
    store = Store(path)
    assert store.name_holder("race same") == ("Race.Same", "unkeyed")  # the earlier run's spelling
    with pytest.raises(NameTakenError, match="stored before submitter keys existed"):
        store.add_run(_run("Race.Same"), method=_info("Race.Same"), owner=ALICE.owner)


RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from talkbench.baselines.method import MethodInfo
    from talkbench.leaderboard.names import NameTakenError, SubmitterKey
    from talkbench.leaderboard.store import ClipValue, Run, Store

    db, name, secret, go = sys.argv[1:]
    key = SubmitterKey(secret)
    store = Store(db)
    assert store.name_holder(name) is None  # what the early check reads: free, for both
    print("checked", flush=True)
    while not Path(go).exists():
        time.sleep(0.005)
    run = Run(method=name, benchmark="sample", benchmark_version="1", task="speech-driven",
              provenance="measured", protocol={"seed": 0})
    try:
        store.add_run(run, [ClipValue(f"clip{k}", "ssim", k / 100) for k in range(200)],
                      method=MethodInfo(name=name, kind="submission", contact=name), owner=key.owner)
    except NameTakenError as exc:
        print("refused", exc, flush=True)
    else:
        print("stored", flush=True)
""")


def test_two_writers_of_one_name_at_once_store_exactly_one(tmp_path):
    db, go = tmp_path / "lb.duckdb", tmp_path / "go"
    Store(db)
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(db), name, key.secret, str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, key in (("Race.Same", ALICE), ("Race_Same", MALLORY))]
    for p in procs:
        assert p.stdout.readline() == "checked\n", p.stderr.read()
    go.touch()
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outcomes.append(out.split()[0])
    assert sorted(outcomes) == ["refused", "stored"]
    store = Store(db)
    winner = ["Race.Same", "Race_Same"][outcomes.index("stored")]
    assert [r["method"] for r in store.runs()] == [winner]
    assert [m for m, info in store.methods().items() if info["kind"] == "submission"] == [winner]
    assert store.query("SELECT count(*) AS n FROM clip_results")[0]["n"] == 200
    assert store.name_holder("race-same")[0] == winner


# -- through submit and the CLI ---------------------------------------------------------------

def test_a_submission_cannot_take_over_a_submitted_name(valid_submission, tmp_path, mini_spec, store):
    settings = default_settings(("ssim",))
    sub = _submission(valid_submission, tmp_path, method="Hostile-Test", contact="alice@example.org")
    with pytest.raises(SubmitterKeyError, match="sub: a submission needs a submitter key"):
        submit(sub, mini_spec, store, settings=settings)
    first = submit(sub, mini_spec, store, settings=settings, key=ALICE)
    for name in ("Hostile-Test", "HostileTest"):
        (sub / "submission.yaml").write_text(yaml.safe_dump(
            yaml.safe_load((sub / "submission.yaml").read_text()) | {"method": name, "contact": "mallory@example.org"}))
        with pytest.raises(EvaluationError, match=rf"sub: method name '{name}' is taken by a submitted method "
                                                  r"\('Hostile-Test'\) under another submitter key"):
            submit(sub, mini_spec, store, settings=settings, key=MALLORY)
    assert store.methods()["Hostile-Test"]["contact"] == "alice@example.org"
    assert [r["run_id"] for r in store.runs()] == [first]
    (sub / "submission.yaml").write_text(yaml.safe_dump(
        yaml.safe_load((sub / "submission.yaml").read_text()) | {"method": "Hostile-Test", "contact": "a2@example.org"}))
    second = submit(sub, mini_spec, store, settings=settings, key=ALICE)
    assert {r["run_id"] for r in store.runs()} == {first, second}
    assert store.methods()["Hostile-Test"]["contact"] == "a2@example.org"


def test_a_failing_submit_creates_no_store(tmp_path, monkeypatch):
    from talkbench.cli import app

    monkeypatch.setenv(KEY_ENV, ALICE.secret)
    db = tmp_path / "new" / "lb.duckdb"
    sub = tmp_path / "sub"
    (sub / "videos").mkdir(parents=True)  # no submission.yaml
    runner = CliRunner()
    result = runner.invoke(app, ["submit", str(sub), "--benchmark", "sample", "--store", str(db)])
    assert "submission.yaml: missing" in str(result.exception)  # main() prints it as one line, exit 2
    monkeypatch.delenv(KEY_ENV)
    result = runner.invoke(app, ["submit", str(sub), "--benchmark", "sample", "--store", str(db)])
    assert isinstance(result.exception, SubmitterKeyError)
    assert not db.exists() and not db.with_name("lb.duckdb.lock").exists() and not db.parent.exists()


def test_site_file_names_keep_apart_what_the_store_keeps_apart():
    """``name_slug`` (the site's ``methods/<slug>.html``) is the readable ASCII name, and two
    names with different keys never share a file; names in another script get their key's hash."""
    from talkbench.leaderboard.names import name_slug

    assert [name_slug(n) for n in ("ground-truth", "h264", "H.264 Codec", "SadTalker")] == \
        ["ground-truth", "h264", "h-264-codec", "sadtalker"]
    names = [n for n, _ in reserved_names()] + ["口型", "表情", "Ünïcode", "Unicode2"]
    by_slug: dict[str, set[str]] = {}
    for n in names:
        by_slug.setdefault(name_slug(n), set()).add(name_key(n))
    assert all(len(keys) == 1 for keys in by_slug.values()), {s: k for s, k in by_slug.items() if len(k) > 1}
    assert name_slug("口型") != name_slug("表情") and name_slug("口型").startswith("method-")
