"""What the commands share: the error they raise for the user's mistakes, and how they report."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["CLIError", "format_size", "info", "one_line"]


class CLIError(Exception):
    """A mistake in what the user asked for (a bad file, a missing column, ...): shown as one line, exit code 1.

    Examples
    --------
    >>> str(CLIError("column 'age' is not in data.csv"))
    "column 'age' is not in data.csv"
    """


def one_line(text: Any) -> str:
    """``text`` on one line: newlines and runs of spaces become single spaces.

    Examples
    --------
    >>> one_line("first\\n  second")
    'first second'
    """
    return " ".join(str(text).split())


def info(message: str) -> None:
    """Report progress on stderr (stdout may carry the command's output, e.g. predictions)."""
    print(message, file=sys.stderr, flush=True)


def format_size(n: float) -> str:
    """A byte count for people.

    Examples
    --------
    >>> format_size(512), format_size(3 * 2**20), format_size(80 * 2**30)
    ('512 B', '3.0 MiB', '80.0 GiB')
    """
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    for unit in units[:-1]:
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} {units[-1]}"
