"""Every shipped preset: schema, citations, and commands that render with every placeholder
filled; the method list matches the papers' tables; the schema refuses broken presets."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from talkbench.baselines.external import all_presets, get_preset
from talkbench.baselines.external.preset import PLACEHOLDERS, Preset, PresetError, placeholders_in, render

HEX40 = re.compile(r"^[0-9a-f]{40}$")
# competitor rows of the papers' comparison tables (not the papers' own models, GT or the codec)
NOT_COMPETITORS = {"VQTalker", "FlowVQTalker", "GT", "H.264 Codec", "H.264"}
COMPARISON_TABLES = {"vqtalker:1": "vqtalker_table1_reconstruction_hdtf.csv",
                     "vqtalker:2": "vqtalker_table2_speech_driven.csv",
                     "flowvqtalker:1": "flowvqtalker_table1.csv"}
EXPECTED = {"SadTalker", "EAT", "PD-FGC", "AniTalker", "EDTalk", "EchoMimic", "FOMM", "DPE", "MTIA",
            "Vid2Vid", "LIA", "FADM", "LivePortrait", "EMOPortraits", "Wav2Lip", "PC-AVS", "IP-LAP",
            "EAMM", "EMMN"}


def dummy_values() -> dict[str, str]:
    return {name: f"/abs/{name}_value" for name in PLACEHOLDERS}


def test_one_valid_preset_per_method():
    presets = all_presets()
    assert {p.name for p in presets} == EXPECTED
    assert len(presets) == len(EXPECTED)


@pytest.mark.parametrize("preset", all_presets(), ids=lambda p: p.name)
def test_preset_cites_sources_and_renders_completely(preset: Preset):
    if not preset.code.public:
        assert preset.status == "reported-only" and not preset.steps and preset.code.note
        return
    assert HEX40.match(preset.code.commit) and preset.code.repository and preset.code.url
    assert preset.code.url == f"https://github.com/{preset.code.repository}"
    assert preset.code.sources and all(HEX40.match(s.commit) and s.path for s in preset.code.sources)
    assert preset.code.commit in {s.commit for s in preset.code.sources}  # the pin is a read file's commit
    assert preset.status == "runnable" and preset.steps and preset.output is not None
    assert preset.setup and any(preset.code.commit in line for line in preset.setup)  # set-up checks out the pin
    values = dummy_values()
    rendered = [render(t, values) for t in preset.templates()]
    for text in rendered:
        assert not placeholders_in(text), text
    for step in preset.steps:
        argv = [render(a, values) for a in step.run]
        assert argv[0] == values["python"]
        assert all(a for a in argv), argv
    # every input the commands use is materialised by the adapter in a declared format
    used = set().union(*(placeholders_in(t) for t in preset.templates()))
    for name in ("portrait", "audio", "driving_video", "driving_frames", "controls"):
        if name in used:
            assert getattr(preset.inputs, name) is not None
    if "reconstruction" in preset.tasks:
        assert {"driving_video", "driving_frames"} & used


def test_render_fills_and_escapes():
    assert render("{{\"a\": \"{clip_id}\"}}", {"clip_id": "x_1"}) == '{"a": "x_1"}'
    with pytest.raises(PresetError, match="no value for placeholder"):
        render("--audio {audio}", {"clip_id": "x"})


def test_tables_match_the_papers():
    from talkbench.leaderboard.paper import TABLES

    keys = {t.key for t in TABLES}
    by_table: dict[str, set[str]] = {}
    for t in TABLES:
        by_table[t.key] = {r["method"] for r in t.rows()}
    for p in all_presets():
        names = {p.name, *p.aliases}
        assert p.tables, p.name
        for key in p.tables:
            assert key in keys, (p.name, key)
            assert names & by_table[key], f"{p.name} is not a row of {key}"
    # and every competitor row of the comparison tables has a preset listing that table
    for key in COMPARISON_TABLES:
        for method in by_table[key] - NOT_COMPETITORS:
            preset = get_preset(method)
            assert key in preset.tables, (method, key)


def _base(**over):
    data = {"name": "X", "paper": {"title": "t"}, "tasks": ["speech-driven"],
            "code": {"public": True, "repository": "a/b", "commit": "1" * 40,
                     "sources": [{"path": "run.py", "commit": "1" * 40}]},
            "inputs": {"audio": {}},
            "steps": [{"run": ["{python}", "run.py", "{audio}"]}], "output": {}}
    data.update(over)
    return data


@pytest.mark.parametrize("change, message", [
    ({"steps": [{"run": ["{python}", "run.py", "{audoi}"]}]}, "unknown placeholder"),
    ({"output": None}, "output section"),
    ({"code": {"public": True, "repository": "a/b", "commit": "1" * 40}}, "cited source"),
    ({"code": {"public": False}}, "without public code"),
    ({"inputs": {}}, "inputs.audio"),
    ({"tasks": ["reconstruction"]}, "driving video"),
    ({"output": {"panel": {"cols": 2, "rows": 1, "index": 2}}}, "outside"),
    ({"tables": ["table2"]}, "vqtalker:2"),
    ({"surprise": 1}, "Extra inputs"),
])
def test_schema_refuses_broken_presets(change, message):
    from pydantic import ValidationError

    Preset.model_validate(_base())  # the base is valid
    with pytest.raises(ValidationError, match=message):
        Preset.model_validate(_base(**change))


def test_runnable_presets_join_the_method_registry(tmp_path):
    from talkbench.baselines.external import ExternalMethod
    from talkbench.baselines.registry import get_method, method_names, register_external_methods

    register_external_methods()
    assert register_external_methods() == []  # idempotent
    names = method_names()
    assert {"SadTalker", "LivePortrait", "Wav2Lip"} <= set(names) and "EMMN" not in names
    m = get_method("LivePortrait", repo=tmp_path, python="/usr/bin/python3")
    assert isinstance(m, ExternalMethod) and m.info.kind == "external" and m.info.resolution == 512
    assert m.info.tasks == ["reconstruction"] and "github.com/KwaiVGI/LivePortrait" in " ".join(m.info.links)


@pytest.mark.parametrize("preset", [p for p in all_presets() if p.status == "runnable"], ids=lambda p: p.name)
def test_adapter_plan_fills_every_placeholder(preset, sample_clips, tmp_path):
    """The adapter's own dry run (real input paths for a sample clip, nothing written or run)."""
    from talkbench.baselines.external import ExternalMethod
    from talkbench.baselines.method import Task

    clip = sample_clips[0]
    controls = tmp_path / "pose.npy"
    task = Task(kind=preset.tasks[0], clip_id=clip.id, reference=clip.video, frames=110,
                extra={"controls": controls} if preset.inputs.controls else {})
    plan = ExternalMethod(preset, tmp_path, python="/opt/method/bin/python").plan(task)
    text = json.dumps(plan)
    assert not placeholders_in(text.replace("{{", "").replace("}}", "")), text
    assert plan["steps"][0]["argv"][0] == "/opt/method/bin/python"
    assert all(step["cwd"].startswith(str(tmp_path)) for step in plan["steps"])
    for path in plan["inputs"].values():
        assert clip.id in path and "." not in path.split("/")[-2]  # no dots in the input folders
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_bitrates_are_table_7s():
    from talkbench.leaderboard.paper import table

    printed = {r["method"]: float(r["bitrate_kbps"]) for r in table("vqtalker", 7).rows()}
    for p in all_presets():
        names = [n for n in (p.name, *p.aliases) if n in printed]
        if "vqtalker:7" in p.tables:
            assert names and p.bitrate_kbps == printed[names[0]], p.name
            assert p.method_info().bitrate_kbps == p.bitrate_kbps
        else:
            assert p.bitrate_kbps is None


def test_an_emotion_placeholder_takes_the_clips_label_and_needs_one(sample_clips, tmp_path):
    """A method that takes a target emotion (EAT, EAMM …) gets the benchmark clip's label; on a
    benchmark without labels its plan fails naming the placeholder, never runs with a blank."""
    from talkbench.baselines.external import ExternalMethod
    from talkbench.baselines.method import Task

    preset = next(p for p in all_presets() if p.status == "runnable" and "speech-driven" in p.tasks)
    step = preset.steps[0]
    emotional = preset.model_copy(update={"steps": [step.model_copy(update={"run": [*step.run, "--emotion", "{emotion}"]})]
                                          + list(preset.steps[1:])})  # fmt: skip
    clip = sample_clips[0]
    task = Task(kind="speech-driven", clip_id=clip.id, reference=clip.video, frames=110, emotion="happy")
    plan = ExternalMethod(emotional, tmp_path, python="/opt/method/bin/python").plan(task)
    assert plan["steps"][0]["argv"][-2:] == ["--emotion", "happy"]
    with pytest.raises(PresetError, match=r"no value for placeholder\(s\) \{emotion\}"):
        ExternalMethod(emotional, tmp_path, python="/opt/method/bin/python").plan(replace(task, emotion=None))
