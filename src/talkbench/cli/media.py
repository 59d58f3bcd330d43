"""``talkbench media``: inspect media files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from talkbench import media
from talkbench.cli.common import err_console, markup_safe
from talkbench.cli.listing import Column, ListFormat, chosen_format, format_option, json_alias_option, print_listing
from talkbench.errors import MediaError
from talkbench.media import MediaInfo

app = typer.Typer(help="Inspect video and audio files.", no_args_is_help=True)


def _audio_cell(info: MediaInfo) -> str:
    return f"{info.audio_codec} {info.audio_sample_rate} Hz" if info.has_audio else "-"


COLUMNS: list[Column[MediaInfo]] = [
    Column("path", lambda i: i.path, heading="file", cell=lambda i: markup_safe(Path(i.path).name), is_name=True),
    Column("duration", lambda i: i.duration, heading="duration (s)", cell=lambda i: f"{i.duration:.2f}"),
    Column("fps", lambda i: i.fps, cell=lambda i: f"{i.fps:.2f}"),
    Column("frame_count", lambda i: i.frame_count, heading="frames"),
    Column("size", lambda i: f"{i.width}x{i.height}"),
    Column("video_codec", lambda i: i.video_codec, heading="video"),
    Column("audio_codec", lambda i: i.audio_codec, heading="audio", cell=_audio_cell),
    Column("audio_sample_rate", lambda i: i.audio_sample_rate, in_table=False),
]


@app.command()
def probe(
    files: list[Path] = typer.Argument(..., help="Video or audio files."),
    fmt: Optional[ListFormat] = format_option(),
    as_json: bool = json_alias_option(),
) -> None:
    """Duration, fps, frame count, resolution, codecs and audio of each file."""
    infos: list[MediaInfo] = []
    failures: list[tuple[Path, str]] = []  # (the path as given, what is wrong with it)
    for path in files:
        try:
            infos.append(media.probe(path))
        except MediaError as exc:
            failures.append((path, exc.problem))
    fmt = chosen_format(fmt, as_json)
    document = {"files": [i.to_dict() for i in infos],
                "errors": [{"path": str(path), "error": problem} for path, problem in failures]}
    print_listing(fmt, infos, COLUMNS, json_document=document)
    if fmt is not ListFormat.json:  # JSON carries the errors; the other formats keep stdout for the files
        for path, problem in failures:
            err_console.print(f"[red]{markup_safe(path)}[/]: {markup_safe(problem)}", soft_wrap=True)
    if failures:
        raise typer.Exit(1)
