"""What every command shares: the consoles, JSON output, names from files made safe to print,
and turning our errors into a one-line message and exit code 2 instead of a traceback."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from talkbench.errors import FileProblem, TalkbenchError

# soft_wrap: rich never breaks a printed line at the console's width (80 columns in a pipe), so a
# path or a name stays whole on one line to grep and copy; a terminal wraps long lines itself.
# Tables still fit the width (listing.print_table widens them in a pipe).
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no rich markup), so it pipes into jq."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# C0 and C1 controls (newline, carriage return, ESC, backspace, ...), and the marks that reorder
# text (bidi overrides and isolates, line and paragraph separators).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """``text`` with its control characters escaped as Python's repr writes them (``\\n``,
    ``\\x1b``, ``\\u202e``). For what comes from files (clip ids, file and folder names, and
    messages that quote them): such a name cannot then start a forged output line, move the
    cursor, recolour the terminal or reorder what is shown."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


def markup_safe(text: object) -> str:
    """``printable(text)``, also escaped for rich markup (a name such as "take[2].mp4")."""
    return escape(printable(text))


def error_text(message: str) -> str:
    """A message for the terminal: its own line breaks kept (a submission lists one problem a
    line), every later line indented under the first so none reads as a message of its own,
    control characters within a line escaped."""
    first, *rest = message.split("\n")
    return "\n".join([printable(first), *(printable(line if line.startswith(" ") else "  " + line) for line in rest)])


class OutputPathError(FileProblem):
    """An output path that cannot be created or written."""


def output_folder(path: Path, option: str) -> Path:
    """Create the output folder ``path`` (given as ``option``) before any work, or say why it
    cannot be: a file in the way, a parent that cannot be written (read-only, under /proc)."""
    if path.exists() and not path.is_dir():
        raise OutputPathError(path, f"{option} must be a folder, and this is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(path, f"cannot create the {option} folder ({exc.strerror or exc})") from None
    return path


def run_guarded(app: typer.Typer, args: list[str] | None = None) -> None:
    """Run the app on ``args`` (default: the command line) as ``talkbench`` does: our errors,
    and the operating system's (a path that cannot be written, a full disk), become one
    ``error:`` message and exit code 2, never a traceback."""
    try:
        app(args=args, prog_name="talkbench", standalone_mode=True)
    except TalkbenchError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(os_error_text(exc))


def os_error_text(exc: OSError) -> str:
    """"PATH: what went wrong", as the message of an ``OSError`` that names a file."""
    if exc.filename is None or exc.strerror is None:
        return str(exc)
    target = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    return f"{exc.filename}{target}: {exc.strerror[:1].lower()}{exc.strerror[1:]}"


def _fail(message: str) -> None:
    # escape: messages quote file names and submission fields, which may contain "[...]"
    err_console.print(f"[bold red]error:[/] {escape(error_text(message))}", soft_wrap=True)
    raise SystemExit(2) from None
