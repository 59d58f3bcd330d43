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

# soft_wrap: rich never breaks a printed line at the console's width (80 columns in a pipe), so a
# path or a name stays whole on one line to grep and copy; a terminal wraps long lines itself.
# Tables still fit the width (listing.print_table widens them in a pipe).
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no rich markup), so it pipes into jq."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def run_guarded(app: typer.Typer) -> None:
    try:
        app(standalone_mode=True)
    except TalkbenchError as exc:
        # escape: messages quote file names and submission fields, which may contain "[...]"
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise SystemExit(2) from None
