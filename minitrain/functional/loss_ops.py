"""Losses as single nodes over the fused loss kernels (value and gradient in one pass)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Tensor

_make = Tensor._make
_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------- losses over fused kernels
def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduced(x: Tensor, loss: Any, grad: Any, reduction: str, denom: Any = None) -> Tensor:
    """One node from an elementwise loss and its local gradient, reduced as asked."""
    be = x.backend
    if reduction == "none":
        extra = grad.ndim - loss.ndim
        return _make(loss, be, (x,), lambda g: (grad * g.reshape(g.shape + (1,) * extra),))
    total = loss.sum()
    if reduction == "sum":
        return _make(total, be, (x,), lambda g: (grad * g,))
    denom = loss.size if denom is None else denom
    return _make(total / denom, be, (x,), lambda g: (grad * (g / denom),))


def _target(target: Any, x: Tensor) -> Any:
    if isinstance(target, Tensor):
        t = target.data if target.backend is x.backend else x.backend.asarray(target.numpy())
    else:
        t = x.backend.asarray(target)
    if t.dtype.kind == "b":
        t = t.astype(x.dtype)
    return t


def cross_entropy(
    input: Tensor,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> Tensor:
    """Softmax cross-entropy of logits ``input`` (n, c) against class indices (n,) or probabilities (n, c).

    One node over the ``softmax_cross_entropy`` kernel. With class weights and index targets,
    ``'mean'`` divides by the summed weights of the targets (as PyTorch does). A sample whose class index
    is ``ignore_index`` has loss 0 and gradient 0 and is left out of the mean (which is NaN when every sample
    is ignored, as in PyTorch); probability targets ignore nothing.

    Parameters
    ----------
    input : Tensor of shape (n, c)
        Logits.
    target : array_like or Tensor
        Class indices of shape (n,) (integers) or probabilities of shape (n, c).
    weight : array_like of shape (c,), optional
        Class weights.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        'none' returns the loss of each sample, of shape (n,).
    label_smoothing : float, default=0.0
        In [0, 1]: mix this much of the uniform distribution into the targets.
    ignore_index : int, default=-100
        Class index whose samples are left out.

    Returns
    -------
    Tensor
        A scalar, or one value per sample with ``reduction='none'``.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> logits = mt.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    >>> loss = F.cross_entropy(logits, [0, 2])
    >>> round(loss.item(), 4)
    0.6691
    >>> F.cross_entropy(logits, [0, -100], reduction="none").numpy().astype(float).round(4).tolist()
    [0.2395, 0.0]
    >>> loss.backward()
    >>> logits.grad.astype(float).round(4).tolist()
    [[-0.1065, 0.0533, 0.0533], [0.1667, 0.1667, -0.3333]]
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if input.ndim != 2:
        raise ValueError(f"cross_entropy expects logits of shape (n_samples, n_classes), got {input.shape}")
    be = input.backend
    xp = be.xp
    n, c = input.shape
    t = _target(target, input)
    ignored = None
    host = xp is np  # on a device, nothing is read back to the host for a check
    if t.ndim == 1:
        if t.dtype.kind not in "iu":
            raise TypeError(f"class-index targets must be integers, got dtype {t.dtype}")
        if t.shape[0] != n:
            raise ValueError(f"target has {t.shape[0]} labels for {n} samples")
        ignored = t == ignore_index
        if not host:  # out-of-range labels give the kernel's NaN loss, which training reports
            t = xp.where(ignored, 0, t)
        elif bool(ignored.any()):
            t = xp.where(ignored, 0, t)  # any class: the loss and gradient of these samples are zeroed below
        else:
            ignored = None
        if host and t.size and (int(t.min()) < 0 or int(t.max()) >= c):
            raise ValueError(f"target class indices must be in [0, {c}), got [{int(t.min())}, {int(t.max())}]")
    elif t.shape != (n, c):
        raise ValueError(f"probability targets must have shape {(n, c)}, got {tuple(t.shape)}")
    else:
        t = t.astype(input.dtype, copy=False)
    w = None
    if weight is not None:
        w = (weight.data if isinstance(weight, Tensor) else be.asarray(weight)).astype(input.dtype, copy=False)
        if w.shape != (c,):
            raise ValueError(f"class weights must have shape ({c},), got {tuple(w.shape)}")
    loss, grad = be.softmax_cross_entropy(input.data, t, weight=w, label_smoothing=label_smoothing)
    denom = None
    if ignored is not None and not host:
        loss = xp.where(ignored, 0, loss).astype(loss.dtype, copy=False)
        grad = xp.where(ignored[:, None], 0, grad).astype(grad.dtype, copy=False)
    elif ignored is not None:
        loss[ignored] = 0
        grad[ignored] = 0
    if reduction == "mean" and t.ndim == 1 and (w is not None or ignored is not None) and not host:
        kept = (~ignored).astype(input.dtype) if w is None else xp.take(w, t) * ~ignored
        denom = kept.sum()  # stays on the device; every sample ignored: 0 / 0 = NaN, as PyTorch's loss
    elif reduction == "mean" and t.ndim == 1 and (w is not None or ignored is not None):
        kept = t if ignored is None else t[~ignored]
        denom = float(kept.size if w is None else xp.take(w, kept).sum())
        if denom == 0:  # every sample ignored (or of weight 0): NaN, as PyTorch's 0 / 0
            return _make(xp.full((), xp.nan, dtype=input.dtype), be, (input,), lambda g: (xp.zeros_like(grad),))
    return _reduced(input, loss, grad, reduction, denom)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Any,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy of sigmoid(input) against targets in [0, 1], as one node.

    Parameters
    ----------
    input : Tensor
        Logits.
    target : array_like or Tensor
        Of ``input``'s shape, in [0, 1] (booleans are accepted).
    weight : array_like, optional
        Weights of the elements, broadcast against ``input``.
    pos_weight : array_like, optional
        Weight of the positive term, e.g. one per column (class) to balance rare positives.
    reduction : {'mean', 'sum', 'none'}, default='mean'

    Returns
    -------
    Tensor
        A scalar, or the loss of each element with ``reduction='none'``.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> logits = mt.tensor([0.0, 2.0, -2.0])
    >>> round(F.binary_cross_entropy_with_logits(logits, [1.0, 1.0, 0.0]).item(), 4)
    0.3157
    >>> F.binary_cross_entropy_with_logits(logits, [1, 0, 0], reduction="none").numpy().astype(float).round(4).tolist()
    [0.6931, 2.1269, 0.1269]
    """
    _check_reduction(reduction)
    be = input.backend
    t = _target(target, input).astype(input.dtype, copy=False)
    if tuple(t.shape) != input.shape:
        raise ValueError(f"target shape {tuple(t.shape)} does not match input shape {input.shape}")
    pw = None if pos_weight is None else be.asarray(_target(pos_weight, input), dtype=input.dtype)
    loss, grad = be.sigmoid_cross_entropy(input.data, t, pos_weight=pw)
    if weight is not None:
        w = be.asarray(_target(weight, input), dtype=input.dtype)
        loss = loss * w
        grad = grad * w
    return _reduced(input, loss, grad, reduction)


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error as one node over the ``mse`` kernel.

    Parameters
    ----------
    input : Tensor
    target : array_like or Tensor
        Of ``input``'s shape.
    reduction : {'mean', 'sum', 'none'}, default='mean'
        'none' returns the squared error of each element.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([1.0, 2.0, 4.0], requires_grad=True)
    >>> loss = F.mse_loss(x, [1.0, 0.0, 1.0])
    >>> loss.backward()
    >>> round(loss.item(), 4), x.grad.astype(float).round(4).tolist()
    (4.3333, [0.0, 1.3333, 2.0])
    >>> F.mse_loss(x, [1.0, 0.0, 1.0], reduction="sum").item()
    13.0
    """
    _check_reduction(reduction)
    t = _target(target, input)
    if tuple(t.shape) != input.shape:
        raise ValueError(f"target shape {tuple(t.shape)} does not match input shape {input.shape}")
    loss, grad = input.backend.mse(input.data, t)
    return _reduced(input, loss, grad, reduction)
