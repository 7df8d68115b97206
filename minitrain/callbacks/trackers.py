"""Experiment trackers: ``TensorBoard`` (through tensorboardX) and ``WandbLogger`` (Weights & Biases).

Both log, once per epoch (the step is the epoch number), every number the epoch recorded in the history
(``train_loss``, ``valid_loss``, ``valid_score``, ``lr``, ``duration`` in seconds, and whatever other callbacks
record, e.g. :class:`~minitrain.callbacks.GradientMonitor`'s ``grad_norm/<layer>``), under the history's keys,
plus ``samples_per_sec``: training samples per second of the epoch's duration. Keys that a callback placed after
the tracker records are logged too, with the same step, when the next epoch starts or training ends. Their
packages are imported when a tracker is built (checked) and when training starts, never with minitrain.
"""

from __future__ import annotations

import importlib
import importlib.util
import numbers
import os
import sys
import time
from typing import Any

from .base import Callback

__all__ = ["TensorBoard", "WandbLogger", "epoch_scalars"]


def _require(owner: str, module: str, extra: str, load: bool = False) -> Any:
    """Check (cheaply) or import ``module``; an ImportError saying how to install it if it is missing."""
    message = f'{owner} needs the {module} package: pip install "minitrain[{extra}]" (or pip install {module})'
    if load:
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"{message}; importing it failed: {exc}") from exc
    try:
        found = sys.modules[module] is not None if module in sys.modules else importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ImportError(message)
    return None


def epoch_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a history record that trackers log: every real value but the epoch and the ``*_best`` flags.

    Examples
    --------
    >>> epoch_scalars({"epoch": 2, "train_loss": 0.5, "train_loss_best": True, "lr": 0.01, "note": "x"})
    {'train_loss': 0.5, 'lr': 0.01}
    """
    return {
        k: float(v)
        for k, v in record.items()
        if k != "epoch" and isinstance(v, numbers.Real) and not isinstance(v, bool)
        and not k.endswith("_best")
    }  # fmt: skip


class _Tracker(Callback):
    """Logs each epoch's scalars with ``_write(scalars, step)``; late keys of an epoch follow at the next hook."""

    def on_epoch_begin(self, trainer: Any) -> None:
        self._write_late()
        self._seen = trainer.n_samples_seen

    def on_epoch_end(self, trainer: Any) -> None:
        record = trainer.history[-1]
        scalars = epoch_scalars(record)
        seen = trainer.n_samples_seen - getattr(self, "_seen", trainer.n_samples_seen)
        if seen and record.get("duration"):
            scalars["samples_per_sec"] = seen / float(record["duration"])
        step = int(record["epoch"])
        self._write(scalars, step)
        self._logged = (record, step, set(scalars))

    def on_train_end(self, trainer: Any) -> None:
        self._write_late()

    def _write_late(self) -> None:
        logged = getattr(self, "_logged", None)
        self._logged = None
        if logged is not None:
            record, step, keys = logged
            late = {k: v for k, v in epoch_scalars(record).items() if k not in keys}
            if late:
                self._write(late, step)

    def _write(self, scalars: dict[str, float], step: int) -> None:
        """Send ``scalars`` for ``step`` to the tracker; every tracker implements it."""
        raise NotImplementedError(f"{type(self).__name__} must implement _write(scalars, step)")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_logged", None)
        return state


class TensorBoard(_Tracker):
    """Write the epochs to TensorBoard event files (needs tensorboardX: ``pip install "minitrain[monitor]"``).

    Each epoch writes a scalar per history number (see :mod:`minitrain.callbacks.trackers`) at step ``epoch``;
    every ``histogram_freq`` epochs, a histogram of each parameter (``weights/<name>``) and of its gradient at
    the epoch's last batch (``gradients/<name>``). View them with ``tensorboard --logdir <log_dir>``. A writer is
    opened when training starts and closed when it ends (each ``fit`` / ``partial_fit`` call adds an event file
    to ``log_dir``), so a fitted estimator holding this callback pickles.

    Parameters
    ----------
    log_dir : str or path-like, optional
        Directory of the event files; default: tensorboardX's ``runs/<date>_<host>``. Give each run its own.
    histogram_freq : int, default=0
        Epochs between histograms (0: none).

    Attributes
    ----------
    log_dir_ : str
        The directory written to.

    Examples
    --------
    >>> TensorBoard("runs/exp1", histogram_freq=5)
    TensorBoard(histogram_freq=5, log_dir='runs/exp1')
    >>> from minitrain import MLPClassifier
    >>> clf = MLPClassifier(callbacks=[TensorBoard("runs/exp1")])  # then clf.fit(X, y) writes runs/exp1
    """

    def __init__(self, log_dir: str | os.PathLike[str] | None = None, histogram_freq: int = 0) -> None:
        self.log_dir = log_dir
        self.histogram_freq = histogram_freq
        _require("TensorBoard", "tensorboardX", "monitor")

    def on_train_begin(self, trainer: Any) -> None:
        if not (isinstance(self.histogram_freq, numbers.Integral) and self.histogram_freq >= 0):
            raise ValueError(f"TensorBoard: histogram_freq must be an integer >= 0, got {self.histogram_freq!r}")
        tbx = _require("TensorBoard", "tensorboardX", "monitor", load=True)
        self._close()
        log_dir = None if self.log_dir is None else os.fspath(self.log_dir)
        # event files are named after the second they are opened: a suffix keeps those of quick fits apart
        self.writer_ = tbx.SummaryWriter(log_dir, filename_suffix=f".{time.time_ns()}")
        self.log_dir_ = self.writer_.logdir

    def _write(self, scalars: dict[str, float], step: int) -> None:
        for key, value in scalars.items():
            self.writer_.add_scalar(key, value, step)

    def on_epoch_end(self, trainer: Any) -> None:
        super().on_epoch_end(trainer)
        epoch = trainer.history[-1]["epoch"]
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            be = trainer.module.backend
            for name, p in trainer.module.named_parameters():
                self._histogram(f"weights/{name}", be.to_numpy(p.data), epoch)
                if p.grad is not None and p.requires_grad:
                    self._histogram(f"gradients/{name}", be.to_numpy(p.grad), epoch)
        self.writer_.flush()

    def _histogram(self, tag: str, values: Any, step: int) -> None:
        if values.size and bool((abs(values) < float("inf")).all()):  # tensorboardX rejects NaN / inf
            self.writer_.add_histogram(tag, values.reshape(-1), step)

    def on_train_end(self, trainer: Any) -> None:
        if getattr(self, "writer_", None) is not None:
            super().on_train_end(trainer)
        self._close()

    def _close(self) -> None:
        if getattr(self, "writer_", None) is not None:
            self.writer_.close()
        self.writer_ = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["writer_"] = None  # open files are not pickled; training opens a new writer
        return state


class WandbLogger(_Tracker):
    """Log the epochs to Weights & Biases (needs wandb: ``pip install "minitrain[wandb]"``).

    Each epoch logs every history number (see :mod:`minitrain.callbacks.trackers`) and ``epoch`` at step
    ``epoch``. When training starts it starts a run (``wandb.init``) whose config holds the estimator's simple
    parameters and ``config``, and finishes it when training ends; if a run is already active (you called
    ``wandb.init``), it logs to that run and leaves it open.

    Parameters
    ----------
    project, name : str, optional
        The run's project and name.
    mode : {'online', 'offline', 'disabled'}, optional
        Default: wandb's (``WANDB_MODE``, else online). 'offline' writes the run under ``save_dir`` for a later
        ``wandb sync``.
    save_dir : str or path-like, optional
        Where wandb writes its files (wandb's ``dir``).
    config : dict, optional
        Added to the run's config.
    init_kwargs : dict, optional
        Other arguments of ``wandb.init`` (``entity``, ``tags``, ``group``, ``settings``, ...).

    Attributes
    ----------
    run_ : wandb Run or None
        The run being logged to, during training.
    run_id_ : str
        The id of the last run logged to.

    Examples
    --------
    >>> WandbLogger(project="digits", mode="offline")
    WandbLogger(mode='offline', project='digits')
    """

    def __init__(
        self, project: str | None = None, name: str | None = None, mode: str | None = None,
        save_dir: str | os.PathLike[str] | None = None, config: dict[str, Any] | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        self.project = project
        self.name = name
        self.mode = mode
        self.save_dir = save_dir
        self.config = config
        self.init_kwargs = init_kwargs
        _require("WandbLogger", "wandb", "wandb")

    def on_train_begin(self, trainer: Any) -> None:
        wandb = _require("WandbLogger", "wandb", "wandb", load=True)
        self._finish()
        if wandb.run is not None:
            self.run_, self.owns_run_ = wandb.run, False
        else:
            config = _simple_params(trainer.estimator)
            config.update(self.config or {})
            kwargs = {"project": self.project, "name": self.name, "mode": self.mode, "config": config}
            if self.save_dir is not None:
                kwargs["dir"] = os.fspath(self.save_dir)
            self.run_, self.owns_run_ = wandb.init(**kwargs, **(self.init_kwargs or {})), True
        self.run_id_ = self.run_.id

    def _write(self, scalars: dict[str, float], step: int) -> None:
        self.run_.log({**scalars, "epoch": step}, step=step)

    def on_train_end(self, trainer: Any) -> None:
        if getattr(self, "run_", None) is not None:
            super().on_train_end(trainer)
        self._finish()

    def _finish(self) -> None:
        if getattr(self, "run_", None) is not None and self.owns_run_:
            self.run_.finish()
        self.run_ = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["run_"] = None
        return state


def _simple_params(estimator: Any) -> dict[str, Any]:
    """The estimator's parameters that are plain numbers, strings, booleans or None (for a run's config)."""
    if estimator is None or not hasattr(estimator, "get_params"):
        return {}
    params = estimator.get_params(deep=False)
    return {k: v for k, v in params.items() if v is None or isinstance(v, (str, bool, numbers.Number))}
