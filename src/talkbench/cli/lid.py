"""``talkbench lid``: spoken-language identification of audio or video files with Whisper."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from talkbench.cli.common import console, err_console, markup_safe, print_json, printable
from talkbench.datasets.language import detect_file
from talkbench.errors import MediaError


def lid(
    files: list[Path] = typer.Argument(..., help="Audio or video files."),
    engine: str = typer.Option("faster-whisper", help="faster-whisper | openai-whisper"),
    model: str = typer.Option("base", help="Model name (resolved to a local copy first) or a local folder/checkpoint."),
    threads: int = typer.Option(2, min=1, help="CPU threads."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Language (ISO 639-1), probability, top 3 and seconds of speech of each file."""
    results, failures = [], []
    for path in files:
        try:
            results.append(detect_file(path, engine=engine, model=model, threads=threads).to_dict())
        except MediaError as exc:
            failures.append({"path": str(path), "error": exc.problem})
    if as_json:
        print_json({"files": results, "errors": failures})
    else:
        table = Table("file", "language", "prob", "top 3", "speech (s)", "time (s)", title=f"{engine} / {model}")
        for r in results:
            top = ", ".join(f"{k} {p:.2f}" for k, p in r["top3"])
            table.add_row(Text(printable(Path(r["path"]).name)), r["language"] or "no_speech", f"{r['probability']:.3f}", top,
                          f"{r['speech_seconds']:.1f}", f"{r['seconds']:.2f}")
        console.print(table)
        for f in failures:
            err_console.print(f"[red]{markup_safe(f['path'])}[/]: {markup_safe(f['error'])}")
    if failures:
        raise typer.Exit(1)
