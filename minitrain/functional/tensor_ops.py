"""Differentiable tensor math: arithmetic, reductions, shape ops, elementwise functions."""

from __future__ import annotations

import numbers
from typing import Any

from ..autograd import Tensor

_make = Tensor._make


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


def pow(a: Any, p: Any) -> Tensor:
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
def _spread(x: Tensor, value: Any, axes: tuple[int, ...], keepdims: bool, scale: float = 1.0) -> Tensor:
    """Node for a sum-like reduction: the gradient is spread back evenly over the reduced axes."""
    shape = x.shape
    xp = x.backend.xp
    return _make(
        value,
        x.backend,
        (x,),
        lambda g: (xp.broadcast_to(_expand(g, axes, keepdims) * scale, shape).copy(),),
    )


def sum(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Sum over ``axis`` (all axes by default)."""
    axes = _axes(axis, x.ndim)
    return _spread(x, x.data.sum(axis=axes, keepdims=keepdims), axes, keepdims)


def mean(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes by default)."""
    axes = _axes(axis, x.ndim)
    count = 1
    for a in axes:
        count *= x.shape[a]
    return _spread(x, x.data.mean(axis=axes, keepdims=keepdims), axes, keepdims, 1.0 / count)


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


def max(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Maximum over ``axis``; tied maxima share the gradient."""
    return _extremum(x, axis, keepdims, True)


def min(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
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
    return reshape(x, (*shape[:s], n, *shape[e + 1 :]))


def transpose(x: Tensor, *axes: Any) -> Tensor:
    """Permute axes (reverse them by default)."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    perm = tuple(int(a) % x.ndim for a in axes) if axes else tuple(reversed(range(x.ndim)))
    inverse = tuple(sorted(range(len(perm)), key=perm.__getitem__))
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


def abs(x: Tensor) -> Tensor:
    """Elementwise absolute value (gradient 0 at 0)."""
    xp = x.backend.xp
    xd = x.data
    return _make(xp.abs(xd), x.backend, (x,), lambda g: (g * xp.sign(xd),))


def clip(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
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
