"""The talkbench command: help, version and media probe (the demo: test_demo.py)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from talkbench import __version__, media
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
    clip = sample_clips[0]
    decoded = sum(1 for _ in media.iter_frames(clip.video, fps=None))  # counted, not read from the header
    assert data["files"][0]["frame_count"] == decoded == round(clip.duration * 25)  # samples.json: 25 fps
    assert data["files"][0]["width"] == data["files"][0]["height"] == 512
    assert data["errors"][0]["path"] == str(bad)
