"""``EarlyStopping``: stop when a monitored value stops improving, and keep the best weights."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .base import Callback, _mode, _monitored

__all__ = ["EarlyStopping"]


class EarlyStopping(Callback):
    """Stop training once ``monitor`` has not improved for ``patience`` epochs; keep the best weights.

    Parameters
    ----------
    monitor : str, default='valid_loss'
        Key of ``trainer.history`` read after each epoch ('train_loss', 'valid_score', ...).
    patience : int, default=5
        Training stops at the end of the ``patience``-th epoch in a row without improvement.
    min_delta : float, default=0.0
        An improvement must beat the best value so far by more than this.
    mode : {'auto', 'min', 'max'}, default='auto'
        Whether lower or higher is better; 'auto' means 'min' for names containing 'loss', else 'max'.
    restore_best_weights : bool, default=True
        When training ends (stopped, out of epochs, or interrupted), load the weights of the best epoch.

    Attributes
    ----------
    best_ : float
        Best monitored value.
    best_epoch_ : int or None
        Epoch of ``best_``.
    stopped_epoch_ : int or None
        Epoch after which this callback stopped training; None if it did not.

    Examples
    --------
    >>> import numpy as np
    >>> from minitrain import data, functional as F, nn, optim, training
    >>> model = nn.Linear(2, 1, bias=False, backend="numpy")  # zero inputs: the loss cannot improve
    >>> crit = lambda out, y, w, n: F.mse_loss(out, y.reshape(-1, 1))
    >>> stopper = EarlyStopping(monitor="train_loss", patience=3)
    >>> trainer = training.Trainer(model, crit, optim.SGD(model, lr=0.1), batch_size=4, callbacks=[stopper])
    >>> _ = trainer.fit(data.ArrayDataset(np.zeros((8, 2)), np.ones(8), backend="numpy"), epochs=100)
    >>> stopper.best_epoch_, stopper.stopped_epoch_, trainer.epoch
    (1, 4, 4)
    """

    def __init__(
        self, monitor: str = "valid_loss", patience: int = 5, min_delta: float = 0.0, mode: str = "auto",
        restore_best_weights: bool = True,
    ) -> None:  # fmt: skip
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.mode = mode
        self.restore_best_weights = restore_best_weights

    def initialize(self) -> EarlyStopping:
        self.best_ = math.nan
        self.best_epoch_: int | None = None
        self.stopped_epoch_: int | None = None
        self.wait_ = 0
        self.best_weights_: list[Any] | None = None
        return self

    def on_train_begin(self, trainer: Any) -> None:
        self.mode_ = _mode("EarlyStopping", self.monitor, self.mode)
        if not isinstance(self.patience, numbers.Integral) or self.patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an integer >= 0, got {self.patience!r}")
        if not self.min_delta >= 0:
            raise ValueError(f"EarlyStopping: min_delta must be >= 0, got {self.min_delta!r}")
        if not hasattr(self, "wait_"):
            self.initialize()

    def _improved(self, value: float) -> bool:
        if self.best_epoch_ is None:
            return math.isfinite(value)
        return value < self.best_ - self.min_delta if self.mode_ == "min" else value > self.best_ + self.min_delta

    def on_epoch_end(self, trainer: Any) -> None:
        value = _monitored("EarlyStopping", trainer, self.monitor)
        if self._improved(value):
            self.best_, self.best_epoch_, self.wait_ = value, trainer.epoch, 0
            if self.restore_best_weights:
                self.best_weights_ = trainer.get_weights()
            return
        self.wait_ += 1
        if self.wait_ >= self.patience:
            trainer.stop_training = True
            self.stopped_epoch_ = trainer.epoch

    def on_train_end(self, trainer: Any) -> None:
        weights = getattr(self, "best_weights_", None)
        if self.restore_best_weights and weights is not None and self.best_epoch_ != trainer.epoch:
            trainer.set_weights(weights)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        weights = state.get("best_weights_")
        if weights is not None:  # NumPy copies: pickles and checkpoints load without the backend (a GPU)
            state["best_weights_"] = [
                a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a for a in weights
            ]
        return state
