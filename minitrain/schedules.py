"""Learning-rate schedulers (PyTorch's names) that set ``group['lr']`` in an optimizer's parameter groups.

The step count ``t`` counts calls to ``step()``: epochs if you step once per epoch, batches if once per batch.
Closed-form schedulers give the lr at step ``t`` from a group's base lr in ``lr_at``, so they compose.
"""

from __future__ import annotations

import bisect
import copy
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any


def _number(owner: str, name: str, value: Any, low: float, high: float = math.inf, *, open_low: bool = False) -> float:
    """``value`` as a float in ``[low, high]`` (``(low, high]`` with ``open_low``), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__}")
    if not low <= float(value) <= high or (open_low and float(value) == low):
        raise ValueError(f"{owner}: {name} must be in {'(' if open_low else '['}{low:g}, {high:g}], got {value!r}")
    return float(value)


def _integer(owner: str, name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _groups(owner: str, optimizer: Any) -> list[dict[str, Any]]:
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not all(isinstance(g, dict) and "lr" in g for g in groups):
        raise TypeError(f"{owner} needs an optimizer with param_groups (dicts with 'lr'), got {optimizer!r}")
    return groups


class LRScheduler:
    """Base of the schedulers: sets each group's lr from its base lr and the step count.

    Parameters
    ----------
    optimizer : Optimizer
        Anything with PyTorch-style ``param_groups`` (dicts with an ``'lr'``).
    last_epoch : int, default=-1
        The last step taken: -1 starts fresh, recording each ``group['initial_lr']`` (``base_lrs``); a larger
        value resumes and needs them. Construction takes one step, to ``last_epoch + 1``.

    Examples
    --------
    A subclass gives the lr of each step in closed form, in ``lr_at``:

    >>> from minitrain import nn, optim, schedules
    >>> class HalvingLR(schedules.LRScheduler):
    ...     def lr_at(self, t, base_lr, group=0):
    ...         return base_lr * 0.5**t
    >>> opt = optim.SGD(nn.Linear(2, 1), lr=1.0)
    >>> sched = HalvingLR(opt)
    >>> sched.get_last_lr()
    [1.0]
    >>> sched.step()
    >>> sched.step()
    >>> sched.get_last_lr(), opt.param_groups[0]["lr"], sched.last_epoch
    ([0.25], 0.25, 2)
    """

    _unsaved: tuple[str, ...] = ("optimizer",)

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:
        name = type(self).__name__
        groups = _groups(name, optimizer)
        last_epoch = _integer(name, "last_epoch", last_epoch, -1)
        if last_epoch == -1:
            for g in groups:
                g.setdefault("initial_lr", g["lr"])
        elif any("initial_lr" not in g for g in groups):
            raise ValueError(f"{name}: resuming with last_epoch={last_epoch} needs 'initial_lr' in every param group")
        self.optimizer = optimizer
        self.base_lrs = [float(g["initial_lr"]) for g in groups]
        self.last_epoch = last_epoch
        self._last_lr = [float(g["lr"]) for g in groups]
        self.step()

    def lr_at(self, t: int, base_lr: float, group: int = 0) -> float:
        """The lr at step ``t`` of parameter group number ``group``, whose base lr is ``base_lr``."""
        raise NotImplementedError(f"{type(self).__name__} has no closed form")

    def step(self) -> None:
        """Advance one step and set every group's lr."""
        self.last_epoch += 1
        self._set([self.lr_at(self.last_epoch, base, i) for i, base in enumerate(self.base_lrs)])

    def _set(self, lrs: list[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self) -> list[float]:
        """The lr of each group set by the last step."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state (everything but the optimizer and callables), as plain Python values."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k not in self._unsaved}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state from ``state_dict``, setting every group's lr to its restored last lr."""
        if len(state_dict.get("_last_lr", ())) != len(self.optimizer.param_groups):
            raise ValueError(f"{type(self).__name__}: the state is for a different number of param groups")
        self.__dict__.update(copy.deepcopy({k: v for k, v in state_dict.items() if k not in self._unsaved}))
        self._set(self._last_lr)


class ConstantLR(LRScheduler):
    """``factor * base_lr`` for ``t < total_iters``, then ``base_lr``.

    The defaults (``factor=1.0, total_iters=0``) keep the lr constant, unlike PyTorch's (1/3 and 5).

    Examples
    --------
    >>> from minitrain import nn, optim, schedules
    >>> sched = schedules.ConstantLR(optim.SGD(nn.Linear(2, 1), lr=1.0), factor=0.5, total_iters=2)
    >>> [sched.lr_at(t, 1.0) for t in range(4)]
    [0.5, 0.5, 1.0, 1.0]
    """

    def __init__(self, optimizer: Any, factor: float = 1.0, total_iters: int = 0, last_epoch: int = -1) -> None:
        self.factor = _number("ConstantLR", "factor", factor, 0.0, 1.0)
        self.total_iters = _integer("ConstantLR", "total_iters", total_iters, 0)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float, group: int = 0) -> float:
        return base_lr * (self.factor if t < self.total_iters else 1.0)


class LambdaLR(LRScheduler):
    """``base_lr * lr_lambda(t)``, with one function for all groups or one per group (not saved in ``state_dict``).

    Examples
    --------
    >>> from minitrain import nn, optim, schedules
    >>> sched = schedules.LambdaLR(optim.SGD(nn.Linear(2, 1), lr=1.0), lambda t: 0.5**t)
    >>> [sched.lr_at(t, 1.0) for t in range(3)]
    [1.0, 0.5, 0.25]
    """

    _unsaved = ("optimizer", "lr_lambdas")

    def __init__(
        self, optimizer: Any, lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]], last_epoch: int = -1
    ) -> None:
        n = len(_groups("LambdaLR", optimizer))
        fns = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(fns) != n or not all(callable(f) for f in fns):
            raise ValueError(f"LambdaLR: lr_lambda must be a function or a list of {n} functions (one per group)")
        self.lr_lambdas = fns
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float, group: int = 0) -> float:
        return base_lr * float(self.lr_lambdas[group](t))


class StepLR(LRScheduler):
    """``base_lr * gamma ** (t // step_size)``: decay by ``gamma`` every ``step_size`` steps.

    Examples
    --------
    >>> from minitrain import nn, optim, schedules
    >>> sched = schedules.StepLR(optim.SGD(nn.Linear(2, 1), lr=1.0), step_size=2, gamma=0.5)
    >>> [sched.lr_at(t, 1.0) for t in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = _integer("StepLR", "step_size", step_size, 1)
        self.gamma = _number("StepLR", "gamma", gamma, 0.0, open_low=True)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float, group: int = 0) -> float:
        return base_lr * self.gamma ** (t // self.step_size)


class MultiStepLR(LRScheduler):
    """``base_lr * gamma ** k`` where ``k`` counts the milestones ``<= t``.

    Examples
    --------
    >>> from minitrain import nn, optim, schedules
    >>> sched = schedules.MultiStepLR(optim.SGD(nn.Linear(2, 1), lr=1.0), milestones=[1, 3], gamma=0.5)
    >>> [sched.lr_at(t, 1.0) for t in range(4)]
    [1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, optimizer: Any, milestones: Sequence[int], gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.milestones = sorted(_integer("MultiStepLR", "each milestone", m, 0) for m in milestones)
        self.gamma = _number("MultiStepLR", "gamma", gamma, 0.0, open_low=True)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float, group: int = 0) -> float:
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, t)


class ExponentialLR(LRScheduler):
    """``base_lr * gamma ** t``.

    Examples
    --------
    >>> from minitrain import nn, optim, schedules
    >>> sched = schedules.ExponentialLR(optim.SGD(nn.Linear(2, 1), lr=1.0), gamma=0.5)
    >>> [sched.lr_at(t, 1.0) for t in range(3)]
    [1.0, 0.5, 0.25]
    """

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = _number("ExponentialLR", "gamma", gamma, 0.0, open_low=True)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float, group: int = 0) -> float:
        return base_lr * self.gamma**t


class CosineAnnealingLR(LRScheduler):
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2`` (PyTorch's closed form).

    Examples
    --------
    >>> from minitrain import nn, optim, schedules
    >>> sched = schedules.CosineAnnealingLR(optim.SGD(nn.Linear(2, 1), lr=1.0), T_max=2)
    >>> [round(sched.lr_at(t, 1.0), 6) for t in range(3)]
    [1.0, 0.5, 0.0]
    """

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = _integer("CosineAnnealingLR", "T_max", T_max, 1)
        self.eta_min = _number("CosineAnnealingLR", "eta_min", eta_min, 0.0)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float, group: int = 0) -> float:
        return self.eta_min + (base_lr - self.eta_min) * (1.0 + math.cos(math.pi * t / self.T_max)) / 2.0


class InverseScalingLR(LRScheduler):
    """``base_lr / (t + 1) ** power_t``, scikit-learn's ``learning_rate='invscaling'``.

    Examples
    --------
    >>> from minitrain import nn, optim, schedules
    >>> sched = schedules.InverseScalingLR(optim.SGD(nn.Linear(2, 1), lr=1.0), power_t=0.5)
    >>> [sched.lr_at(t, 1.0) for t in (0, 3, 8)]
    [1.0, 0.5, 0.3333333333333333]
    """

    def __init__(self, optimizer: Any, power_t: float = 0.5, last_epoch: int = -1) -> None:
        self.power_t = _number("InverseScalingLR", "power_t", power_t, 0.0)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float, group: int = 0) -> float:
        return base_lr / (t + 1) ** self.power_t


class LinearLR(LRScheduler):
    """Factor of ``base_lr`` going linearly from ``start_factor`` to ``end_factor`` over ``total_iters`` steps.

    Examples
    --------
    >>> from minitrain import nn, optim, schedules
    >>> sched = schedules.LinearLR(optim.SGD(nn.Linear(2, 1), lr=1.0), start_factor=0.5, total_iters=2)
    >>> [sched.lr_at(t, 1.0) for t in range(4)]
    [0.5, 0.75, 1.0, 1.0]
    """

    def __init__(
        self, optimizer: Any, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:  # fmt: skip
        self.start_factor = _number("LinearLR", "start_factor", start_factor, 0.0, 1.0, open_low=True)
        self.end_factor = _number("LinearLR", "end_factor", end_factor, 0.0, 1.0)
        self.total_iters = _integer("LinearLR", "total_iters", total_iters, 1)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float, group: int = 0) -> float:
        frac = min(t, self.total_iters) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * frac)


class WarmupLR(LRScheduler):
    """Linear warmup from ``start_factor * base_lr`` (``start_factor`` in [0, 1]) to ``base_lr`` over ``warmup_steps``.

    From step ``warmup_steps`` on, ``after`` (a closed-form scheduler of the same optimizer, which you do not
    step yourself) takes over as if it started there; without it the lr stays at ``base_lr``.

    Examples
    --------
    >>> from minitrain import nn, optim, schedules
    >>> opt = optim.SGD(nn.Linear(2, 1), lr=1.0)
    >>> sched = schedules.WarmupLR(opt, warmup_steps=2, after=schedules.ExponentialLR(opt, gamma=0.5))
    >>> [sched.lr_at(t, 1.0) for t in range(5)]
    [0.0, 0.5, 1.0, 0.5, 0.25]
    """

    _unsaved = ("optimizer", "after")

    def __init__(
        self, optimizer: Any, warmup_steps: int, after: LRScheduler | None = None, start_factor: float = 0.0,
        last_epoch: int = -1,
    ) -> None:  # fmt: skip
        self.warmup_steps = _integer("WarmupLR", "warmup_steps", warmup_steps, 0)
        self.start_factor = _number("WarmupLR", "start_factor", start_factor, 0.0, 1.0)
        if after is not None and (not isinstance(after, LRScheduler) or type(after).lr_at is LRScheduler.lr_at):
            raise TypeError(f"WarmupLR: after must be a closed-form scheduler (e.g. CosineAnnealingLR), got {after!r}")
        if after is not None and after.optimizer is not optimizer:
            raise ValueError("WarmupLR: after must schedule the same optimizer as the warmup")
        self.after = after
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float, group: int = 0) -> float:
        if t < self.warmup_steps:
            return base_lr * (self.start_factor + (1.0 - self.start_factor) * t / self.warmup_steps)
        return base_lr if self.after is None else self.after.lr_at(t - self.warmup_steps, base_lr, group)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "after": None if self.after is None else self.after.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.after is not None and state_dict.get("after") is not None:
            self.after.load_state_dict(state_dict["after"])
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "after"})


class ReduceLROnPlateau(LRScheduler):
    """Multiply the lr by ``factor`` once a metric has not improved for more than ``patience`` steps (PyTorch's rule).

    Parameters
    ----------
    optimizer : Optimizer
    mode : {'min', 'max'}, default='min'
        Whether the metric should decrease or increase.
    factor : float in [0, 1), default=0.1
    patience : int, default=10
        Steps without improvement tolerated; the lr drops at the next one.
    threshold : float, default=1e-4
    threshold_mode : {'rel', 'abs'}, default='rel'
        An improvement beats ``best * (1 -/+ threshold)`` ('rel') or ``best -/+ threshold`` ('abs').
    cooldown : int, default=0
        Steps after a reduction during which bad steps are not counted.
    min_lr : float or list of float (one per group), default=0
    eps : float, default=1e-8
        Reductions smaller than this are skipped.

    Examples
    --------
    >>> from minitrain import nn, optim, schedules
    >>> sched = schedules.ReduceLROnPlateau(optim.SGD(nn.Linear(2, 1), lr=1.0), patience=1, factor=0.5)
    >>> for loss in [1.0, 1.0, 1.0]:
    ...     sched.step(loss)
    >>> sched.get_last_lr()
    [0.5]
    """

    def __init__(
        self, optimizer: Any, mode: str = "min", factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
        threshold_mode: str = "rel", cooldown: int = 0, min_lr: float | Sequence[float] = 0.0, eps: float = 1e-8,
    ) -> None:  # fmt: skip
        name, groups = "ReduceLROnPlateau", _groups("ReduceLROnPlateau", optimizer)
        if mode not in ("min", "max"):
            raise ValueError(f"{name}: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{name}: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if _number(name, "factor", factor, 0.0, 1.0) == 1.0:
            raise ValueError(f"{name}: factor must be < 1 (the lr is multiplied by it), got {factor}")
        mins = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * len(groups)
        if len(mins) != len(groups):
            raise ValueError(f"{name}: min_lr has {len(mins)} values for {len(groups)} param groups")
        self.optimizer, self.mode, self.threshold_mode, self.factor = optimizer, mode, threshold_mode, float(factor)
        self.patience = _integer(name, "patience", patience, 0)
        self.threshold = _number(name, "threshold", threshold, 0.0)
        self.cooldown = _integer(name, "cooldown", cooldown, 0)
        self.min_lrs = [_number(name, "min_lr", m, 0.0) for m in mins]
        self.eps = _number(name, "eps", eps, 0.0)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = self.cooldown_counter = self.last_epoch = 0
        self.base_lrs = [float(g["lr"]) for g in groups]
        self._last_lr = list(self.base_lrs)

    def is_better(self, current: float, best: float) -> bool:
        """Whether ``current`` improves on ``best`` by more than the threshold."""
        rel = self.threshold_mode == "rel"
        if self.mode == "min":
            return current < (best * (1.0 - self.threshold) if rel else best - self.threshold)
        return current > (best * (1.0 + self.threshold) if rel else best + self.threshold)

    def step(self, metrics: Any = None) -> None:
        """Record one value of the monitored metric (e.g. the validation loss); reduce the lr on a plateau."""
        if metrics is None:
            raise TypeError("ReduceLROnPlateau.step needs the monitored metric, e.g. scheduler.step(val_loss)")
        current = float(metrics)
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs, strict=True):
                new_lr = max(float(group["lr"]) * self.factor, min_lr)
                if float(group["lr"]) - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]
