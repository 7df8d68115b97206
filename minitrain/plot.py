"""Plots of training runs with matplotlib (``pip install "minitrain[plot]"``), imported when a plot is drawn."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["learning_curves"]

#: Panels by name: the history keys they draw, with their legend labels.
PANELS = {
    "loss": (("train_loss", "train"), ("valid_loss", "validation")),
    "score": (("train_score", "train"), ("valid_score", "validation")),
}


def learning_curves(
    source: Any,
    metrics: Sequence[str] = ("loss", "score"),
    ax: Any = None,
    *,
    best_epoch: int | None = None,
    stopped_epoch: int | None = None,
) -> Any:
    """Plot the training and validation loss and score per epoch; mark the best epoch and the early-stopping point.

    Parameters
    ----------
    source : estimator, History or list of dict
        A fitted estimator of minitrain (its ``history_``; for the MLPs, without a history, their ``loss_curve_``
        and ``validation_scores_``, which also makes scikit-learn's own MLPs work), a
        :class:`~minitrain.callbacks.History` or its records.
    metrics : sequence of str, default=('loss', 'score')
        One panel per entry: 'loss' draws ``train_loss`` and ``valid_loss``, 'score' draws ``valid_score`` (and
        ``train_score`` if recorded); any other name draws that history key, or every key starting with
        ``<name>/`` (e.g. 'grad_norm' for :class:`~minitrain.callbacks.GradientMonitor`'s). Panels without data
        are left out.
    ax : matplotlib Axes or sequence of Axes, optional
        Where to draw, one Axes per panel drawn; by default a new figure with the panels side by side.
    best_epoch, stopped_epoch : int, optional
        Mark these epochs as the best one and the early-stopping point instead of those found in ``source``
        (e.g. for the history of a hand-written training loop).

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on. A new figure is not registered with pyplot (nothing opens a window, nothing leaks):
        save it with ``fig.savefig("curves.png")``; a notebook displays it. To draw into pyplot's figures, pass
        ``ax`` from ``plt.subplots``.

    The best epoch is the one whose weights an early stopping kept (the estimator's EarlyStopping callback, or an
    MLP's best validation score or training loss), else the epoch of the lowest validation (or training) loss; the
    early-stopping point is marked when an EarlyStopping callback or an MLP's ``n_iter_no_change`` stopped training.

    Examples
    --------
    >>> from minitrain.callbacks import History
    >>> history = History()
    >>> for epoch, (loss, valid) in enumerate([(1.0, 1.1), (0.6, 0.8), (0.4, 0.9)], start=1):
    ...     history.new_epoch(epoch=epoch, train_loss=loss, valid_loss=valid, valid_score=1 - valid)
    >>> fig = learning_curves(history)
    >>> [a.get_ylabel() for a in fig.axes], fig.axes[0].get_legend_handles_labels()[1]
    (['loss', 'score'], ['train', 'validation', 'best epoch 2'])
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('learning_curves needs matplotlib: pip install "minitrain[plot]"') from None
    records, best, stopped = _curves(source)
    best = best if best_epoch is None else best_epoch
    stopped = stopped if stopped_epoch is None else stopped_epoch
    epochs = np.array([r.get("epoch", i + 1) for i, r in enumerate(records)], dtype=float)
    panels = [(name, lines) for name in metrics if (lines := _lines(name, records))]
    if not panels:
        keys = sorted({k for r in records for k in r})
        raise ValueError(f"learning_curves: nothing to plot for metrics {list(metrics)}; recorded: {keys}")
    if ax is None:
        fig = Figure(figsize=(5.0 * len(panels), 3.8), layout="constrained")
        axes = list(fig.subplots(1, len(panels), squeeze=False)[0])
    else:
        axes = list(ax) if isinstance(ax, (Sequence, np.ndarray)) else [ax]
        if len(axes) != len(panels):
            raise ValueError(f"learning_curves: {len(panels)} panels ({[n for n, _ in panels]}) but {len(axes)} Axes")
        fig = axes[0].figure
    for a, (name, lines) in zip(axes, panels, strict=True):
        for label, values, color in lines:
            a.plot(epochs, values, marker="o" if len(epochs) < 30 else None, markersize=3, label=label, color=color)
        if best is not None:
            a.axvline(best, color="tab:green", linestyle="--", linewidth=1, label=f"best epoch {best}")
        if stopped is not None:
            a.axvline(stopped, color="tab:red", linestyle=":", linewidth=1.5, label=f"early stop (epoch {stopped})")
        a.set_xlabel("epoch")
        a.set_ylabel(name)
        a.grid(alpha=0.3)
        a.legend(fontsize="small")
    return fig


def _lines(name: str, records: list[dict[str, Any]]) -> list[tuple[str, np.ndarray, str]]:
    """The (label, values, color) of a panel's curves that have at least one value; train and validation keep
    their colors across panels."""
    keys = {k for r in records for k in r}
    if name in PANELS:
        pairs = PANELS[name]
    elif name in keys:
        pairs = ((name, name),)
    else:
        prefix = name.rstrip("/") + "/"
        pairs = tuple((k, k[len(prefix) :]) for k in sorted(keys) if k.startswith(prefix))
    out = []
    for i, (key, label) in enumerate(pairs):
        values = np.array([_number(r.get(key)) for r in records], dtype=float)
        if not np.isnan(values).all():
            out.append((label, values, f"C{i}"))
    return out


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _curves(source: Any) -> tuple[list[dict[str, Any]], int | None, int | None]:
    """The records to plot, the best epoch and the epoch after which early stopping ended training."""
    history = getattr(source, "history_", None)
    if hasattr(source, "records"):
        records = list(source.records)
    elif isinstance(source, (list, tuple)):
        records = list(source)
    elif history is not None and len(history):
        records = list(history.records)
    elif getattr(source, "loss_curve_", None) is not None:
        scores, losses = getattr(source, "validation_scores_", None), getattr(source, "validation_loss_curve_", None)
        records = [{"epoch": i + 1, "train_loss": loss} for i, loss in enumerate(source.loss_curve_)]
        for key, values in (("valid_score", scores), ("valid_loss", losses)):
            for r, v in zip(records, values or (), strict=False):
                r[key] = v
    else:
        raise ValueError(
            f"learning_curves: {type(source).__name__} has no training history; fit the estimator first, or pass "
            "a History"
        )
    if not records:
        raise ValueError("learning_curves: the history has no epoch")
    best, stopped = _stopping(source, records)
    if best is None:
        key = "valid_loss" if any(_finite(r.get("valid_loss")) for r in records) else "train_loss"
        values = [_number(r.get(key)) for r in records]
        if any(math.isfinite(v) for v in values):
            i = int(np.nanargmin(values))
            best = int(records[i].get("epoch", i + 1))
    return records, best, stopped


def _finite(value: Any) -> bool:
    return math.isfinite(_number(value))


def _stopping(source: Any, records: list[dict[str, Any]]) -> tuple[int | None, int | None]:
    """What an estimator's early stopping recorded: the best epoch, and the epoch it stopped after (or None)."""
    callbacks = getattr(source, "callbacks_", None) or getattr(source, "callbacks", None) or ()
    for cb in (c[1] if isinstance(c, tuple) else c for c in callbacks):
        if type(cb).__name__ == "EarlyStopping" and getattr(cb, "best_epoch_", None) is not None:
            return cb.best_epoch_, cb.stopped_epoch_
    curve = getattr(source, "loss_curve_", None)
    if curve is None or not hasattr(source, "n_iter_no_change") or not len(curve):
        return None, None
    offset = max(len(records) - len(curve), 0)  # the curves cover the last fit; the history maybe more (warm start)
    scores = getattr(source, "validation_scores_", None)
    values = scores if getattr(source, "early_stopping", False) and scores else [-v for v in curve]
    if not any(math.isfinite(v) for v in values):
        return None, None
    i = min(offset + int(np.nanargmax(values)), len(records) - 1)
    best = int(records[i].get("epoch", i + 1))
    stopped_early = getattr(source, "_no_improvement_count", 0) > source.n_iter_no_change
    return best, int(records[-1].get("epoch", len(records))) if stopped_early else None
