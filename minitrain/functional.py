"""Differentiable ops: each calls backend kernels and records one backward closure.

Ops take Tensors (Python scalars and arrays are accepted where they make sense) and return Tensors.
Hot paths (``linear``, the losses, ``dropout``, ``batch_norm``) are one node over one fused kernel.
"""

from __future__ import annotations

import numbers
from typing import Any

from .autograd import Tensor
from .backend.base import NEEDS_PREACTIVATION, canonical_activation

_make = Tensor._make
_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------- helpers
def _tensor(x: Any, like: Tensor) -> Tensor:
    """``x`` as a Tensor on ``like``'s backend; float arrays take ``like``'s float dtype."""
    if isinstance(x, Tensor):
        if x.backend is not like.backend:
            raise ValueError(
                f"tensors live on different backends ({x.backend.name!r} and {like.backend.name!r}); "
                "move one with .to() or Tensor(t.numpy(), backend=...)"
            )
        return x
    be = like.backend
    arr = be.asarray(x)
    if arr.dtype.kind in "fiub" and like.dtype.kind == "f":
        arr = arr.astype(like.dtype, copy=False)
    return _make(arr, be)


def _pair(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    if isinstance(a, Tensor):
        return a, _tensor(b, a)
    return _tensor(a, b), b


def _unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``g`` over the axes that broadcasting added or stretched, back to ``shape``."""
    if tuple(g.shape) == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(sorted(a % ndim for a in axis))


def _expand(g: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    if keepdims:
        return g
    xp_shape = list(g.shape)
    for a in axes:
        xp_shape.insert(a, 1)
    return g.reshape(xp_shape)


def _is_scalar(x: Any) -> bool:
    return isinstance(x, numbers.Number) and not isinstance(x, bool)


# ---------------------------------------------------------------------- arithmetic
def add(a: Any, b: Any) -> Tensor:
    """Elementwise ``a + b`` with broadcasting."""
    if isinstance(a, Tensor) and _is_scalar(b):
        return _make(a.data + b, a.backend, (a,), lambda g: (g,))
    a, b = _pair(a, b)
    sa, sb = a.shape, b.shape
    return _make(a.data + b.data, a.backend, (a, b), lambda g: (_unbroadcast(g, sa), _unbroadcast(g, sb)))


def sub(a: Any, b: Any) -> Tensor:
    """Elementwise ``a - b`` with broadcasting."""
    if isinstance(a, Tensor) and _is_scalar(b):
        return _make(a.data - b, a.backend, (a,), lambda g: (g,))
    a, b = _pair(a, b)
    sa, sb = a.shape, b.shape
    return _make(a.data - b.data, a.backend, (a, b), lambda g: (_unbroadcast(g, sa), _unbroadcast(-g, sb)))


def mul(a: Any, b: Any) -> Tensor:
    """Elementwise ``a * b`` with broadcasting."""
    if isinstance(a, Tensor) and _is_scalar(b):
        return _make(a.data * b, a.backend, (a,), lambda g: (g * b,))
    a, b = _pair(a, b)
    ad, bd = a.data, b.data
    return _make(
        ad * bd,
        a.backend,
        (a, b),
        lambda g: (_unbroadcast(g * bd, ad.shape), _unbroadcast(g * ad, bd.shape)),
    )


def div(a: Any, b: Any) -> Tensor:
    """Elementwise ``a / b`` with broadcasting."""
    if isinstance(a, Tensor) and _is_scalar(b):
        return _make(a.data / b, a.backend, (a,), lambda g: (g / b,))
    a, b = _pair(a, b)
    ad, bd = a.data, b.data
    y = ad / bd
    return _make(
        y,
        a.backend,
        (a, b),
        lambda g: (_unbroadcast(g / bd, ad.shape), _unbroadcast(-g * y / bd, bd.shape)),
    )


def neg(a: Tensor) -> Tensor:
    """Elementwise ``-a``."""
    return _make(-a.data, a.backend, (a,), lambda g: (-g,))


def pow(a: Any, p: Any) -> Tensor:  # noqa: A001 - mirrors the operator's name
    """Elementwise ``a ** p``; ``p`` a scalar or a tensor."""
    if isinstance(a, Tensor) and _is_scalar(p):
        ad = a.data
        return _make(ad**p, a.backend, (a,), lambda g: (g * p * ad ** (p - 1),))
    a, pt = _pair(a, p)
    xp = a.backend.xp
    ad, pd = a.data, pt.data
    y = ad**pd

    def bw(g: Any) -> tuple[Any, Any]:
        ga = _unbroadcast(g * pd * ad ** (pd - 1), ad.shape)
        safe = xp.where(ad > 0, ad, 1)
        gp = _unbroadcast(g * y * xp.log(safe), pd.shape)
        return ga, gp

    return _make(y, a.backend, (a, pt), bw)


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product with NumPy's rules (1-D vectors, batched broadcasting)."""
    a, b = _pair(a, b)
    be = a.backend
    ad, bd = a.data, b.data
    if ad.ndim == 2 and bd.ndim == 2:
        return _make(
            be.gemm(ad, bd),
            be,
            (a, b),
            lambda g: (
                be.gemm(g, bd, trans_b=True) if a.requires_grad else None,
                be.gemm(ad, g, trans_a=True) if b.requires_grad else None,
            ),
        )
    xp = be.xp

    def bw(g: Any) -> tuple[Any, Any]:
        if ad.ndim == 1 and bd.ndim == 1:
            return g * bd, g * ad
        a2 = ad[None, :] if ad.ndim == 1 else ad
        b2 = bd[:, None] if bd.ndim == 1 else bd
        g2 = g
        if ad.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        if bd.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        ga = _unbroadcast(xp.matmul(g2, xp.swapaxes(b2, -1, -2)), a2.shape).reshape(ad.shape)
        gb = _unbroadcast(xp.matmul(xp.swapaxes(a2, -1, -2), g2), b2.shape).reshape(bd.shape)
        return ga, gb

    return _make(xp.matmul(ad, bd), be, (a, b), bw)


# ---------------------------------------------------------------------- reductions
def sum(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum over ``axis`` (all axes by default)."""
    axes = _axes(axis, x.ndim)
    shape = x.shape
    xp = x.backend.xp
    return _make(
        x.data.sum(axis=axes, keepdims=keepdims),
        x.backend,
        (x,),
        lambda g: (xp.broadcast_to(_expand(g, axes, keepdims), shape).copy(),),
    )


def mean(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes by default)."""
    axes = _axes(axis, x.ndim)
    count = 1
    for a in axes:
        count *= x.shape[a]
    shape = x.shape
    xp = x.backend.xp
    return _make(
        x.data.mean(axis=axes, keepdims=keepdims),
        x.backend,
        (x,),
        lambda g: (xp.broadcast_to(_expand(g, axes, keepdims) / count, shape).copy(),),
    )


def _extremum(x: Tensor, axis: Any, keepdims: bool, largest: bool) -> Tensor:
    axes = _axes(axis, x.ndim)
    xd = x.data
    y = xd.max(axis=axes, keepdims=True) if largest else xd.min(axis=axes, keepdims=True)

    def bw(g: Any) -> tuple[Any]:
        mask = (xd == y).astype(xd.dtype)
        mask /= mask.sum(axis=axes, keepdims=True)  # ties share the gradient equally
        return (mask * _expand(g, axes, keepdims),)

    out = y if keepdims else y.reshape([n for i, n in enumerate(xd.shape) if i not in axes])
    return _make(out, x.backend, (x,), bw)


def max(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Maximum over ``axis``; tied maxima share the gradient."""
    return _extremum(x, axis, keepdims, True)


def min(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Minimum over ``axis``; tied minima share the gradient."""
    return _extremum(x, axis, keepdims, False)


# ---------------------------------------------------------------------- shape
def reshape(x: Tensor, *shape: Any) -> Tensor:
    """A tensor with the same data in a new shape."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    old = x.shape
    return _make(x.data.reshape(shape), x.backend, (x,), lambda g: (g.reshape(old),))


def astype(x: Tensor, dtype: Any) -> Tensor:
    """Cast to ``dtype``; the gradient is cast back."""
    old = x.dtype
    if old == dtype:
        return x
    return _make(x.data.astype(dtype), x.backend, (x,), lambda g: (g.astype(old),))


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge axes ``start_dim..end_dim`` into one."""
    shape = x.shape
    if not shape:
        return reshape(x, (1,))
    s, e = start_dim % len(shape), end_dim % len(shape)
    n = 1
    for d in shape[s : e + 1]:
        n *= d
    return reshape(x, shape[:s] + (n,) + shape[e + 1 :])


def transpose(x: Tensor, *axes: Any) -> Tensor:
    """Permute axes (reverse them by default)."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    perm = tuple(axes) if axes else tuple(reversed(range(x.ndim)))
    xp = x.backend.xp
    inverse = tuple(int(i) for i in xp.argsort(xp.asarray(perm))) if perm else ()
    return _make(x.data.transpose(perm), x.backend, (x,), lambda g: (g.transpose(inverse),))


def _basic_index(key: Any) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (int, slice)) for k in keys)


def getitem(x: Tensor, key: Any) -> Tensor:
    """Indexing and slicing with NumPy's rules; repeated fancy indices accumulate gradients."""
    if isinstance(key, Tensor):
        key = key.data
    elif isinstance(key, tuple):
        key = tuple(k.data if isinstance(k, Tensor) else k for k in key)
    xp = x.backend.xp
    shape, dtype = x.shape, x.dtype
    basic = _basic_index(key)

    def bw(g: Any) -> tuple[Any]:
        out = xp.zeros(shape, dtype=dtype)
        if basic:
            out[key] += g
        else:
            xp.add.at(out, key, g)
        return (out,)

    return _make(x.data[key], x.backend, (x,), bw)


def concatenate(tensors: Any, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    tensors = list(tensors)
    first = tensors[0] if isinstance(tensors[0], Tensor) else next(t for t in tensors if isinstance(t, Tensor))
    tensors = [_tensor(t, first) for t in tensors]
    xp = first.backend.xp
    ax = axis % tensors[0].ndim
    bounds = []
    total = 0
    for t in tensors:
        total += t.shape[ax]
        bounds.append(total)

    def bw(g: Any) -> tuple[Any, ...]:
        return tuple(xp.split(g, bounds[:-1], axis=ax))

    return _make(xp.concatenate([t.data for t in tensors], axis=ax), first.backend, tuple(tensors), bw)


def stack(tensors: Any, axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis."""
    tensors = list(tensors)
    first = next(t for t in tensors if isinstance(t, Tensor))
    tensors = [_tensor(t, first) for t in tensors]
    xp = first.backend.xp
    ax = axis % (tensors[0].ndim + 1)

    def bw(g: Any) -> tuple[Any, ...]:
        return tuple(xp.take(g, i, axis=ax) for i in range(len(tensors)))

    return _make(xp.stack([t.data for t in tensors], axis=ax), first.backend, tuple(tensors), bw)


# ---------------------------------------------------------------------- elementwise math
def exp(x: Tensor) -> Tensor:
    """Elementwise exponential."""
    y = x.backend.xp.exp(x.data)
    return _make(y, x.backend, (x,), lambda g: (g * y,))


def log(x: Tensor) -> Tensor:
    """Elementwise natural logarithm."""
    xd = x.data
    return _make(x.backend.xp.log(xd), x.backend, (x,), lambda g: (g / xd,))


def sqrt(x: Tensor) -> Tensor:
    """Elementwise square root."""
    y = x.backend.xp.sqrt(x.data)
    return _make(y, x.backend, (x,), lambda g: (g * 0.5 / y,))


def abs(x: Tensor) -> Tensor:  # noqa: A001
    """Elementwise absolute value (gradient 0 at 0)."""
    xp = x.backend.xp
    xd = x.data
    return _make(xp.abs(xd), x.backend, (x,), lambda g: (g * xp.sign(xd),))


def clip(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """Clamp values to ``[min, max]``; the gradient passes where ``min <= x <= max``."""
    xp = x.backend.xp
    xd = x.data
    y = xp.clip(xd, min, max)

    def bw(g: Any) -> tuple[Any]:
        inside = xp.ones(xd.shape, dtype=bool)
        if min is not None:
            inside &= xd >= min
        if max is not None:
            inside &= xd <= max
        return (g * inside,)

    return _make(y, x.backend, (x,), bw)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """Elementwise ``a if condition else b`` with broadcasting."""
    like = a if isinstance(a, Tensor) else b
    if not isinstance(like, Tensor):
        raise TypeError("where() needs at least one of a, b to be a Tensor")
    a, b = _tensor(a, like), _tensor(b, like)
    xp = like.backend.xp
    cond = condition.data if isinstance(condition, Tensor) else like.backend.asarray(condition)
    cond = cond.astype(bool, copy=False)
    sa, sb = a.shape, b.shape

    def bw(g: Any) -> tuple[Any, Any]:
        zero = xp.zeros((), dtype=g.dtype)
        return _unbroadcast(xp.where(cond, g, zero), sa), _unbroadcast(xp.where(cond, zero, g), sb)

    return _make(xp.where(cond, a.data, b.data), like.backend, (a, b), bw)


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum (ties send the gradient to ``a``)."""
    a, b = _pair(a, b)
    return where(a.data >= b.data, a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum (ties send the gradient to ``a``)."""
    a, b = _pair(a, b)
    return where(a.data <= b.data, a, b)


# ---------------------------------------------------------------------- activations
def activation(x: Tensor, name: str, alpha: float = 0.01) -> Tensor:
    """Apply a named activation (see ``minitrain.backend.ACTIVATIONS``) as one node."""
    be = x.backend
    name = canonical_activation(name)
    xd = x.data
    y = be.act(xd, name, alpha=alpha)
    z = xd if name in NEEDS_PREACTIVATION else None
    return _make(y, be, (x,), lambda g: (be.act_backward(g, y, z, name, alpha=alpha),))


def relu(x: Tensor) -> Tensor:
    """max(x, 0)."""
    return activation(x, "relu")


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x if x > 0 else negative_slope * x (``negative_slope >= 0``)."""
    return activation(x, "leaky_relu", negative_slope)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else alpha * (exp(x) - 1) (``alpha > 0``)."""
    return activation(x, "elu", alpha)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit; ``approximate='tanh'`` for the tanh formula."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return activation(x, "gelu" if approximate == "none" else "gelu_tanh")


def sigmoid(x: Tensor) -> Tensor:
    """Logistic function 1 / (1 + exp(-x))."""
    return activation(x, "sigmoid")


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return activation(x, "tanh")


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)), computed stably."""
    return activation(x, "softplus")


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax along ``axis``."""
    xp = x.backend.xp
    e = xp.exp(x.data - x.data.max(axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)
    return _make(y, x.backend, (x,), lambda g: (y * (g - (g * y).sum(axis=axis, keepdims=True)),))


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Logarithm of the softmax along ``axis``, computed stably."""
    xp = x.backend.xp
    shifted = x.data - x.data.max(axis=axis, keepdims=True)
    y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    return _make(y, x.backend, (x,), lambda g: (g - xp.exp(y) * g.sum(axis=axis, keepdims=True),))


# ---------------------------------------------------------------------- layers
def linear(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str = "identity", alpha: float = 0.01
) -> Tensor:
    """``act(x @ weight.T + bias)`` as one node over the fused ``affine_act`` kernel.

    Parameters
    ----------
    x : Tensor of shape (..., in_features)
    weight : Tensor of shape (out_features, in_features)
    bias : Tensor of shape (out_features,), optional
    activation : str, default='identity'
        One of ``minitrain.backend.ACTIVATIONS`` (or 'logistic').
    alpha : float, default=0.01
        Slope of leaky_relu, scale of elu.
    """
    be = x.backend
    name = canonical_activation(activation)
    xd = x.data
    if xd.ndim < 1 or xd.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input has shape {x.shape}, expected (..., {weight.shape[1]})")
    x2 = xd if xd.ndim == 2 else xd.reshape(-1, xd.shape[-1])
    wd = weight.data
    y, z = be.affine_act(x2, wd, None if bias is None else bias.data, name, alpha=alpha)

    def bw(g: Any) -> tuple[Any, ...]:
        g2 = g if g.ndim == 2 else g.reshape(-1, g.shape[-1])
        gz = be.act_backward(g2, y, z, name, alpha=alpha)
        gx = be.gemm(gz, wd).reshape(xd.shape) if x.requires_grad else None
        gw = be.gemm(gz, x2, trans_a=True) if weight.requires_grad else None
        if bias is None:
            return gx, gw
        return gx, gw, (gz.sum(axis=0) if bias.requires_grad else None)

    out = y if xd.ndim == 2 else y.reshape(xd.shape[:-1] + (wd.shape[0],))
    return _make(out, be, (x, weight) if bias is None else (x, weight, bias), bw)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: zero each element with probability ``p``, scale the rest by 1/(1-p)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    be = x.backend
    y, mask = be.dropout(x.data, p)
    return _make(y, be, (x,), lambda g: (be.dropout_backward(g, mask),))


def batch_norm(
    x: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization over every axis but 1 (channels), as one node.

    Running statistics (backend arrays, or None) are updated in place when ``training``.
    """
    be = x.backend
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects input of shape (N, C, ...), got {x.shape}")
    if training and x.size // x.shape[1] < 2:
        raise ValueError(f"batch_norm in training needs more than one value per channel, got input {x.shape}")
    wd = None if weight is None else weight.data
    y, xhat, inv_std = be.batchnorm(
        x.data,
        wd,
        None if bias is None else bias.data,
        running_mean,
        running_var,
        training=training,
        momentum=momentum,
        eps=eps,
    )
    batch_stats = training or running_mean is None
    parents = tuple(t for t in (x, weight, bias) if t is not None)

    def bw(g: Any) -> tuple[Any, ...]:
        dx, dgamma, dbeta = be.batchnorm_backward(g, xhat, inv_std, wd, training=batch_stats)
        out = [dx]
        if weight is not None:
            out.append(dgamma)
        if bias is not None:
            out.append(dbeta)
        return tuple(out)

    return _make(y, be, parents, bw)


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
    t = target.data if isinstance(target, Tensor) else x.backend.asarray(target)
    if t.dtype.kind == "b":
        t = t.astype(x.dtype)
    return t


def cross_entropy(
    input: Tensor,  # noqa: A002
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax cross-entropy of logits ``input`` (n, c) against class indices (n,) or probabilities (n, c).

    One node over the ``softmax_cross_entropy`` kernel. With class weights and index targets,
    ``'mean'`` divides by the summed weights of the targets (as PyTorch does).
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
    if t.ndim == 1:
        if t.dtype.kind not in "iu":
            raise TypeError(f"class-index targets must be integers, got dtype {t.dtype}")
        if t.shape[0] != n:
            raise ValueError(f"target has {t.shape[0]} labels for {n} samples")
        if t.size and (int(t.min()) < 0 or int(t.max()) >= c):
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
    if reduction == "mean" and w is not None and t.ndim == 1:
        denom = float(xp.take(w, t).sum())
    return _reduced(input, loss, grad, reduction, denom)


def binary_cross_entropy_with_logits(
    input: Tensor,  # noqa: A002
    target: Any,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy of sigmoid(input) against targets in [0, 1], as one node."""
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


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Mean squared error as one node over the ``mse`` kernel."""
    _check_reduction(reduction)
    t = _target(target, input)
    if tuple(t.shape) != input.shape:
        raise ValueError(f"target shape {tuple(t.shape)} does not match input shape {input.shape}")
    loss, grad = input.backend.mse(input.data, t)
    return _reduced(input, loss, grad, reduction)


# ---------------------------------------------------------------------- Tensor methods
def _install() -> None:
    def r(fn: Any) -> Any:
        return lambda self, other: fn(other, self)

    methods = {
        "__add__": add,
        "__radd__": r(add),
        "__sub__": sub,
        "__rsub__": r(sub),
        "__mul__": mul,
        "__rmul__": r(mul),
        "__truediv__": div,
        "__rtruediv__": r(div),
        "__neg__": neg,
        "__pow__": pow,
        "__matmul__": matmul,
        "__rmatmul__": r(matmul),
        "__getitem__": getitem,
        "sum": sum,
        "mean": mean,
        "max": max,
        "min": min,
        "reshape": reshape,
        "astype": astype,
        "flatten": flatten,
        "transpose": transpose,
        "exp": exp,
        "log": log,
        "sqrt": sqrt,
        "abs": abs,
        "clip": clip,
        "relu": relu,
        "sigmoid": sigmoid,
        "tanh": tanh,
        "softmax": softmax,
        "log_softmax": log_softmax,
    }
    for name, fn in methods.items():
        setattr(Tensor, name, fn)
    Tensor.T = property(lambda self: transpose(self))
    for op in ("__lt__", "__le__", "__gt__", "__ge__"):
        setattr(Tensor, op, _comparison(op))


def _comparison(op: str) -> Any:
    def compare(self: Tensor, other: Any) -> Tensor:
        other = other.data if isinstance(other, Tensor) else other
        return _make(getattr(self.data, op)(other), self.backend)

    compare.__name__ = op
    return compare


_install()
