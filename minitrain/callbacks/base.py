"""The callback protocol (``Callback``), the per-epoch ``History``, and helpers shared by the callbacks."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

__all__ = ["Callback", "History"]


class Callback(BaseEstimator):
    """Base class of the callbacks: override any of the hooks.

    Every hook receives the running :class:`~minitrain.training.Trainer`, which exposes ``module``,
    ``optimizer``, ``history``, ``epoch`` (1-based, the epoch in progress or just finished), ``lr``
    (read and write), ``stop_training`` (set it to stop after this epoch), ``get_weights()`` /
    ``set_weights()`` and ``estimator`` (the estimator being fitted, or None). Constructor arguments are
    hyperparameters (``get_params`` / ``set_params`` / ``clone`` work as for estimators), so an estimator
    can route ``callbacks__<name>__<param>`` to them.

    Examples
    --------
    A callback that halves the learning rate every ``every`` epochs and records it:

    >>> import numpy as np
    >>> from minitrain import data, functional as F, nn, optim, training
    >>> from minitrain.callbacks import Callback
    >>> class HalveLR(Callback):
    ...     def __init__(self, every=2):
    ...         self.every = every
    ...
    ...     def on_epoch_end(self, trainer):
    ...         trainer.history.record("halved", trainer.epoch % self.every == 0)
    ...         if trainer.epoch % self.every == 0:
    ...             trainer.lr = trainer.lr / 2
    >>> model = nn.Linear(2, 1, backend="numpy")
    >>> crit = lambda out, y, w, n: F.mse_loss(out, y.reshape(-1, 1))
    >>> trainer = training.Trainer(model, crit, optim.SGD(model, lr=0.1), batch_size=4, callbacks=[HalveLR()])
    >>> _ = trainer.fit(data.ArrayDataset(np.ones((8, 2)), np.ones(8), backend="numpy"), epochs=4)
    >>> trainer.history[:, "halved"], trainer.lr, HalveLR(every=3).get_params()
    ([False, True, False, True], 0.025, {'every': 3})
    """

    def initialize(self) -> Callback:
        """Reset state kept from a previous fit; called when a fit starts (not on ``partial_fit``)."""
        return self

    def on_train_begin(self, trainer: Any) -> None:
        """Called once before the first epoch of a ``fit`` / ``partial_fit`` call."""

    def on_epoch_begin(self, trainer: Any) -> None:
        """Called at the start of each epoch."""

    def on_batch_end(self, trainer: Any, batch: int, loss: float) -> None:
        """Called after each optimizer step with the batch index and its loss."""

    def on_epoch_end(self, trainer: Any) -> None:
        """Called after each epoch, once its losses and scores are in ``trainer.history``."""

    def on_train_end(self, trainer: Any) -> None:
        """Called once when training ends (also after an interruption or an error)."""


class History(Callback):
    """One record (a dict) per epoch: ``epoch``, ``train_loss``, ``valid_loss``, ``valid_score``, ``lr``,
    ``duration`` and ``<metric>_best`` flags.

    Index it like a list of dicts, or by ``[rows, key]`` to get a column (skorch's notation); ``column``
    does the same as a NumPy array.

    Examples
    --------
    >>> h = History()
    >>> h.new_epoch(epoch=1, train_loss=0.9)
    >>> h.new_epoch(epoch=2, train_loss=0.5)
    >>> h[:, "train_loss"], h[-1, "epoch"], h.column("train_loss").tolist()
    ([0.9, 0.5], 2, [0.9, 0.5])
    """

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def initialize(self) -> History:
        self.records = []
        return self

    def new_epoch(self, **values: Any) -> None:
        """Start a record for a new epoch."""
        self.records.append(dict(values))

    def record(self, key: str, value: Any) -> None:
        """Set ``key`` in the current (last) epoch's record."""
        if not self.records:
            raise IndexError("History.record: no epoch has started")
        self.records[-1][key] = value

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Any:
        return iter(self.records)

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, tuple):
            return self.records[key]
        rows, col = key
        picked = self.records[rows]
        if isinstance(rows, slice):
            return [self._get(r, col) for r in picked]
        return self._get(picked, col)

    @staticmethod
    def _get(record: dict[str, Any], col: Any) -> Any:
        if isinstance(col, (list, tuple)):
            return tuple(History._get(record, c) for c in col)
        if col not in record:
            raise KeyError(f"{col!r} was not recorded in epoch {record.get('epoch')}; recorded: {sorted(record)}")
        return record[col]

    def column(self, key: str, default: Any = np.nan) -> np.ndarray:
        """The values of ``key`` over all epochs as an array (``default`` where an epoch lacks it)."""
        return np.array([r.get(key, default) for r in self.records])

    def to_dataframe(self) -> Any:
        """The records as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame.from_records(self.records)

    def __repr__(self) -> str:
        keys = sorted({k for r in self.records for k in r})
        return f"History({len(self.records)} epochs, keys={keys})"


def _monitored(owner: str, trainer: Any, monitor: str) -> float:
    """The value of ``monitor`` in the last epoch's record, or an error saying how to get it recorded."""
    record = trainer.history[-1]
    if monitor not in record:
        hint = (
            " It needs validation data: set the estimator's `validation_fraction` / `train_split`, pass `valid` "
            "to Trainer.fit, or monitor 'train_loss'."
            if monitor.startswith("valid")
            else " Record it from a callback placed before this one, or monitor 'train_loss'."
        )
        raise ValueError(
            f"{owner} monitors {monitor!r}, which epoch {record.get('epoch')} did not record (recorded: "
            f"{', '.join(sorted(record))}).{hint}"
        )
    return float(record[monitor])


def _mode(owner: str, monitor: str, mode: str) -> str:
    """'min' or 'max'; 'auto' is 'min' for a monitored name containing 'loss', else 'max'."""
    if mode == "auto":
        return "min" if "loss" in monitor else "max"
    if mode not in ("min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    return mode
