"""The ``talkbench`` command: one typer app, thin. Each command group lives in its own module
and only parses, calls the library and renders with rich. Heavy libraries (torch, whisper)
are imported inside commands so ``talkbench --help`` stays instant."""

from __future__ import annotations

import typer

from talkbench import __version__
from talkbench.cli import demo as demo_cmd
from talkbench.cli import media as media_cmd
from talkbench.cli.common import console, run_guarded

app = typer.Typer(
    name="talkbench",
    help="Benchmark suite for multilingual audio-driven talking-head generation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print the talkbench version."""
    console.print(f"talkbench {__version__}")


app.command(name="demo")(demo_cmd.demo)
app.add_typer(media_cmd.app, name="media")


def main() -> None:
    run_guarded(app)
