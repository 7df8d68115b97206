"""Callbacks: hooks into the training loop (early stopping, schedules, progress, logging, history).

A callback is a :class:`Callback` whose hooks the :class:`~minitrain.training.Trainer` calls with itself;
constructor arguments are hyperparameters, so ``clone`` / ``get_params`` / ``set_params`` work as for estimators.
"""

from .base import Callback, History
from .checkpoint import Checkpoint
from .finetuning import Unfreeze
from .loggers import CSVLogger, EpochLogger, ProgressBar
from .monitoring import GradientMonitor, GradientWarning
from .scheduling import LRScheduler, ReduceLROnPlateau
from .stopping import EarlyStopping
from .trackers import TensorBoard, WandbLogger

__all__ = [
    "CSVLogger", "Callback", "Checkpoint", "EarlyStopping", "EpochLogger", "GradientMonitor", "GradientWarning",
    "History", "LRScheduler", "ProgressBar", "ReduceLROnPlateau", "TensorBoard", "Unfreeze", "WandbLogger",
]  # fmt: skip
