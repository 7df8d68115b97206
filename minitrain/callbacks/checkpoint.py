"""``Checkpoint``: save the training state (best, last, every N epochs) to resume it exactly."""

from __future__ import annotations

import math
import os
from typing import Any

from .base import Callback, _mode, _monitored

__all__ = ["Checkpoint"]


class Checkpoint(Callback):
    """Save everything training needs to go on, after the epochs that ask for it, with :func:`minitrain.save`.

    A checkpoint holds the model (its parameters, buffers and random generators), the optimizer's state, the
    callbacks' states (a schedule's progress, early stopping's counters), the epoch, the history, the shuffling
    generator and the loop's position; for an estimator, the whole fitted estimator as of that epoch. Resume
    with ``estimator.fit(X, y, resume_from=path)`` or ``Trainer.resume(path)``: training continues as if it had
    never stopped.

    Parameters
    ----------
    dirname : str or path-like, default='checkpoints'
        The directory of the files: ``best.safetensors``, ``last.safetensors``, ``epoch_<n>.safetensors``.
    monitor : str, default='valid_loss'
        The history key that decides the best epoch.
    mode : {'auto', 'min', 'max'}, default='auto'
        'auto' is 'min' for names containing 'loss', else 'max'.
    min_delta : float, default=0.0
        The improvement that counts, as :class:`EarlyStopping` counts it: with the same ``monitor``, ``mode``
        and ``min_delta`` both agree on the best epoch.
    save_best, save_last : bool, default=True
        Write ``best.safetensors`` when ``monitor`` improves, ``last.safetensors`` after every epoch.
    every : int or None, default=None
        Also keep ``epoch_<n>.safetensors`` every ``every`` epochs.

    Attributes
    ----------
    best_, best_epoch_ : float, int or None
        The best value of ``monitor`` and its epoch.
    saved_ : list of str
        The files written, in order.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from minitrain import NeuralNetRegressor
    >>> from minitrain.callbacks import Checkpoint
    >>> where = tempfile.mkdtemp()
    >>> X = np.random.default_rng(0).normal(size=(64, 3))
    >>> reg = NeuralNetRegressor(max_epochs=3, callbacks=[Checkpoint(where, monitor="train_loss")], random_state=0)
    >>> _ = reg.fit(X, X.sum(axis=1))
    >>> sorted(os.listdir(where))
    ['best.safetensors', 'last.safetensors']
    >>> last = os.path.join(where, "last.safetensors")
    >>> resumed = NeuralNetRegressor(max_epochs=5, random_state=0).fit(X, X.sum(axis=1), resume_from=last)
    >>> resumed.n_epochs_  # the 3 epochs of the checkpoint, then 2 more
    5
    """

    def __init__(
        self, dirname: Any = "checkpoints", monitor: str = "valid_loss", mode: str = "auto", min_delta: float = 0.0,
        save_best: bool = True, save_last: bool = True, every: int | None = None,
    ) -> None:  # fmt: skip
        self.dirname = dirname
        self.monitor = monitor
        self.mode = mode
        self.min_delta = min_delta
        self.save_best = save_best
        self.save_last = save_last
        self.every = every

    def initialize(self) -> Checkpoint:
        self.best_ = math.nan
        self.best_epoch_: int | None = None
        self.saved_: list[str] = []
        return self

    def on_train_begin(self, trainer: Any) -> None:
        self.mode_ = _mode("Checkpoint", self.monitor, self.mode)
        if self.every is not None and (isinstance(self.every, bool) or not int(self.every) == self.every >= 1):
            raise ValueError(f"Checkpoint: every must be a whole number >= 1 or None, got {self.every!r}")
        if not hasattr(self, "saved_"):
            self.initialize()
        os.makedirs(self.dirname, exist_ok=True)

    def _improved(self, value: float) -> bool:
        if self.best_epoch_ is None:
            return math.isfinite(value)
        return value < self.best_ - self.min_delta if self.mode_ == "min" else value > self.best_ + self.min_delta

    def on_epoch_end(self, trainer: Any) -> None:
        names = []
        if self.save_best:
            value = _monitored("Checkpoint", trainer, self.monitor)
            if self._improved(value):
                self.best_, self.best_epoch_ = value, trainer.epoch
                names.append("best")
        if self.save_last:
            names.append("last")
        if self.every is not None and trainer.epoch % int(self.every) == 0:
            names.append(f"epoch_{trainer.epoch}")
        if not names:
            return
        from ..io import save

        state = trainer.checkpoint_state()
        for name in names:
            path = os.path.join(os.fspath(self.dirname), f"{name}.safetensors")
            save(state, path)
            self.saved_.append(path)
