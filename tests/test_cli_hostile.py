"""Hostile command lines: every command group given bad options and paths, run as the
``talkbench`` console script runs (``run_guarded`` around the app). Each must end in a message
that names the bad value, a non-zero exit and no traceback, having stored and written nothing;
``talkbench eval`` must never end silently with no value; names taken from files must not be
able to forge output lines."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import typer
from click.testing import CliRunner, Result

from talkbench.cli import app
from talkbench.cli.common import printable, run_guarded

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "talkbench" / "samples" / "en_001.mp4"
UNCREATABLE = "/proc/talkbench-hostile/x.duckdb"  # /proc takes no new files, even from root
KEY = "k" * 43  # a submitter key long enough to pass, so submit reaches the option checked


class Guarded:
    """The console script: ``talkbench.cli.main`` is ``run_guarded(app)`` on the command line."""

    name = "talkbench"

    def main(self, args=(), prog_name=None, **extra) -> None:
        run_guarded(app, list(args))


def talkbench(*args: str) -> Result:
    return CliRunner().invoke(Guarded(), [str(a) for a in args])


def _flat(text: str) -> str:
    """Output with rich's boxes and line wrapping undone, to find a message whatever the width."""
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", text))


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty working directory with a file and a folder to misuse; the default leaderboard
    store points into it, so anything a command stores or writes would show up here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TALKBENCH_LEADERBOARD", str(tmp_path / "default.duckdb"))
    monkeypatch.setenv("TALKBENCH_SUBMITTER_KEY", KEY)
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "adir.duckdb").mkdir()
    return tmp_path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


S = str(SAMPLE)
# (command line, what the message must say); "{tmp}" is the working directory.
BAD = [
    # eval: every option checked before any clip is read
    (["eval", "-g", S, "-m", "ssim,foo"], "unknown metric 'foo'"),
    (["eval", "-g", S, "--identity", "foo"], "unknown identity backend 'foo'"),
    (["eval", "-g", S, "--face-backend", "foo"], "unknown face backend 'foo'"),
    (["eval", "-g", S, "--csim-reference", "foo"], "unknown CSIM reference 'foo'"),
    (["eval", "-g", S, "--csim-stride", "0"], "csim-frame-stride must be at least 1, got 0"),
    (["eval", "-g", S, "--fid-stride", "-3"], "fid-frame-stride must be at least 1, got -3"),
    (["eval", "-g", S, "--workers", "0"], "'--workers'"),
    (["eval", "-g", S, "--engine", "foo"], "unknown --engine 'foo'"),
    (["eval", "-g", S, "--ray-address", "10.0.0.1:6379"], "--ray-address 10.0.0.1:6379 is for --engine ray"),
    (["eval", "-g", S, "--emotion", "grumpy"], "unknown --emotion 'grumpy'"),
    (["eval", "-g", S, "--protocol", "foo"], "unknown protocol 'foo'"),
    (["eval", "-g", "missing.mp4"], "missing.mp4: --generated does not exist"),
    (["eval", "-g", S, "-r", "missing.mp4"], "missing.mp4: --reference does not exist"),
    # submit, score, leaderboard, tables: nothing stored, no store created
    (["submit", "{tmp}", "-b", "sample", "--metrics", "ssim,foo"], "unknown metric 'foo'"),
    (["submit", "{tmp}", "-b", "nobench"], "unknown benchmark 'nobench'"),
    (["submit", "{tmp}", "-b", "sample", "--store", UNCREATABLE], UNCREATABLE),
    (["submit", "{tmp}", "-b", "sample", "--store", "adir.duckdb"], "adir.duckdb: --store is a folder"),
    (["score", "no-such-method", "-b", "sample", "--store", "s.duckdb"], "unknown method 'no-such-method'"),
    (["score", "static-source", "-b", "sample", "--task", "foo", "--store", "s.duckdb"], "no 'foo' task"),
    (["score", "vqtalker-tiny", "-b", "sample", "--device", "cuda:7", "--store", "s.duckdb"], "--device 'cuda:7'"),
    (["score", "vqtalker-tiny", "-b", "sample", "--device", "tpu", "--store", "s.duckdb"], "not a device"),
    (["leaderboard", "--store", UNCREATABLE], f"{UNCREATABLE}: cannot create or write the leaderboard store"),
    (["leaderboard", "--store", "adir.duckdb"], "adir.duckdb: --store is a folder"),
    (["leaderboard", "--store", "afile/x.duckdb"], "afile is a file, not a folder"),
    (["leaderboard", "-b", "nobench"], "unknown benchmark 'nobench'"),
    (["leaderboard", "--format", "docx"], "unknown format 'docx'"),
    (["tables", "--paper", "nopaper"], "unknown paper 'nopaper'"),
    (["tables", "--paper", "vqtalker", "--store", UNCREATABLE], "cannot create or write the leaderboard store"),
    # the other groups
    (["demo", "--workers", "0"], "'--workers'"),
    (["demo", "--out", "afile"], "afile: --out must be a folder"),
    (["media", "probe", "missing.mp4"], "missing.mp4: file not found"),
    (["media", "probe", S, "--format", "docx"], "'docx' is not one of"),
    (["data", "build", "files", "--manifest", S, "--out", "ds", "--workers", "-1"], "'--workers'"),
    (["data", "build", "files", "--manifest", S, "--out", "ds", "--engine", "foo"], "unknown --engine 'foo'"),
    (["data", "build", "files", "--manifest", S, "--out", "ds", "--lid-engine", "foo"], "unknown --lid-engine 'foo'"),
    (["data", "build", "mead", "--out", "ds"], "mead needs --root"),
    (["data", "status", "missing"], "no catalog here"),
    (["lid", S, "--engine", "foo"], "unknown LID engine 'foo'"),
    (["lid", S, "--threads", "0"], "'--threads'"),
    (["weights", "fetch", "no-such-weight"], "unknown weight 'no-such-weight'"),
    (["weights", "import", "arcface-r100", "missing.onnx"], "missing.onnx: no such file"),
    (["weights", "list", "--format", "docx"], "'docx' is not one of"),
    (["weights", "verify", "--nope"], "No such option: --nope"),
    (["audit", "missing"], "missing: not found"),
    (["audit", S, "--min-confidence", "5"], "must be within [0, 1], got 5.0"),
    (["baselines", "show", "no-such-method"], "no preset named 'no-such-method'"),
    (["baselines", "import", "missing", "-m", "x", "-b", "sample"], "missing: not a directory of videos"),
    (["baselines", "list", "--format", "docx"], "'docx' is not one of"),
    (["baselines", "run", "no-such-method", "-b", "sample", "--repo", "missing"], "no preset named 'no-such-method'"),
    (["baselines", "import-grid", S, "--layout", "4y1", "--panel", "128", "--names", "a,b,c,d"], "layout '4y1' must be COLSxROWS"),
    (["baselines", "import-grid", S, "--layout", "2x2", "--panel", "256", "--names", "a,b,c,d", "--fps", "-5"], "'--fps'"),
    (["vqtalker", "train-tokenizer", "--config", "no-such-config"], "no-such-config: not a YAML file"),
    (["vqtalker", "fit-units", "--k", "0"], "'--k'"),
    (["vqtalker", "encode", S, "--checkpoint", "missing.pt", "--out", "x.npz"], "missing.pt: checkpoint not found"),
    (["vqtalker", "reconstruct", S, "--checkpoint", "missing.pt", "--out", "x.mp4"], "missing.pt: checkpoint not found"),
    (["vqtalker", "train-generator", "--config", "no-such-config", "--tokenizer", "missing.pt"], "no-such-config: not a YAML file"),
    (["vqtalker", "generate", "--portrait", "missing.png", "--audio", S, "--out", "x.mp4", "--checkpoint", "missing.pt"],
     "missing.png: file not found"),
    (["cache", "clear", "--kind", "foo"], "unknown cache kind 'foo'"),
    (["cache", "info", "--nope"], "No such option: --nope"),
    (["version", "--nope"], "No such option: --nope"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a[:2]) + f" [{i}]" for i, (a, _) in enumerate(BAD)])
def test_a_bad_command_line_is_one_message_and_leaves_nothing(workspace, args, message):
    before = _tree(workspace)
    result = talkbench(*(a.replace("{tmp}", str(workspace)) for a in args))
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert message in _flat(result.output), result.output
    assert _tree(workspace) == before  # no store, no output folder, no lock file
    assert not Path(UNCREATABLE).parent.exists()


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    found = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= _commands(command, (*prefix, name))
        else:
            found.add((*prefix, name))
    return found


def test_every_command_is_tried():
    tried = {tuple(args[: len(c)]) for args, _ in BAD for c in _commands(typer.main.get_command(app))}
    assert _commands(typer.main.get_command(app)) <= tried


def test_printable_escapes_what_could_forge_a_line():
    assert printable("clip\nerror: forged") == "clip\\nerror: forged"
    assert printable("a\rb\x1b[31mc\u202ed\x00") == "a\\rb\\x1b[31mc\\u202ed\\x00"
    assert printable("take[2] ünïcode 中文.mp4") == "take[2] ünïcode 中文.mp4"


# -- talkbench eval: no silent results ------------------------------------------------------


def _bit_flipped(source: Path, target: Path, step: int) -> Path:
    """A copy with every ``step``-th byte of the coded video (the mdat box, after its first 5%)
    inverted: it still decodes, to frames of garbage."""
    data = bytearray(source.read_bytes())
    pos = 0
    while True:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"mdat":
            break
        pos += size
    start, end = pos + 8, pos + size
    for i in range(start + (end - start) // 20, end, step):
        data[i] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


def test_eval_without_a_reference_fails_naming_the_option(workspace):
    result = talkbench("eval", "-g", S, "-m", "ssim", "-w", "1")
    assert result.exit_code == 2, result.output
    assert "error: no metric produced a value: ssim: no ground-truth video given (give --reference)" in _flat(result.stderr)
    assert "│ ssim" not in result.stdout  # no empty table of values


def test_eval_with_a_portrait_without_a_face_fails_naming_it(workspace):
    from PIL import Image

    Image.new("RGB", (256, 256), (128, 128, 128)).save(workspace / "wall.png")
    result = talkbench("eval", "-g", S, "-p", "wall.png", "-m", "csim", "-w", "1")
    assert result.exit_code == 2, result.output
    assert "no metric produced a value: csim: no face found in the source portrait wall.png" in _flat(result.stderr)


def test_eval_of_a_bit_flipped_video_counts_its_faceless_frames(workspace):
    flipped = _bit_flipped(SAMPLE, workspace / "flipped.mp4", 20000)
    result = talkbench("eval", "-g", flipped, "-m", "msi", "-w", "1", "--json")
    assert result.exit_code == 0, result.output
    clip = json.loads(result.stdout)["evaluations"][0]["clips"][0]
    without, frames = clip["faces"]["generated_frames_without_face"], clip["frames"]["generated"]
    assert 0 < without < frames  # the flips removed the face from some frames, not all
    assert f"{without} of {frames} generated frames have no face" in _flat(result.stderr)  # with --json too
    table = talkbench("eval", "-g", flipped, "-m", "msi", "-w", "1")  # from the analysis cache
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if "frames without a face" in line)
    assert row.count(f"{without} of {frames}") == 2  # the total and the clip's column
    assert "warning:" in table.stderr and f"{without} of {frames} generated frames have no face" in _flat(table.stderr)


def test_eval_of_a_video_without_any_face_exits_with_the_reason(workspace):
    from talkbench import media

    media.write_video(workspace / "wall.mp4", np.full((10, 256, 256, 3), 128, dtype=np.uint8), fps=25)
    result = talkbench("eval", "-g", "wall.mp4", "-m", "msi,cpbd", "-w", "1")
    assert result.exit_code == 0, result.output  # CPBD has a value; MSI has none, and says why
    assert "warning: wall: 10 of 10 generated frames have no face" in _flat(result.stderr)
    assert "warning: wall: msi has no value: no face found in any generated frame" in _flat(result.stderr)
    only_faces = talkbench("eval", "-g", "wall.mp4", "-m", "msi", "-w", "1")
    assert only_faces.exit_code == 2, only_faces.output
    assert "error: no metric produced a value: msi: no face found in any generated frame" in _flat(only_faces.stderr)
    row = next(line for line in only_faces.stdout.splitlines() if "frames without a face" in line)
    assert row.count("10 of 10") == 2


# -- names from files cannot forge output ---------------------------------------------------

FORGED = "take\nerror: forged\x1b[31m[red]x"


def test_a_file_name_cannot_forge_eval_or_listing_lines(workspace):
    clip = workspace / f"{FORGED}.mp4"
    shutil.copy(SAMPLE, clip)
    result = talkbench("eval", "-g", clip, "-r", clip, "-m", "ssim", "-w", "1")
    assert result.exit_code == 0, result.output
    assert "take\\nerror: forged\\x1b[31m[red]x" in result.stdout  # the clip's column, escaped whole
    listing = talkbench("media", "probe", clip, "--format", "table")
    assert listing.exit_code == 0 and "take\\nerror: forged\\x1b[31m[red]x.mp4" in listing.stdout
    for output in (result.output, listing.output):
        assert "\x1b" not in output
        assert not any(line.startswith("error: forged") for line in output.splitlines())


# -- end to end, through the console script ------------------------------------------------


@pytest.mark.parametrize("args,message", [
    (["leaderboard", "--store", UNCREATABLE], "cannot create or write the leaderboard store"),
    (["eval", "-g", S, "-m", "ssim", "-w", "1"], "ssim: no ground-truth video given (give --reference)"),
])  # fmt: skip
def test_console_script_gives_a_message_not_a_traceback(workspace, args, message):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-m", "talkbench", *args], capture_output=True, text=True, timeout=120,
                          cwd=workspace, env=env)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "error:" in done.stderr
    assert message in _flat(done.stderr)
    assert _tree(workspace) == {"afile", "adir.duckdb"}
