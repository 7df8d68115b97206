"""``minitrain predict`` and ``minitrain evaluate``: a saved model applied to a table."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from typing import Any

import numpy as np

from . import _model
from ._common import CLIError, info
from ._tables import feature_matrix, is_missing, read_table

__all__ = ["evaluate", "predict", "warn_unseen"]


def _backend(name: str | None) -> Any:
    if name is None:
        return None
    from ..backend import get_backend

    return get_backend(name)


def warn_unseen(bundle: dict[str, Any], X: np.ndarray) -> None:
    """Warn about text values that training never saw: the one-hot encoding gives them all zeros."""
    import warnings

    prep = bundle["pipeline"][0]
    if "categorical" not in getattr(prep, "named_transformers_", {}):
        return
    onehot = prep.named_transformers_["categorical"][-1]
    columns = [n for n in bundle["features"] if bundle["kinds"][n] != "numeric"]
    for name, known in zip(columns, onehot.categories_, strict=True):
        values = X[:, bundle["features"].index(name)]
        unseen = sorted({v for v in values if isinstance(v, str)} - set(known.tolist()))
        if unseen:
            shown = ", ".join(map(repr, unseen[:5])) + (", ..." if len(unseen) > 5 else "")
            warnings.warn(f"column {name!r} has values training never saw ({shown}): they count as none of the "
                          "known ones", UserWarning, stacklevel=2)  # fmt: skip


def predict(args: argparse.Namespace) -> int:
    """Run ``minitrain predict`` with parsed arguments; returns the exit code."""
    bundle = _model.load_bundle(args.model, backend=_backend(args.backend))
    if args.proba and bundle["task"] != "classify":
        raise CLIError(f"--proba needs a classifier, and {args.model} is a regressor")
    table = read_table(args.data)
    X = feature_matrix(table, bundle["features"], bundle["kinds"])
    warn_unseen(bundle, X)
    pipeline = bundle["pipeline"]
    header = [bundle["target"]]
    columns = [[_cell(v) for v in pipeline.predict(X)]]
    if args.proba:
        header += [f"proba_{c}" for c in pipeline[-1].classes_]
        columns += [[_cell(p) for p in col] for col in pipeline.predict_proba(X).T]
    rows = zip(*columns, strict=True)
    if args.out:
        with open(args.out, "w", newline="") as f:
            _write(f, header, rows)
        info(f"wrote {table.n_rows} predictions of {bundle['target']!r} to {args.out}")
    else:
        _write(sys.stdout, header, rows)
    return 0


def _write(stream: Any, header: list[str], rows: Any) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


def _cell(value: Any) -> str:
    """A value as CSV text: floats exactly (``repr`` reads back to the same float), others as they print."""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def evaluate(args: argparse.Namespace) -> int:
    """Run ``minitrain evaluate`` with parsed arguments; returns the exit code."""
    bundle = _model.load_bundle(args.model, backend=_backend(args.backend))
    target = args.target or bundle["target"]
    table = read_table(args.data)
    text = table.column(target, "the target column")
    present = np.array([not is_missing(v) for v in text])
    if not present.any():
        raise CLIError(f"the target column {target!r} of {args.data} has no values")
    if not present.all():
        info(f"note: {int((~present).sum())} row(s) without a value in {target!r} left out")
        table = table.take(present)
        text = table.columns[target]
    y, _ = _model.target_values(text, bundle["task"], bundle["label_kind"], repr(target))
    X = feature_matrix(table, bundle["features"], bundle["kinds"])
    warn_unseen(bundle, X)
    scores = _model.metrics(bundle["task"], bundle["pipeline"], X, y)
    if args.json:
        clean = {k: (None if math.isnan(v) else v) for k, v in scores.items()}
        print(json.dumps({"data": args.data, "rows": table.n_rows, "task": bundle["task"], **clean}))
    else:
        print(f"{args.data} ({table.n_rows} rows, {bundle['task']} {target!r}): {_model.format_metrics(scores)}")
    return 0
