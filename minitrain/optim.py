"""Optimizers (PyTorch's names and rules) over flat parameter buffers; options common to all: see ``Optimizer``."""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

from .autograd import Tensor, enable_grad
from .nn.flat import FlatBuffer, Parameter, flatten_parameters
from .nn.module import Module

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "clip_grad_norm_", "clip_grad_value_"]

_CLIP = ("clip_grad_norm", "clip_grad_value")
_INF = math.inf
_LAG = "step_lag"  # per parameter: how many of its buffer's steps it sat out, frozen
Group = dict[str, Any]
Run = tuple[FlatBuffer, int, int]  # (view of trainable parameters, its start in the buffer, its first's index)


def _real(owner: str, name: str, value: Any, high: float = _INF, *, open_high: bool = False) -> float:
    """``value`` as a float in ``[0, high]`` (``[0, high)`` with ``open_high``), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__}")
    if not 0.0 <= float(value) <= high or (open_high and float(value) == high):
        raise ValueError(f"{owner}: {name} must be in [0, {high:g}{')' if open_high else ']'}, got {value!r}")
    return float(value)


def _param_list(params: Any, what: str) -> list[Parameter]:
    if isinstance(params, (Module, Tensor)):
        params = params.parameters() if isinstance(params, Module) else [params]
    elif not isinstance(params, Iterable) or isinstance(params, (str, dict)):
        raise TypeError(f"{what} must be a Module or an iterable of Parameters, got {type(params).__name__}")
    out = list(params)
    bad = next((p for p in out if not isinstance(p, Parameter)), None)
    if bad is not None:
        raise TypeError(f"{what} must hold Parameters (e.g. model.parameters()), got {type(bad).__name__}")
    return out


def _clip_norm(grads: list[Any], be: Any, max_norm: float, norm_type: float) -> float:
    """Scale the arrays together so their global norm is at most ``max_norm``; return the norm before."""
    if len(grads) == 1:
        return be.clip_grad_norm(grads[0], max_norm, norm_type=norm_type)
    norms = [be.clip_grad_norm(g, _INF, norm_type=norm_type) for g in grads]  # max_norm=inf: measure only
    total = max(norms) if norm_type == _INF else sum(n**norm_type for n in norms) ** (1.0 / norm_type)
    if max_norm / (total + 1e-6) < 1.0:
        for g in grads:
            g *= max_norm / (total + 1e-6)
    return total


class _RunState(dict):
    """A run's view of its buffer's optimizer state: slices of the state arrays, and the run's own step count."""

    __slots__ = ("full", "owner", "start", "stop")

    def __init__(self, full: dict[str, Any], owner: FlatBuffer, start: int, stop: int, step: int) -> None:
        sliced = {k: v[start:stop] if getattr(v, "shape", None) == (owner.size,) else v for k, v in full.items()}
        super().__init__(sliced, step=step)
        self.pop(_LAG, None)
        self.full, self.owner, self.start, self.stop = full, owner, start, stop


class Optimizer:
    """Base of the optimizers: parameter groups over flat buffers (one per dtype and group), clipping, state.

    Parameters
    ----------
    params : Module, iterable of Parameter, or list of dict
        What to optimize; dicts are PyTorch parameter groups ``{'params': [...], 'lr': ...}`` overriding
        ``defaults``, kept in ``param_groups`` (schedulers change ``group['lr']``). One group per parameter.
    defaults : dict
        Hyperparameters: at least ``lr``, ``weight_decay`` (adds ``weight_decay * p`` to the gradient) and
        ``l1`` (adds ``l1 * sign(p)``).
    clip_grad_norm, clip_grad_value : float, optional
        Before each update, scale all gradients to a global 2-norm <= ``clip_grad_norm``, then clamp them to
        ``[-clip_grad_value, clip_grad_value]``.

    Notes
    -----
    A parameter with ``requires_grad`` False is frozen: no update, penalty or clipping touches it or its state,
    and its step count stands still, so when unfrozen it resumes from its own moments and step, as a PyTorch
    parameter whose gradient is None. A step is one kernel call per flat buffer (or per run of consecutive
    trainable parameters with equal step counts, where some sat out steps).

    Examples
    --------
    A subclass passes its hyperparameters as ``defaults`` and implements ``_update(fb, group, state)``: the update
    of flat buffer ``fb`` (``data``, ``grad``) with its group's hyperparameters and ``state`` (``state['step']``):

    >>> from minitrain import init, nn, optim, tensor
    >>> class SignSGD(optim.Optimizer):
    ...     def __init__(self, params, lr=0.01):
    ...         super().__init__(params, dict(lr=lr, weight_decay=0.0, l1=0.0))
    ...     def _update(self, fb, group, state):
    ...         fb.data -= group["lr"] * fb.backend.xp.sign(fb.grad)
    >>> model = nn.Linear(2, 1)
    >>> _ = init.ones_(model.weight)
    >>> opt = SignSGD(model, lr=0.5)
    >>> (model(tensor([[1.0, 2.0]])) ** 2).sum().backward(); opt.step()
    >>> model.weight.numpy().tolist(), model.bias.numpy().tolist()
    ([[0.5, 0.5]], [-0.5])
    """

    _ranges: tuple[tuple[str, float], ...] = ()

    def __init__(
        self, params: Any, defaults: Group, clip_grad_norm: float | None = None, clip_grad_value: float | None = None
    ) -> None:
        name = type(self).__name__
        self.defaults = dict(defaults)
        self.clip_grad_norm = None if clip_grad_norm is None else _real(name, "clip_grad_norm", clip_grad_norm)
        self.clip_grad_value = None if clip_grad_value is None else _real(name, "clip_grad_value", clip_grad_value)
        self.param_groups: list[Group] = []
        self.state: dict[FlatBuffer, dict[str, Any]] = {}  # per flat buffer: 'step' and state arrays
        self._flat_groups: list[tuple[FlatBuffer, Group]] = []
        self._runs_of: tuple[int, int] = (-1, -1)  # (Parameter.requires_grad_version, self._epoch) of _runs_cache
        self._runs_cache: list[list[Run] | None] = []
        self._epoch = 0  # bumped when the buffers or the state are replaced
        is_groups = isinstance(params, (list, tuple)) and params and all(isinstance(g, dict) for g in params)
        for group in params if is_groups else [{"params": _param_list(params, f"{name} params")}]:
            self._add_group(group)
        self._flatten()

    def _validate(self, group: Group) -> None:
        """Check the hyperparameters of a group, converting them to floats."""
        name = type(self).__name__
        for key, high in (("lr", _INF), ("weight_decay", _INF), ("l1", _INF), *self._ranges):
            group[key] = _real(name, key, group[key], high)
        if "betas" in group:
            betas = group["betas"]
            if not isinstance(betas, (tuple, list)) or len(betas) != 2:
                raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
            group["betas"] = tuple(_real(name, f"betas[{i}]", b, 1.0, open_high=True) for i, b in enumerate(betas))

    def _add_group(self, param_group: Group) -> None:
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(f"a parameter group must be a dict with a 'params' entry, got {param_group!r}")
        if any(key in param_group for key in _CLIP):
            raise ValueError(f"clipping applies to the whole optimizer; pass it to {type(self).__name__}(...)")
        group = {**self.defaults, **param_group}
        params = list({id(p): p for p in _param_list(group["params"], "a group's 'params'")}.values())
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if {id(p) for p in params} & {id(p) for g in self.param_groups for p in g["params"]}:
            raise ValueError("some parameters appear in more than one parameter group; give each to one group only")
        self._validate(group)
        group["params"] = params
        self.param_groups.append(group)

    def _flatten(self) -> None:
        """(Re)build the flat buffers: all groups in one run per dtype, each group a view of it."""
        old = {(id(g), fb.dtype): self.state[fb] for fb, g in self._flat_groups if fb in self.state}
        flatten_parameters([p for g in self.param_groups for p in g["params"]])
        self._flat_groups = [(fb, g) for g in self.param_groups for fb in flatten_parameters(g["params"])]
        self.state = {fb: old[(id(g), fb.dtype)] for fb, g in self._flat_groups if (id(g), fb.dtype) in old}
        self._epoch += 1

    def add_param_group(self, param_group: Group) -> None:
        """Add a parameter group (a dict like those of ``param_groups``), e.g. to fine-tune more layers."""
        self._add_group(param_group)
        self._flatten()

    def _check_current(self) -> None:
        if not all(fb.is_current() for fb, _ in self._flat_groups):
            msg = "were re-flattened or moved since it was built (e.g. by model.to()); build the optimizer after that"
            raise RuntimeError(f"{type(self).__name__}: its parameters {msg}")

    def _state_array(self, fb: FlatBuffer, state: dict[str, Any], key: str, fill: float = 0.0) -> Any:
        if state.get(key) is None:
            if isinstance(state, _RunState):  # a run's slice of its buffer's array
                state[key] = self._state_array(state.owner, state.full, key, fill)[state.start : state.stop]
            else:
                state[key] = fb.backend.alloc((fb.size,), fb.dtype, fill=fill)
        return state[key]

    def _runs(self) -> list[list[Run] | None]:
        """Per flat buffer: None when all its parameters train with one step count, else their runs."""
        self._runs_cache = []
        for fb, _ in self._flat_groups:
            lags = (self.state.get(fb) or {}).get(_LAG) or [0] * len(fb.params)
            keys = [lag if p.requires_grad else None for p, lag in zip(fb.params, lags, strict=True)]
            self._runs_cache.append(None if not any(k != 0 for k in keys) else fb.runs(keys))
        self._runs_of = (Parameter.requires_grad_version, self._epoch)
        return self._runs_cache

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update the trainable parameters (one kernel call per flat buffer, or per run of trainable parameters
        where some are frozen); return ``closure()``'s loss if given, else None."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        self._check_current()
        version, epoch = self._runs_of  # the runs change only with a requires_grad, the buffers or the state
        stale = version != Parameter.requires_grad_version or epoch != self._epoch
        plan = self._runs() if stale else self._runs_cache
        if self.clip_grad_norm is not None or self.clip_grad_value is not None:
            self._clip(plan)
        for (fb, group), runs in zip(self._flat_groups, plan):
            state = self.state.setdefault(fb, {"step": 0})
            if runs is None:
                state["step"] += 1
                self._update(fb, group, state)
            elif runs:
                self._update_runs(fb, group, state, runs)
        return loss

    def _clip(self, plan: list[list[Run] | None]) -> None:
        """Clip the gradients of the trainable parameters, the norm over all of them together."""
        grads, be = [], self._flat_groups[0][0].backend
        for (fb, _), runs in zip(self._flat_groups, plan, strict=True):
            grads.extend([fb.grad] if runs is None else [view.grad for view, _, _ in runs])
        if self.clip_grad_norm is not None and grads:
            _clip_norm(grads, be, self.clip_grad_norm, 2.0)
        for g in grads if self.clip_grad_value is not None else ():
            be.clip_grad_value(g, self.clip_grad_value)

    def _update_runs(self, fb: FlatBuffer, group: Group, state: dict[str, Any], runs: list[Run]) -> None:
        """One step of a buffer with frozen parameters or several step counts: ``_update`` once per run."""
        state["step"] += 1
        lags = state.setdefault(_LAG, [0] * len(fb.params))
        for i, p in enumerate(fb.params):
            if not p.requires_grad:
                lags[i] += 1
        views = [(v, _RunState(state, fb, start, start + v.size, state["step"] - lags[i])) for v, start, i in runs]
        snapshot = dict(group)  # each run sees the group as the step found it; the first run's changes are kept
        for k, (view, run_state) in enumerate(views):
            self._update(view, group if k == 0 else dict(snapshot), run_state)

    def clear_state(self) -> None:
        """Forget every step count and state array (moments, momentum buffers): the next step starts afresh."""
        self.state = {}
        self._epoch += 1

    def zero_grad(self) -> None:
        """Set every gradient to zero: one fill per flat buffer."""
        self._check_current()
        for fb, _ in self._flat_groups:
            fb.zero_grad()

    def state_dict(self) -> dict[str, Any]:
        """``{'state': {buffer index: {'step': int, name: NumPy copy}}, 'param_groups': [hyperparameters]}``."""
        groups, start = [], 0
        for g in self.param_groups:
            saved = copy.deepcopy({k: v for k, v in g.items() if k != "params"})
            groups.append({**saved, "params": list(range(start, start + len(g["params"])))})
            start += len(g["params"])
        state = {}
        for i, (fb, _) in enumerate(self._flat_groups):
            for k, v in self.state.get(fb, {}).items():
                saved = v if k == "step" else list(v) if k == _LAG else fb.backend.to_numpy(v).copy()
                state.setdefault(i, {})[k] = saved
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and state saved by ``state_dict`` (of any backend) into this optimizer's backend;
        atomic: everything is checked and converted first, and if anything does not fit, nothing changes."""
        name, groups = type(self).__name__, state_dict["param_groups"]
        sizes = [len(g["params"]) for g in self.param_groups]
        if [len(g["params"]) for g in groups] != sizes:
            raise ValueError(f"{name}: the state's parameter groups do not match this optimizer's (sizes {sizes})")
        new_groups = []
        for saved, mine in zip(groups, self.param_groups, strict=True):
            new_groups.append({**mine, **copy.deepcopy({k: v for k, v in saved.items() if k != "params"})})
            self._validate(new_groups[-1])
        new_state = {}
        for i, saved in state_dict["state"].items():
            if not 0 <= int(i) < len(self._flat_groups):
                raise ValueError(f"{name}: the state names buffer {i!r}; this optimizer has {len(self._flat_groups)}")
            fb = self._flat_groups[int(i)][0]
            new_state[fb] = self._loaded_state(fb, saved)
        for mine, new in zip(self.param_groups, new_groups, strict=True):
            mine.update(new)
        self.state = new_state
        self._epoch += 1

    def _loaded_state(self, fb: FlatBuffer, saved: dict[str, Any]) -> dict[str, Any]:
        """One buffer's saved state, checked and converted to its backend (nothing of this optimizer changes)."""
        name, steps = type(self).__name__, int(saved["step"])
        state: dict[str, Any] = {"step": steps}
        for key, value in ((k, v) for k, v in saved.items() if k != "step"):
            if key == _LAG:
                state[key] = [int(lag) for lag in value]
                if len(state[key]) != len(fb.params) or not all(0 <= lag <= steps for lag in state[key]):
                    raise ValueError(f"{name}: state {key!r} must hold {len(fb.params)} counts in [0, {steps}]")
                continue
            shape = tuple(getattr(value, "shape", ()))
            if shape != (fb.size,):
                raise ValueError(f"{name}: state {key!r} has shape {shape}, expected {(fb.size,)}")
            state[key] = fb.backend.asarray(value, dtype=fb.dtype).copy()
        return state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params")
        lines.extend(f"{k}: {getattr(self, k)}" for k in _CLIP if getattr(self, k) is not None)
        return "\n".join(lines) + "\n)"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum or Nesterov momentum (PyTorch's rule); ``dampening`` lies in
    [0, 1], ``nesterov`` needs ``momentum > 0`` and ``dampening == 0``.

    Examples
    --------
    >>> from minitrain import nn, optim, tensor
    >>> model = nn.Linear(3, 1)
    >>> opt = optim.SGD(model, lr=0.1, momentum=0.9)
    >>> (model(tensor([[1.0, 2.0, 3.0]])) ** 2).sum().backward()
    >>> opt.step(); opt.zero_grad()
    """

    _ranges = (("momentum", _INF), ("dampening", 1.0))

    def __init__(
        self, params: Any, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
        nesterov: bool = False, l1: float = 0.0, clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
    ) -> None:  # fmt: skip
        hyper = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=weight_decay, l1=l1)
        super().__init__(params, hyper, clip_grad_norm, clip_grad_value)

    def _validate(self, group: Group) -> None:
        super()._validate(group)
        group["nesterov"] = bool(group["nesterov"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov=True needs momentum > 0 and dampening = 0")

    def _update(self, fb: FlatBuffer, group: Group, state: dict[str, Any]) -> None:
        buf, step = None, state["step"]
        if group["momentum"]:
            step = step if "momentum_buffer" in state else 1  # a new buffer starts as the gradient, as in PyTorch
            buf = self._state_array(fb, state, "momentum_buffer")
        hyper = {k: float(group[k]) for k in ("lr", "momentum", "dampening", "weight_decay", "l1")}
        fb.backend.sgd_step(fb.data, fb.grad, buf, step=step, nesterov=bool(group["nesterov"]), **hyper)


class Adam(Optimizer):
    """Adam with bias correction (PyTorch's rule); ``weight_decay`` adds an L2 penalty to the gradient, ``betas``
    are the decay rates of the first and second moment estimates, each in [0, 1).

    Examples
    --------
    >>> from minitrain import nn, optim
    >>> optim.Adam(nn.Linear(3, 1), lr=1e-2).param_groups[0]["betas"]
    (0.9, 0.999)
    """

    _ranges = (("eps", _INF),)
    _decoupled = False

    def __init__(
        self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
        weight_decay: float = 0.0, l1: float = 0.0, clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
    ) -> None:  # fmt: skip
        hyper = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, l1=l1)
        super().__init__(params, hyper, clip_grad_norm, clip_grad_value)

    def _update(self, fb: FlatBuffer, group: Group, state: dict[str, Any]) -> None:
        m, v = self._state_array(fb, state, "exp_avg"), self._state_array(fb, state, "exp_avg_sq")
        hyper = {k: float(group[k]) for k in ("lr", "eps", "weight_decay", "l1")}
        hyper["beta1"], hyper["beta2"] = group["betas"]
        fb.backend.adam_step(fb.data, fb.grad, m, v, step=state["step"], decoupled=self._decoupled, **hyper)


class AdamW(Adam):
    """Adam with decoupled weight decay, ``p *= 1 - lr * weight_decay`` before the update (default 1e-2).

    Examples
    --------
    >>> from minitrain import nn, optim
    >>> optim.AdamW(nn.Linear(3, 1)).param_groups[0]["weight_decay"]
    0.01
    """

    _decoupled = True

    def __init__(
        self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
        weight_decay: float = 1e-2, l1: float = 0.0, clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
    ) -> None:  # fmt: skip
        super().__init__(params, lr, betas, eps, weight_decay, l1, clip_grad_norm, clip_grad_value)


class RMSprop(Optimizer):
    """RMSprop, optionally ``centered`` (normalized by the gradient's variance) and with momentum (PyTorch's rule);
    ``alpha``, in [0, 1], is the smoothing constant of the squared-gradient average.

    Examples
    --------
    >>> from minitrain import nn, optim
    >>> optim.RMSprop(nn.Linear(3, 1), centered=True).param_groups[0]["alpha"]
    0.99
    """

    _ranges = (("alpha", 1.0), ("eps", _INF), ("momentum", _INF))

    def __init__(
        self, params: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
        momentum: float = 0.0, centered: bool = False, l1: float = 0.0, clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
    ) -> None:  # fmt: skip
        hyper = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, l1=l1)
        super().__init__(params, {**hyper, "centered": centered}, clip_grad_norm, clip_grad_value)

    def _update(self, fb: FlatBuffer, group: Group, state: dict[str, Any]) -> None:
        momentum, centered = group["momentum"], bool(group["centered"])
        square_avg = self._state_array(fb, state, "square_avg")
        buf = self._state_array(fb, state, "momentum_buffer") if momentum else None
        grad_avg = self._state_array(fb, state, "grad_avg") if centered else None
        hyper = {k: float(group[k]) for k in ("lr", "alpha", "eps", "momentum", "weight_decay", "l1")}
        fb.backend.rmsprop_step(fb.data, fb.grad, square_avg, buf, grad_avg, centered=centered, **hyper)


class Adagrad(Optimizer):
    """Adagrad with learning-rate decay, ``lr / (1 + (t - 1) * lr_decay)`` at step t (PyTorch's rule);
    ``initial_accumulator_value`` starts the sum of squared gradients.

    Examples
    --------
    >>> from minitrain import nn, optim
    >>> optim.Adagrad(nn.Linear(3, 1), lr=0.1).param_groups[0]["lr"]
    0.1
    """

    _ranges = (("lr_decay", _INF), ("initial_accumulator_value", _INF), ("eps", _INF))

    def __init__(
        self, params: Any, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0, eps: float = 1e-10, l1: float = 0.0,
        clip_grad_norm: float | None = None, clip_grad_value: float | None = None,
    ) -> None:  # fmt: skip
        hyper = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps, l1=l1)
        hyper["initial_accumulator_value"] = initial_accumulator_value
        super().__init__(params, hyper, clip_grad_norm, clip_grad_value)

    def _update(self, fb: FlatBuffer, group: Group, state: dict[str, Any]) -> None:
        acc = self._state_array(fb, state, "sum", float(group["initial_accumulator_value"]))
        hyper = {k: float(group[k]) for k in ("lr", "lr_decay", "eps", "weight_decay", "l1")}
        fb.backend.adagrad_step(fb.data, fb.grad, acc, step=state["step"], **hyper)


# ---------------------------------------------------------------------- torch.nn.utils-style clipping
def _grad_arrays(parameters: Any) -> tuple[list[Any], Any]:
    """Gradients of the trainable ``parameters``: whole flat buffers where all their parameters are given, else
    per parameter. A frozen parameter (``requires_grad`` False) is left out, as one without a gradient."""
    unique = {id(p): p for p in _param_list(parameters, "parameters") if p.grad is not None and p.requires_grad}
    flats = {id(p._flat): p._flat for p in unique.values() if p._flat is not None and p._flat.is_current()}
    whole = [fb for fb in flats.values() if all(id(q) in unique for q in fb.params)]
    covered = {id(q) for fb in whole for q in fb.params}
    rest = [p.grad for key, p in unique.items() if key not in covered]
    if len({id(p.backend) for p in unique.values()}) > 1:
        raise ValueError("parameters live on several backends; move the model with .to() first")
    return [fb.grad for fb in whole] + rest, next((p.backend for p in unique.values()), None)


def clip_grad_norm_(parameters: Any, max_norm: float, norm_type: float = 2.0) -> float:
    """Scale gradients (of a Module or Parameters) in place to a global norm <= ``max_norm``; return the norm before.

    Examples
    --------
    >>> from minitrain import nn, optim
    >>> p = nn.Parameter([3.0, 4.0])
    >>> (p * p).sum().backward()
    >>> round(optim.clip_grad_norm_([p], 1.0), 4)
    10.0
    """
    max_norm = _real("clip_grad_norm_", "max_norm", max_norm)
    if _real("clip_grad_norm_", "norm_type", norm_type) == 0:
        raise ValueError("clip_grad_norm_: norm_type must be > 0 (or math.inf)")
    grads, be = _grad_arrays(parameters)
    return _clip_norm(grads, be, max_norm, float(norm_type)) if grads else 0.0


def clip_grad_value_(parameters: Any, clip_value: float) -> None:
    """Clamp gradients (of a Module or Parameters) in place to ``[-clip_value, clip_value]``.

    Examples
    --------
    >>> from minitrain import nn, optim
    >>> p = nn.Parameter([3.0, -4.0])
    >>> (p * p).sum().backward()
    >>> optim.clip_grad_value_([p], 1.0)
    >>> p.grad
    array([ 1., -1.], dtype=float32)
    """
    clip_value = _real("clip_grad_value_", "clip_value", clip_value)
    grads, be = _grad_arrays(parameters)
    for g in grads:
        be.clip_grad_value(g, clip_value)
