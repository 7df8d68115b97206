"""The model file ``minitrain train`` writes, and what goes into it: a scikit-learn Pipeline of a ColumnTransformer
(impute, scale, one-hot encode) and a NeuralNet estimator, with the columns it reads and how, saved with
:func:`minitrain.save` (safetensors, no pickle)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import CLIError, one_line
from ._tables import parse_numbers

__all__ = ["MODELS", "build_estimator", "build_preprocessor", "infer_task", "load_bundle", "metrics", "target_values"]

#: What ``minitrain train`` writes in the ``kind`` entry of its model files, and the version of their layout.
BUNDLE_KIND = "minitrain.cli.model"
BUNDLE_VERSION = 1
MODELS = ("mlp", "cnn", "lstm")
#: ``--hidden`` by model: the MLP's layer widths, the CNN's channels per block, the LSTM's size per layer.
DEFAULT_HIDDEN = {"mlp": (256, 128), "cnn": (16, 32), "lstm": (64,)}
SCORE_NAMES = {"classify": "valid_accuracy", "regress": "valid_r2"}


def infer_task(values: Sequence[str]) -> tuple[str, str]:
    """``('classify' | 'regress', why)`` for a target's present values: text, or at most
    ``min(20, max(2, n // 5))`` distinct whole numbers, are classes; other numbers are regressed.

    Examples
    --------
    >>> infer_task(["cat", "dog", "cat"])[0], infer_task(["0", "1"] * 10)[0], infer_task(["0.5", "1.7", "2"])[0]
    ('classify', 'classify', 'regress')
    """
    numbers, _ = parse_numbers(list(values))
    if numbers is None:
        return "classify", "it holds text"
    distinct = np.unique(numbers)
    limit = min(20, max(2, len(numbers) // 5))
    if np.all(distinct == np.round(distinct)) and len(distinct) <= limit:
        return "classify", f"it holds {len(distinct)} distinct whole numbers"
    return "regress", "it holds numbers" if len(distinct) > limit else "it holds fractional numbers"


def target_values(values: Sequence[str], task: str, label_kind: str | None, where: str) -> tuple[np.ndarray, str]:
    """The target as an array (float64 to regress; int64 or str classes) and its kind: 'number', 'integer' or
    'text'. ``label_kind`` (from a model file) fixes the kind; ``where`` names the column in error messages.

    Examples
    --------
    >>> target_values(["2", "1", "2"], "classify", None, "'y'")
    (array([2, 1, 2]), 'integer')
    >>> target_values(["b", "a"], "classify", None, "'y'")[1], target_values(["1.5"], "regress", None, "'y'")[0]
    ('text', array([1.5]))
    """
    numbers, bad = parse_numbers(list(values))
    if task == "regress":
        if numbers is None:
            hint = "the model is a regressor" if label_kind else "regression needs numbers; use --task classify"
            raise CLIError(f"the target {where} holds text ({values[bad]!r}), but {hint}")
        return numbers, "number"
    if label_kind == "text" or (label_kind is None and numbers is None):
        return np.array(list(values), dtype=str), "text"
    if numbers is None:
        raise CLIError(f"the target {where} holds {values[bad]!r}, but the model's classes are whole numbers")
    if not np.all(numbers == np.round(numbers)):
        fractional = numbers[numbers != np.round(numbers)][0]
        raise CLIError(
            f"the target {where} holds fractional numbers ({fractional:g}), which are not classes; use --task regress"
        )
    return numbers.astype(np.int64), "integer"


def check_columns(model: str, features: list[str], kinds: dict[str, str]) -> None:
    """CLIError unless the CNN gets a square number of numeric columns and the LSTM numeric columns."""
    if model == "mlp":
        return
    text = [n for n in features if kinds[n] != "numeric"]
    if text:
        which = f"column {text[0]!r} holds" if len(text) == 1 else f"columns {', '.join(map(repr, text))} hold"
        raise CLIError(
            f"--model {model} takes numeric columns only, but {which} text; use --model mlp (which one-hot encodes "
            "text columns) or leave those columns out of the file"
        )
    side = math.isqrt(len(features))
    if model == "cnn" and side * side != len(features):
        raise CLIError(
            f"--model cnn reads the numeric columns as one square image, but there are {len(features)} (not a "
            f"square number such as {side * side} or {(side + 1) ** 2}); use --model mlp"
        )


def build_preprocessor(features: list[str], kinds: dict[str, str]) -> Any:
    """A ColumnTransformer over the feature matrix's columns: numeric ones imputed with their median and
    standardized; categorical ones imputed with their most frequent value and one-hot encoded (categories not
    seen in training encode as all zeros).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, "a"], [np.nan, "b"], [3.0, np.nan]], dtype=object)
    >>> build_preprocessor(["x", "c"], {"x": "numeric", "c": "categorical"}).fit_transform(X).round(2).tolist()
    [[-1.22, 1.0, 0.0], [0.0, 0.0, 1.0], [1.22, 1.0, 0.0]]
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [i for i, n in enumerate(features) if kinds[n] == "numeric"]
    categorical = [i for i, n in enumerate(features) if kinds[n] != "numeric"]
    parts = []
    if numeric:
        steps = [("impute", SimpleImputer(strategy="median", keep_empty_features=True)), ("scale", StandardScaler())]
        parts.append(("numeric", Pipeline(steps), numeric))
    if categorical:
        impute = SimpleImputer(strategy="most_frequent", keep_empty_features=True)
        onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        parts.append(("categorical", Pipeline([("impute", impute), ("onehot", onehot)]), categorical))
    return ColumnTransformer(parts)


def build_estimator(task: str, model: str, hidden: tuple[int, ...], **options: Any) -> Any:
    """A NeuralNetClassifier (``task='classify'``) or NeuralNetRegressor: ``mlp`` the default network with
    ``hidden`` units per layer; ``cnn`` a :class:`~minitrain.models.SmallCNN` with ``hidden`` channels per block;
    ``lstm`` a :class:`~minitrain.models.RecurrentNet` of ``len(hidden)`` layers of ``hidden[0]`` units. ``options``
    go to the estimator (``lr``, ``max_epochs``, ...).

    Examples
    --------
    >>> build_estimator("regress", "lstm", (32,), max_epochs=3).get_params()["module__hidden_size"]
    32
    """
    from .. import models
    from ..estimators import NeuralNetClassifier, NeuralNetRegressor

    if model == "mlp":
        routed: dict[str, Any] = {"module": None, "module__hidden": tuple(hidden)}
    elif model == "cnn":
        routed = {"module": models.SmallCNN, "module__channels": tuple(hidden)}
    elif model == "lstm":
        if len(set(hidden)) > 1:
            raise CLIError(f"--model lstm: its layers share one size; got --hidden {','.join(map(str, hidden))}")
        routed = {"module": models.RecurrentNet, "module__hidden_size": hidden[0], "module__num_layers": len(hidden)}
    else:
        raise CLIError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    cls = NeuralNetClassifier if task == "classify" else NeuralNetRegressor
    return cls(**routed, **options)


def metrics(task: str, pipeline: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy, F1 (macro) and log-loss of a classifier, or R², MAE and RMSE of a regressor, on ``(X, y)``.

    Log-loss is left out (with a warning) when ``y`` has classes the model never saw.
    """
    import warnings

    from sklearn import metrics as m

    if task == "regress":
        pred = pipeline.predict(X)
        r2 = m.r2_score(y, pred) if len(y) > 1 else float("nan")
        return {"r2": float(r2), "mae": float(m.mean_absolute_error(y, pred)),
                "rmse": math.sqrt(m.mean_squared_error(y, pred))}  # fmt: skip
    pred = pipeline.predict(X)
    out = {"accuracy": float(m.accuracy_score(y, pred)),
           "f1_macro": float(m.f1_score(y, pred, average="macro", zero_division=0))}  # fmt: skip
    classes = pipeline[-1].classes_
    unseen = sorted(set(np.unique(y).tolist()) - set(classes.tolist()))
    if unseen:
        warnings.warn(f"log_loss left out: the data has classes the model was not trained on: {unseen}", stacklevel=2)
    else:
        out["log_loss"] = float(m.log_loss(y, pipeline.predict_proba(X), labels=classes))
    return out


def format_metrics(values: dict[str, float]) -> str:
    """``'accuracy 0.9500  f1_macro 0.9487'``.

    Examples
    --------
    >>> format_metrics({"r2": 0.91234, "mae": 1.5})
    'r2 0.9123  mae 1.5000'
    """
    return "  ".join(f"{k} {v:.4f}" for k, v in values.items())


def make_bundle(pipeline: Any, **facts: Any) -> dict[str, Any]:
    """What ``minitrain train`` saves: the fitted pipeline and the facts ``predict`` and ``evaluate`` need
    (``task``, ``model``, ``target``, ``features``, ``kinds``, ``label_kind``, ...)."""
    return {"kind": BUNDLE_KIND, "version": BUNDLE_VERSION, "pipeline": pipeline, **facts}


def load_bundle(path: str | os.PathLike, backend: Any = None) -> dict[str, Any]:
    """Read a model file of ``minitrain train`` (with :func:`minitrain.load`: no pickle, no code from the file);
    CLIError for anything else."""
    from .. import io

    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:] != b"{":  # not safetensors (whose JSON header follows its 8-byte length)
        raise CLIError(f"{path} is not a model file: `minitrain train` writes models in the safetensors format")
    try:
        obj = io.load(path, backend=backend)
    except ValueError as exc:  # not a minitrain file, truncated, edited, another format version
        raise CLIError(f"{one_line(exc)} (is {path} a model written by `minitrain train`?)") from None
    except TypeError as exc:  # names a class that is not minitrain's or scikit-learn's
        raise CLIError(f"{path}: {one_line(exc)}") from None
    if not isinstance(obj, dict) or obj.get("kind") != BUNDLE_KIND:
        raise CLIError(
            f"{path} holds a {type(obj).__name__} saved with minitrain.save, not a model written by `minitrain train`"
        )
    if obj.get("version") != BUNDLE_VERSION:
        raise CLIError(f"{path}: a model file of layout {obj.get('version')!r}; this minitrain reads {BUNDLE_VERSION}")
    return obj
