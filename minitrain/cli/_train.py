"""``minitrain train``: fit a model to a table and save it, with a line of validation metrics per epoch."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

from ..callbacks import Callback, EpochLogger, ProgressBar
from . import _model
from ._common import CLIError, format_size
from ._tables import column_kind, feature_matrix, is_missing, read_table

__all__ = ["EpochPrinter", "train"]


class EpochPrinter(Callback):
    """Print one line per epoch on stdout, the validation score named for what it is (``valid_accuracy``,
    ``valid_r2``).

    Parameters
    ----------
    score_name : str, default='valid_score'

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from minitrain.callbacks import History
    >>> history = History()
    >>> history.new_epoch(epoch=1, train_loss=0.5, valid_score=0.75)
    >>> EpochPrinter("valid_accuracy").on_epoch_end(SimpleNamespace(history=history))
    epoch   1  train_loss 0.5000  valid_accuracy 0.7500
    """

    def __init__(self, score_name: str = "valid_score") -> None:
        self.score_name = score_name

    def on_epoch_end(self, trainer: Any) -> None:
        record = {k.replace("valid_score", self.score_name): v for k, v in trainer.history[-1].items() if "/" not in k}
        print(EpochLogger().format_record(record), flush=True)


def train(args: argparse.Namespace) -> int:
    """Run ``minitrain train`` with parsed arguments; returns the exit code."""
    from sklearn.pipeline import Pipeline

    from .. import io
    from ..backend import get_backend

    backend = get_backend(args.backend)  # an unknown or unusable backend fails before the data is read
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise CLIError(f"--out {args.out}: the folder {folder} does not exist")
    table = read_table(args.data)
    target_text = table.column(args.target, "the target column")
    present = np.array([not is_missing(v) for v in target_text])
    if not present.any():
        raise CLIError(f"the target column {args.target!r} of {args.data} has no values")
    if not present.all():
        print(f"note: {int((~present).sum())} row(s) without a value in {args.target!r} left out")
        table = table.take(present)
        target_text = table.columns[args.target]
    features = [n for n in table.names if n != args.target]
    if not features:
        raise CLIError(f"{args.data} has no columns besides the target {args.target!r} to learn from")
    task, why = (args.task, "") if args.task else _model.infer_task(target_text)
    y, label_kind = _model.target_values(target_text, task, None, repr(args.target))
    kinds = {n: column_kind(table.columns[n]) for n in features}
    _model.check_columns(args.model, features, kinds)
    hidden = args.hidden or _model.DEFAULT_HIDDEN[args.model]
    X = feature_matrix(table, features, kinds)
    train_idx, valid_idx = _split(y, task, args.validation_fraction, args.seed)
    if task == "classify" and len(np.unique(y[train_idx])) < 2:
        raise CLIError(f"the target {args.target!r} has one class only in the training rows; a classifier needs two")

    n_text = sum(k != "numeric" for k in kinds.values())
    print(f"data: {args.data}, {table.n_rows} rows, {len(features)} feature columns ({len(features) - n_text} "
          f"numeric, {n_text} categorical), target {args.target!r}")  # fmt: skip
    other = "regress" if task == "classify" else "classify"
    print(f"task: {task}" + (f" (inferred: {why}; --task {other} to change it)" if why else ""))
    shape = "-".join(map(str, hidden))
    print(f"model: {args.model} {shape} on {backend.spec}, {args.epochs} epochs, batch {args.batch_size}, lr "
          f"{args.lr:g}; {len(train_idx)} rows to train on, {len(valid_idx)} to validate on")  # fmt: skip

    prep = _model.build_preprocessor(features, kinds)
    Xt = prep.fit_transform(X[train_idx])
    est = _model.build_estimator(
        task, args.model, hidden, lr=args.lr, max_epochs=args.epochs, batch_size=args.batch_size, train_split=None,
        backend=backend.spec, random_state=args.seed, callbacks=_callbacks(task, args.tensorboard),
    )  # fmt: skip
    validation = {}
    if len(valid_idx):
        validation = {"X_val": prep.transform(X[valid_idx]), "y_val": y[valid_idx]}
    est.fit(Xt, y[train_idx], **validation)
    est.set_params(callbacks=None)  # the model file keeps the network, not how training was shown
    est.callbacks_ = []
    pipeline = Pipeline([("prep", prep), ("model", est)])

    rows, part = (valid_idx, "validation") if len(valid_idx) else (train_idx, "training")
    scores = _model.metrics(task, pipeline, X[rows], y[rows])
    print(f"{part} ({len(rows)} rows): {_model.format_metrics(scores)}")
    bundle = _model.make_bundle(
        pipeline, task=task, model=args.model, target=args.target, features=features, kinds=kinds,
        label_kind=label_kind, trained_on=os.path.basename(args.data), metrics={part: scores},
    )  # fmt: skip
    io.save(bundle, args.out)
    print(f"saved {args.out} ({format_size(os.path.getsize(args.out))}): minitrain predict {args.out} DATA.csv")
    return 0


def _callbacks(task: str, tensorboard: str | None) -> list[Any]:
    """A progress bar on terminals, a line per epoch, and TensorBoard event files when asked for."""
    out: list[Any] = []
    if getattr(sys.stderr, "isatty", lambda: False)():
        out.append(ProgressBar(summary=False))
    out.append(EpochPrinter(_model.SCORE_NAMES[task]))
    if tensorboard:
        from ..callbacks import TensorBoard

        out.append(TensorBoard(tensorboard))  # ImportError with what to install when tensorboardX is missing
    return out


def _split(y: np.ndarray, task: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation row indices: ``fraction`` of the rows held out (stratified for classes when every
    class has two rows), at least one of each when there is a validation part at all.

    Examples
    --------
    >>> train_idx, valid_idx = _split(np.array(["a", "a", "a", "b", "b", "c"]), "classify", 0.5, seed=0)
    >>> "c" in np.array(["a", "a", "a", "b", "b", "c"])[valid_idx]
    False
    """
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    if fraction <= 0:
        return rows, rows[:0]
    n_valid = max(1, round(fraction * len(y)))
    if n_valid >= len(y):
        raise CLIError(f"--validation-fraction {fraction} leaves no rows to train on ({len(y)} rows)")
    stratify = None
    if task == "classify":
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and len(counts) <= min(n_valid, len(y) - n_valid):
            stratify = y
    train_idx, valid_idx = train_test_split(rows, test_size=n_valid, random_state=seed, stratify=stratify)
    if task == "classify":  # a class with one row is trained on: validation may only hold classes the model knows
        unknown = ~np.isin(y[valid_idx], y[train_idx])
        train_idx, valid_idx = np.concatenate([train_idx, valid_idx[unknown]]), valid_idx[~unknown]
    return np.sort(train_idx), np.sort(valid_idx)
