"""``talkbench media``: inspect media files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from talkbench import media
from talkbench.cli.common import console, err_console, print_json
from talkbench.errors import MediaError

app = typer.Typer(help="Inspect video and audio files.", no_args_is_help=True)


@app.command()
def probe(
    files: list[Path] = typer.Argument(..., help="Video or audio files."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Duration, fps, frame count, resolution, codecs and audio of each file."""
    infos, failures = [], []
    for path in files:
        try:
            infos.append(media.probe(path).to_dict())
        except MediaError as exc:
            failures.append({"path": str(path), "error": exc.problem})
    if as_json:
        print_json({"files": infos, "errors": failures})
    else:
        table = Table("file", "duration (s)", "fps", "frames", "size", "video", "audio")
        for info in infos:
            audio = f"{info['audio_codec']} {info['audio_sample_rate']} Hz" if info["has_audio"] else "-"
            table.add_row(
                Path(info["path"]).name,
                f"{info['duration']:.2f}",
                f"{info['fps']:.2f}",
                str(info["frame_count"]),
                f"{info['width']}x{info['height']}",
                info["video_codec"] or "-",
                audio,
            )
        console.print(table)
        for failure in failures:
            err_console.print(f"[red]{failure['path']}[/]: {failure['error']}")
    if failures:
        raise typer.Exit(1)
