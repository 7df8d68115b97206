"""``minitrain bench``: the comparison with peers, ``asv_benchmarks/peers.py``, which only a source checkout has."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ._common import CLIError

__all__ = ["bench", "peers_script"]


def peers_script() -> Path | None:
    """``asv_benchmarks/peers.py`` of the source checkout this minitrain runs from, or None (an installed copy).

    Examples
    --------
    >>> script = peers_script()
    >>> script is None or script.name == "peers.py"
    True
    """
    root = Path(__file__).resolve().parents[2]
    script = root / "asv_benchmarks" / "peers.py"
    return script if script.is_file() else None


def bench(args: argparse.Namespace) -> int:
    """Run ``peers.py`` with the remaining arguments, in a fresh process of this Python; returns its exit code."""
    script = peers_script()
    if script is None:
        where = Path(__file__).resolve().parents[1]
        raise CLIError(
            f"bench needs a source checkout of minitrain: it runs asv_benchmarks/peers.py, which an installed copy "
            f"({where}) lacks; clone the repository and run `minitrain bench` from a `pip install -e .` of it"
        )
    root = str(script.parents[1])
    env = dict(os.environ)  # the child imports the same minitrain as this process
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.call([sys.executable, str(script), *args.peer_args], env=env)
