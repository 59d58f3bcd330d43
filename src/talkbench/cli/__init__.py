"""The ``talkbench`` command: one typer app, thin. Each command group lives in its own module
and only parses, calls the library and renders with rich. Heavy libraries (torch, whisper)
are imported inside commands so ``talkbench --help`` stays instant."""

from __future__ import annotations

import typer

from talkbench import __version__
from talkbench.cli import demo as demo_cmd
from talkbench.cli import media as media_cmd
from talkbench.cli import leaderboard as leaderboard_cmd
from talkbench.cli import data as data_cmd
from talkbench.cli import lid as lid_cmd
from talkbench.cli import eval as eval_cmd
from talkbench.cli import weights as weights_cmd
from talkbench.cli import audit as audit_cmd
from talkbench.cli import baselines as baselines_cmd
from talkbench.cli import vqtalker as vqtalker_cmd
from talkbench.cli import vqtalker_generate  # noqa: F401  (adds the stage-2 commands to `vqtalker`)
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
app.command(name="submit")(leaderboard_cmd.submit)
app.command(name="score")(leaderboard_cmd.score)
app.command(name="leaderboard")(leaderboard_cmd.leaderboard)
app.command(name="tables")(leaderboard_cmd.tables_cmd)
app.add_typer(data_cmd.app, name="data")
app.command(name="lid")(lid_cmd.lid)
app.add_typer(weights_cmd.app, name="weights")
app.command(name="audit")(audit_cmd.audit)
app.add_typer(baselines_cmd.app, name="baselines")
app.add_typer(vqtalker_cmd.app, name="vqtalker")
app.command(name="eval")(eval_cmd.eval_)
app.add_typer(eval_cmd.cache_app, name="cache")


def main() -> None:
    run_guarded(app)
