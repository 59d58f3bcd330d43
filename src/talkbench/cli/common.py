"""What every command shares: the consoles, JSON output, and turning our errors into a
one-line message and exit code 2 instead of a traceback."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from talkbench.errors import TalkbenchError

console = Console()
err_console = Console(stderr=True)


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no rich markup), so it pipes into jq."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def run_guarded(app: typer.Typer) -> None:
    try:
        app(standalone_mode=True)
    except TalkbenchError as exc:
        # escape: messages quote file names and submission fields, which may contain "[...]"
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise SystemExit(2) from None
