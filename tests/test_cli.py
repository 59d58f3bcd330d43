"""The talkbench command: help, version, media probe, and the demo."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from talkbench import __version__
from talkbench.cli import app

runner = CliRunner()


def test_help_lists_command_groups():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "media", "version"):
        assert command in result.output


def test_version():
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_media_probe_json(sample_clips, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    result = runner.invoke(app, ["media", "probe", str(sample_clips[0].video), str(bad), "--json"])
    assert result.exit_code == 1  # one file failed; the other is still reported
    data = json.loads(result.stdout)
    assert data["files"][0]["frame_count"] == 110 and data["files"][0]["width"] == 512
    assert data["errors"][0]["path"] == str(bad)


def test_console_script_runs_demo(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "talkbench", "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    assert "ar_001" in result.stdout and "de_001" in result.stdout
