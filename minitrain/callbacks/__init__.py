"""Callbacks: hooks into the training loop (early stopping, schedules, progress, logging, history).

A callback is a :class:`Callback` whose hooks the :class:`~minitrain.training.Trainer` calls with itself;
constructor arguments are hyperparameters, so ``clone`` / ``get_params`` / ``set_params`` work as for estimators.
"""

from .base import Callback, History
from .loggers import CSVLogger, EpochLogger, ProgressBar
from .scheduling import LRScheduler, ReduceLROnPlateau
from .stopping import EarlyStopping

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "EpochLogger", "History", "LRScheduler", "ProgressBar",
           "ReduceLROnPlateau"]  # fmt: skip
