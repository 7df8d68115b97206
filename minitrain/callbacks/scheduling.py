"""Learning-rate callbacks: step any schedule of :mod:`minitrain.schedules`, or reduce the lr on a plateau."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import schedules
from .base import Callback, _mode, _monitored

__all__ = ["LRScheduler", "ReduceLROnPlateau"]


def _same_optimizer(scheduler: Any, trainer: Any) -> bool:
    return scheduler is not None and getattr(scheduler, "optimizer", None) is trainer.optimizer


class _SchedulerState:
    """A callback's schedule saved without its optimizer (pickles, checkpoints): ``scheduler_`` is rebuilt on the
    trainer's optimizer at the next ``on_train_begin`` and continues from this state."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # type: ignore[misc]
        scheduler = state.get("scheduler_")
        if scheduler is not None:
            state["scheduler_"] = None
            state["scheduler_state_"] = scheduler.state_dict()
        return state

    def _continue(self, scheduler: Any) -> Any:
        """``scheduler`` (just built) continued from the state of the one this callback had, if any."""
        saved = self.__dict__.pop("scheduler_state_", None)
        if saved is not None:
            scheduler.load_state_dict(saved)
        return scheduler


class LRScheduler(_SchedulerState, Callback):
    """Step a learning-rate schedule from :mod:`minitrain.schedules` once per epoch or once per batch.

    Parameters
    ----------
    schedule : str, class, callable or schedules.LRScheduler
        A schedule's name (``"StepLR"``) or class, or any ``callable(optimizer, **kwargs)`` returning one: it
        is built on the trainer's optimizer when training begins (anew after ``initialize``). An instance must
        already schedule the trainer's optimizer, and is stepped as is.
    step_every : {'epoch', 'batch'}, default='epoch'
        When to step: after each epoch, or after each optimizer step.
    monitor : str, default='valid_loss'
        History key passed to ``step`` by schedules that need a metric (``ReduceLROnPlateau``).
    **kwargs
        Arguments of the schedule (e.g. ``step_size=10``); hyperparameters like the others.

    Attributes
    ----------
    scheduler_ : schedules.LRScheduler
        The schedule being stepped.

    Examples
    --------
    >>> import numpy as np
    >>> from minitrain import data, functional as F, nn, optim, training
    >>> model = nn.Linear(2, 1, backend="numpy")
    >>> crit = lambda out, y, w, n: F.mse_loss(out, y.reshape(-1, 1))
    >>> sched = LRScheduler("StepLR", step_size=2, gamma=0.5)
    >>> trainer = training.Trainer(model, crit, optim.SGD(model, lr=0.1), batch_size=4, callbacks=[sched])
    >>> _ = trainer.fit(data.ArrayDataset(np.ones((8, 2)), np.ones(8), backend="numpy"), epochs=5)
    >>> trainer.history[:, "lr"]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    def __init__(self, schedule: Any, step_every: str = "epoch", monitor: str = "valid_loss", **kwargs: Any) -> None:
        clash = [k for k in kwargs if hasattr(type(self), k)]
        if clash:
            raise TypeError(f"LRScheduler: schedule arguments {clash} clash with the callback's own attributes")
        self.schedule = schedule
        self.step_every = step_every
        self.monitor = monitor
        self._kwargs = tuple(kwargs)
        vars(self).update(kwargs)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {**super().get_params(deep), **{k: getattr(self, k) for k in self._kwargs}}

    def initialize(self) -> LRScheduler:
        self.scheduler_: Any = None
        self.__dict__.pop("scheduler_state_", None)
        return self

    def _build(self, optimizer: Any) -> Any:
        kwargs = {k: getattr(self, k) for k in self._kwargs}
        factory = self.schedule
        if isinstance(factory, schedules.LRScheduler):
            if factory.optimizer is not optimizer or kwargs:
                raise ValueError(
                    "LRScheduler: the schedule instance does not schedule the trainer's optimizer (estimators build "
                    "theirs in fit); pass the schedule's name or class and its arguments instead, e.g. "
                    "LRScheduler('StepLR', step_size=10)"
                )
            return factory
        if isinstance(factory, str):
            names = sorted(n for n, c in vars(schedules).items() if isinstance(c, type)
                           and issubclass(c, schedules.LRScheduler) and c is not schedules.LRScheduler)  # fmt: skip
            if factory not in names:
                raise ValueError(f"LRScheduler: unknown schedule {factory!r}; choose one of {', '.join(names)}")
            factory = getattr(schedules, factory)
        if not callable(factory):
            raise TypeError(f"LRScheduler: schedule must be a name, a class or a schedule, got {factory!r}")
        return factory(optimizer, **kwargs)

    def on_train_begin(self, trainer: Any) -> None:
        if self.step_every not in ("epoch", "batch"):
            raise ValueError(f"LRScheduler: step_every must be 'epoch' or 'batch', got {self.step_every!r}")
        old = getattr(self, "scheduler_", None)
        if not _same_optimizer(old, trainer):  # a new run, or this one continued on another optimizer object
            if old is not None:
                self.scheduler_state_ = old.state_dict()
            self.scheduler_ = self._continue(self._build(trainer.optimizer))
        self.plateau_ = isinstance(self.scheduler_, schedules.ReduceLROnPlateau)
        if self.plateau_ and self.step_every == "batch":
            raise ValueError("LRScheduler: ReduceLROnPlateau steps once per epoch on a metric; use step_every='epoch'")

    def on_batch_end(self, trainer: Any, batch: int, loss: float) -> None:
        if self.step_every == "batch":
            self.scheduler_.step()

    def on_epoch_end(self, trainer: Any) -> None:
        if self.step_every == "epoch":
            if self.plateau_:
                self.scheduler_.step(_monitored("LRScheduler", trainer, self.monitor))
            else:
                self.scheduler_.step()


class ReduceLROnPlateau(_SchedulerState, Callback):
    """Multiply the lr by ``factor`` once ``monitor`` has not improved for more than ``patience`` epochs.

    A callback over :class:`minitrain.schedules.ReduceLROnPlateau` (see it for ``threshold``, ``cooldown``,
    ``min_lr`` and ``eps``), stepped with the monitored history value after each epoch.

    Parameters
    ----------
    monitor : str, default='valid_loss'
    mode : {'auto', 'min', 'max'}, default='auto'
        'auto' means 'min' for names containing 'loss', else 'max'.
    factor, patience, threshold, threshold_mode, cooldown, min_lr, eps
        As in :class:`minitrain.schedules.ReduceLROnPlateau`.

    Examples
    --------
    >>> import numpy as np
    >>> from minitrain import data, functional as F, nn, optim, training
    >>> model = nn.Linear(2, 1, bias=False, backend="numpy")  # zero inputs: the loss cannot improve
    >>> crit = lambda out, y, w, n: F.mse_loss(out, y.reshape(-1, 1))
    >>> plateau = ReduceLROnPlateau(monitor="train_loss", factor=0.5, patience=1)
    >>> trainer = training.Trainer(model, crit, optim.SGD(model, lr=0.1), batch_size=4, callbacks=[plateau])
    >>> _ = trainer.fit(data.ArrayDataset(np.zeros((8, 2)), np.ones(8), backend="numpy"), epochs=5)
    >>> trainer.history[:, "lr"], trainer.lr
    ([0.1, 0.1, 0.1, 0.05, 0.05], 0.025)
    """

    def __init__(
        self, monitor: str = "valid_loss", mode: str = "auto", factor: float = 0.1, patience: int = 10,
        threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0, eps: float = 1e-8,
    ) -> None:  # fmt: skip
        self.monitor = monitor
        self.mode = mode
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.eps = eps

    def initialize(self) -> ReduceLROnPlateau:
        self.scheduler_: Any = None
        self.__dict__.pop("scheduler_state_", None)
        return self

    def on_train_begin(self, trainer: Any) -> None:
        old = getattr(self, "scheduler_", None)
        if not _same_optimizer(old, trainer):  # a new run, or this one continued on another optimizer object
            if old is not None:
                self.scheduler_state_ = old.state_dict()
            self.scheduler_ = schedules.ReduceLROnPlateau(
                trainer.optimizer, mode=_mode("ReduceLROnPlateau", self.monitor, self.mode), factor=self.factor,
                patience=self.patience, threshold=self.threshold, threshold_mode=self.threshold_mode,
                cooldown=self.cooldown, min_lr=self.min_lr, eps=self.eps,
            )  # fmt: skip
            self._continue(self.scheduler_)

    def on_epoch_end(self, trainer: Any) -> None:
        self.scheduler_.step(_monitored("ReduceLROnPlateau", trainer, self.monitor))
