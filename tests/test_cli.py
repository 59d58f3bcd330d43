"""The talkbench command: help, version, media probe, and the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
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


@pytest.mark.slow
def test_console_script_runs_demo(tmp_path):
    """`talkbench demo` end to end, as `make demo` runs it: every stage prints its part and
    leaves its files behind."""
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "talkbench", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "ar_001" in text and "de_001" in text  # the corpus table
    assert "dataset pipeline" in text and f"catalog: {out / 'dataset' / 'catalog.duckdb'}" in text
    for method in ("ground-truth", "static-source", "h264", "vqtalker-tiny", "vqtalker-tokenizer-tiny"):
        assert method in text
    assert "cross-lingual gap" in text and "Competitor methods" in text and "reported only" in text
    assert (out / "leaderboard" / "site" / "index.html").is_file()
    assert "language-bias audit" in text and (out / "audit" / "report.html").is_file()
    assert text.rstrip().splitlines()[-1].startswith("report: ")  # the demo ends with the audit
