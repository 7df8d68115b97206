"""The ``minitrain`` command line (also ``python -m minitrain``).

Commands
--------
``minitrain backends [--json]``
    Every registered backend, available or not and why, with its device; versions of Python and the packages
    that compute (NumPy, SciPy, scikit-learn, Numba, CuPy and the CUDA runtime and driver); the BLAS and OpenMP
    libraries loaded and their thread counts (threadpoolctl); Numba's threads and its JIT cache (where, how big).
``minitrain train DATA.csv --target COL [options]``
    Train on a CSV or Parquet table and save the model (``--out``, default ``model.mt``) with
    :func:`minitrain.save` (safetensors, no pickle). A line per epoch shows the training and validation losses
    and the validation accuracy (classification) or R² (regression), after a progress bar on terminals; then
    the final validation metrics. Numeric columns are imputed with their median and standardized, text columns
    imputed with their most frequent value and one-hot encoded, by a scikit-learn ``ColumnTransformer`` saved
    with the network in one ``Pipeline``. ``--task`` defaults to what the target holds: text, or a few distinct
    whole numbers, are classes; other numbers are regressed. ``--model mlp`` (default) is a dense network of
    ``--hidden`` units per layer; ``cnn`` reads the numeric columns, in file order, as one square grayscale image
    (their count must be a square: 64 columns are 8 x 8) through a :class:`~minitrain.models.SmallCNN` of
    ``--hidden`` channels per block; ``lstm`` reads them as a sequence of one feature per step through a
    :class:`~minitrain.models.RecurrentNet` (``--hidden 64,64``: two layers of 64). Both take numeric columns only.
``minitrain predict MODEL DATA.csv [--out predictions.csv] [--proba]``
    Predictions as CSV (stdout without ``--out``), one row per input row, in a column named after the target;
    ``--proba`` adds a ``proba_<class>`` column per class. Columns the model does not use are ignored.
``minitrain evaluate MODEL DATA.csv [--target COL] [--json]``
    Accuracy, F1 (macro) and log-loss of a classifier, or R², MAE and RMSE of a regressor.
``minitrain bench [peers.py options]``
    The comparison with scikit-learn and PyTorch, ``asv_benchmarks/peers.py`` of a source checkout
    (``minitrain bench --help`` lists its options, e.g. ``--workloads mlp-256-128 --repeats 3``).

Mistakes (a bad file, a missing column, text in a regression target, an unknown backend, a file that is no
minitrain model) print one line on stderr and exit with 1; ``--debug`` prints the traceback too. Usage errors
exit with 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

from ._backends import backends
from ._bench import bench
from ._common import CLIError, one_line
from ._model import MODELS
from ._predict import evaluate, predict
from ._train import train

__all__ = ["CLIError", "build_parser", "main"]


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive whole numbers separated by commas, e.g. 256,128; got {text!r}"
        )
    return sizes


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(
                f"expected a positive {'whole ' if kind is int else ''}number, got {text!r}"
            )
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``minitrain`` command.

    Examples
    --------
    >>> args = build_parser().parse_args(["train", "data.csv", "--target", "y", "--hidden", "32,16"])
    >>> args.command, args.hidden, args.model, args.validation_fraction
    ('train', (32, 16), 'mlp', 0.1)
    """
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="minitrain", description="Train neural networks on tables, predict, evaluate, and check the backends."
    )
    parser.add_argument("--version", action="version", version=f"minitrain {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("backends", parents=[common], help="the backends, devices, versions, BLAS, threads, JIT cache")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=backends)

    p = sub.add_parser(
        "train", parents=[common], help="train a model on a CSV or Parquet table and save it",
        description="Train a network on a table and save it with its preprocessing. Text columns are one-hot "
        "encoded, numeric ones standardized; missing values are imputed (median, most frequent value). --model cnn "
        "reads the numeric columns, in file order, as one square image (64 columns: 8 x 8); --model lstm as a "
        "sequence of one value per step. A line per epoch shows the losses and the validation accuracy or R2.",
    )  # fmt: skip
    p.add_argument("data", metavar="DATA", help="a .csv (or .tsv) file with a header line, or a .parquet file")
    p.add_argument("--target", required=True, metavar="COL", help="the column to predict")
    p.add_argument("--task", choices=("classify", "regress"), help="default: inferred from the target column")
    p.add_argument("--model", choices=MODELS, default="mlp", help="mlp (default); cnn: square images; lstm: sequences")
    p.add_argument("--hidden", type=_hidden, metavar="N,N", help="mlp units / cnn channels / lstm units per layer "
                   "(defaults 256,128 / 16,32 / 64)")  # fmt: skip
    p.add_argument("--backend", default="auto", help="numpy, numba, cupy, cupy:1, ... (default: auto)")
    p.add_argument("--epochs", type=_positive(int), default=20, metavar="N", help="default 20")
    p.add_argument("--batch-size", type=_positive(int), default=128, metavar="N", help="default 128")
    p.add_argument("--lr", type=_positive(float), default=1e-3, metavar="X", help="Adam's learning rate, default 0.001")
    p.add_argument("--validation-fraction", type=_fraction, default=0.1, metavar="F",
                   help="rows held out to validate on (default 0.1; 0: none)")  # fmt: skip
    p.add_argument("--out", default="model.mt", metavar="MODEL", help="the model file to write (default model.mt)")
    p.add_argument(
        "--tensorboard", metavar="DIR", help="also write TensorBoard event files to DIR (needs tensorboardX)"
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seeds the weights, split and shuffling (default 0)"
    )
    p.set_defaults(run=train)

    p = sub.add_parser("predict", parents=[common], help="predict with a model that `train` saved")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--out", metavar="FILE", help="write the predictions to FILE (CSV) instead of stdout")
    p.add_argument("--proba", action="store_true", help="add the probability of each class (classifiers)")
    p.add_argument("--backend", help="where to compute (default: where the model was trained, if it can run here)")
    p.set_defaults(run=predict)

    p = sub.add_parser("evaluate", parents=[common], help="score a model that `train` saved on labelled data")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--target", metavar="COL", help="the column of true values (default: the one the model learned)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--backend", help="where to compute (default: where the model was trained, if it can run here)")
    p.set_defaults(run=evaluate)

    p = sub.add_parser("bench", help="compare with scikit-learn and PyTorch (asv_benchmarks/peers.py, source checkout)",
                       add_help=False, prefix_chars="+")  # fmt: skip
    p.add_argument("peer_args", nargs=argparse.REMAINDER, help="passed to peers.py (see `minitrain bench --help`)")
    p.set_defaults(run=bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``minitrain`` command with ``argv`` (default: ``sys.argv[1:]``) and return its exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name.

    Returns
    -------
    int
        0 on success, 1 after an error (one line on stderr; the traceback with ``--debug``), 2 for a usage error.

    Examples
    --------
    >>> main(["--version"])
    minitrain 0.1.0
    0
    >>> import contextlib, io, json
    >>> out = io.StringIO()
    >>> with contextlib.redirect_stdout(out):
    ...     code = main(["backends", "--json"])
    >>> code, "numpy" in [b["name"] for b in json.loads(out.getvalue())["backends"]]
    (0, True)
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.run(args))
        except KeyboardInterrupt:
            print("minitrain: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # the reader of stdout stopped early (`minitrain predict ... | head`)
            _silence_stdout()
            return 1
        except Exception as exc:
            if args.debug:
                traceback.print_exc()
            print(f"minitrain: error: {describe(exc)}", file=sys.stderr)
            return 1


def describe(exc: BaseException) -> str:
    """One line for an error: the message of the mistakes users make, the type too (and the ``--debug`` hint) for
    anything else.

    Examples
    --------
    >>> describe(FileNotFoundError(2, "No such file or directory", "data.csv"))
    'data.csv: No such file or directory'
    >>> describe(KeyError("x"))
    "KeyError: 'x' (run with --debug for the traceback)"
    """
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, (CLIError, ValueError, TypeError, ImportError, OSError)):
        return one_line(exc)
    return f"{type(exc).__name__}: {one_line(exc)} (run with --debug for the traceback)"


def _silence_stdout() -> None:
    """Point stdout at the null device, so that flushing it at exit raises no second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is no file (a test's StringIO)
        pass


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """Warnings as one line each on stderr, without the source line Python shows."""
    print(f"minitrain: warning: {one_line(message)}", file=sys.stderr)
