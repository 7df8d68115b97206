"""``python -m minitrain``: the command line of :mod:`minitrain.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
