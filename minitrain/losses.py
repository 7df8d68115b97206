"""Loss functions as modules (PyTorch's names); each call returns one Tensor recorded as one node.

Every loss takes ``forward(input, target)``: ``input`` is the model's output (a Tensor), ``target`` a
Tensor, array or list, converted to the input's backend. Targets are constants (not differentiated).
``reduction`` is one of 'mean' (default), 'sum' or 'none'.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from . import functional as F
from .autograd import Tensor
from .backend import Backend
from .functional import _check_reduction, _reduced
from .nn.module import Module

__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss", "HuberLoss", "L1Loss", "MSELoss", "PoissonNLLLoss"]


def _array(x: Any, be: Backend, src: Backend | None = None) -> Any:
    """``x`` (Tensor, array of backend ``src``, list) as an array of backend ``be``."""
    if isinstance(x, Tensor):
        x, src = x.data, x.backend
    if src is not None and src is not be:
        return be.asarray(src.to_numpy(x))
    return be.asarray(x)


class _Loss(Module):
    """Base of the losses: checks ``reduction`` and turns inputs into Tensors."""

    def __init__(self, reduction: str = "mean", backend: Any = None) -> None:
        super().__init__(backend)
        _check_reduction(reduction)
        self.reduction = reduction

    def _input(self, input: Any) -> Tensor:  # noqa: A002
        return input if isinstance(input, Tensor) else Tensor(input, backend=self._backend)

    def _float_target(self, input: Tensor, target: Any) -> Any:  # noqa: A002
        t = _array(target, input.backend).astype(input.dtype, copy=False)
        if tuple(t.shape) != input.shape:
            raise ValueError(
                f"{type(self).__name__}: target shape {tuple(t.shape)} does not match input shape {input.shape}; "
                "pass one target value per input value"
            )
        return t

    def _buffer(self, name: str, input: Tensor) -> Any:  # noqa: A002
        b = self._buffers.get(name)
        return None if b is None else _array(b, input.backend, self._backend)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """Mean squared error ``(input - target) ** 2``, one node over the fused ``mse`` kernel.

    Parameters
    ----------
    reduction : {'mean', 'sum', 'none'}, default='mean'

    Notes
    -----
    Shapes: input and target of any same shape; the output is a scalar, or that shape for 'none'.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import losses
    >>> losses.MSELoss()(mt.tensor([1.0, 2.0]), [0.0, 0.0]).item()
    2.5
    """

    def forward(self, input: Any, target: Any) -> Tensor:  # noqa: A002
        """Loss of ``input`` against ``target`` (same shape)."""
        x = self._input(input)
        return F.mse_loss(x, self._float_target(x, target), reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error ``|input - target|`` (gradient ``sign(input - target)``, 0 at a tie).

    Parameters
    ----------
    reduction : {'mean', 'sum', 'none'}, default='mean'

    Notes
    -----
    Shapes: input and target of any same shape; the output is a scalar, or that shape for 'none'.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import losses
    >>> losses.L1Loss()(mt.tensor([1.0, -3.0]), [0.0, 0.0]).item()
    2.0
    """

    def forward(self, input: Any, target: Any) -> Tensor:  # noqa: A002
        """Loss of ``input`` against ``target`` (same shape)."""
        x = self._input(input)
        xp = x.backend.xp
        d = x.data - self._float_target(x, target)
        return _reduced(x, xp.abs(d), xp.sign(d), self.reduction)


class HuberLoss(_Loss):
    """Huber loss: ``0.5 d**2`` where ``|d| <= delta``, else ``delta * (|d| - 0.5 delta)``, ``d = input - target``.

    Parameters
    ----------
    reduction : {'mean', 'sum', 'none'}, default='mean'
    delta : float, default=1.0
        Where the loss changes from quadratic to linear; must be > 0.

    Notes
    -----
    Shapes: input and target of any same shape; the output is a scalar, or that shape for 'none'.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import losses
    >>> losses.HuberLoss(delta=1.0)(mt.tensor([0.5, 3.0]), [0.0, 0.0]).item()
    1.3125
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0, backend: Any = None) -> None:
        super().__init__(reduction, backend)
        if not delta > 0:
            raise ValueError(f"HuberLoss: delta must be > 0, got {delta}")
        self.delta = float(delta)

    def forward(self, input: Any, target: Any) -> Tensor:  # noqa: A002
        """Loss of ``input`` against ``target`` (same shape)."""
        x = self._input(input)
        xp = x.backend.xp
        delta = self.delta
        d = x.data - self._float_target(x, target)
        ad = xp.abs(d)
        small = ad <= delta
        loss = xp.where(small, 0.5 * d * d, delta * (ad - 0.5 * delta)).astype(x.dtype, copy=False)
        grad = xp.where(small, d, delta * xp.sign(d)).astype(x.dtype, copy=False)
        return _reduced(x, loss, grad, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, delta={self.delta}"


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of ``sigmoid(input)`` against targets in [0, 1], computed stably from logits.

    Parameters
    ----------
    weight : array_like, optional
        Rescaling weight of each element, broadcast against the input.
    reduction : {'mean', 'sum', 'none'}, default='mean'
    pos_weight : array_like of shape (n_classes,), optional
        Weight of the positive term of each class (last axis).

    Notes
    -----
    Shapes: input (n, ...) logits and target of the same shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import losses
    >>> round(losses.BCEWithLogitsLoss()(mt.tensor([0.0, 0.0]), [1, 0]).item(), 4)
    0.6931
    """

    def __init__(
        self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None, backend: Any = None
    ) -> None:
        super().__init__(reduction, backend)
        self.register_buffer("weight", None if weight is None else _array(weight, self._backend))
        self.register_buffer("pos_weight", None if pos_weight is None else _array(pos_weight, self._backend))

    def forward(self, input: Any, target: Any) -> Tensor:  # noqa: A002
        """Loss of logits ``input`` against ``target`` (same shape)."""
        x = self._input(input)
        return F.binary_cross_entropy_with_logits(
            x,
            self._float_target(x, target),
            weight=self._buffer("weight", x),
            pos_weight=self._buffer("pos_weight", x),
            reduction=self.reduction,
        )


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits against class indices or class probabilities (PyTorch's definition).

    With class weights and index targets, 'mean' divides by the summed weight of the targets.
    Label smoothing mixes the target with the uniform distribution: ``(1 - s) q + s / n_classes``.

    Parameters
    ----------
    weight : array_like of shape (n_classes,), optional
        Weight of each class.
    reduction : {'mean', 'sum', 'none'}, default='mean'
    label_smoothing : float, default=0.0
        In [0, 1].
    ignore_index : int, default=-100
        A class-index target equal to it contributes nothing: loss 0 ('none' returns 0 for it), gradient 0,
        and 'mean' averages over the other samples only (their summed class weights, with ``weight``).
        Probability targets ignore nothing.

    Notes
    -----
    Shapes: input (n, n_classes) logits; target (n,) integer class indices or (n, n_classes)
    probabilities; the output is a scalar, or (n,) for 'none'.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import losses
    >>> round(losses.CrossEntropyLoss()(mt.tensor([[0.0, 0.0]]), [1]).item(), 4)
    0.6931
    >>> round(losses.CrossEntropyLoss()(mt.tensor([[0.0, 0.0], [5.0, 0.0]]), [1, -100]).item(), 4)
    0.6931
    """

    def __init__(
        self,
        weight: Any = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        ignore_index: int = -100,
        backend: Any = None,
    ) -> None:
        super().__init__(reduction, backend)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"CrossEntropyLoss: ignore_index must be an integer, got {ignore_index!r}")
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = int(ignore_index)
        self.register_buffer("weight", None if weight is None else _array(weight, self._backend))

    def forward(self, input: Any, target: Any) -> Tensor:  # noqa: A002
        """Loss of logits ``input`` (n, n_classes) against ``target`` (n,) or (n, n_classes)."""
        x = self._input(input)
        return F.cross_entropy(
            x,
            _array(target, x.backend),
            weight=self._buffer("weight", x),
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
        )

    def extra_repr(self) -> str:
        ignore = "" if self.ignore_index == -100 else f", ignore_index={self.ignore_index}"
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}{ignore}"


class PoissonNLLLoss(_Loss):
    """Negative log-likelihood of a Poisson target (PyTorch's definition).

    ``exp(input) - target * input`` when ``log_input`` (the input is the log-rate), else
    ``input - target * log(input + eps)``. With ``full``, adds the Stirling approximation of
    ``log(target!)``: ``target * log(target) - target + 0.5 * log(2 pi target)`` where ``target > 1``.

    Parameters
    ----------
    log_input : bool, default=True
    full : bool, default=False
    eps : float, default=1e-8
        Keeps ``log`` finite when ``log_input`` is False.
    reduction : {'mean', 'sum', 'none'}, default='mean'

    Notes
    -----
    Shapes: input and target (counts) of any same shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import losses
    >>> losses.PoissonNLLLoss()(mt.tensor([0.0, 0.0]), [1.0, 2.0]).item()
    1.0
    """

    def __init__(
        self,
        log_input: bool = True,
        full: bool = False,
        eps: float = 1e-8,
        reduction: str = "mean",
        backend: Any = None,
    ) -> None:
        super().__init__(reduction, backend)
        if not eps >= 0:
            raise ValueError(f"PoissonNLLLoss: eps must be >= 0, got {eps}")
        self.log_input, self.full, self.eps = bool(log_input), bool(full), float(eps)

    def forward(self, input: Any, target: Any) -> Tensor:  # noqa: A002
        """Loss of ``input`` (log-rates, or rates) against counts ``target`` (same shape)."""
        x = self._input(input)
        xp = x.backend.xp
        xd = x.data
        t = self._float_target(x, target)
        if self.log_input:
            rate = xp.exp(xd)
            loss = rate - t * xd
            grad = rate - t
        else:
            shifted = xd + self.eps
            loss = xd - t * xp.log(shifted)
            grad = 1.0 - t / shifted
        if self.full:
            big = t > 1
            safe = xp.where(big, t, 1.0).astype(x.dtype, copy=False)
            stirling = safe * xp.log(safe) - safe + 0.5 * xp.log((2.0 * math.pi) * safe)
            loss = loss + xp.where(big, stirling, 0.0).astype(x.dtype, copy=False)
        return _reduced(x, loss.astype(x.dtype, copy=False), grad.astype(x.dtype, copy=False), self.reduction)

    def extra_repr(self) -> str:
        return f"log_input={self.log_input}, full={self.full}, eps={self.eps}, reduction={self.reduction!r}"
