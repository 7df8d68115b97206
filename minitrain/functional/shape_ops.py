"""Differentiable tensor ops: shapes (reshape, transpose, indexing, concatenation) and elementwise functions."""

from __future__ import annotations

from typing import Any

from ..autograd import Tensor
from .tensor_ops import _pair, _tensor, _unbroadcast

_make = Tensor._make


# ---------------------------------------------------------------------- shape
def reshape(x: Tensor, *shape: Any) -> Tensor:
    """A tensor with the same data in a new shape.

    Parameters
    ----------
    x : Tensor
    *shape : int or tuple of int
        The new shape, as separate ints or one tuple; one entry may be -1.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    >>> F.reshape(x, 2, 3).shape, F.reshape(x, (3, -1)).shape
    ((2, 3), (3, 2))
    """
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    old = x.shape
    return _make(x.data.reshape(shape), x.backend, (x,), lambda g: (g.reshape(old),))


def astype(x: Tensor, dtype: Any) -> Tensor:
    """Cast to ``dtype``; the gradient is cast back.

    Parameters
    ----------
    x : Tensor
    dtype : dtype or str
        The target dtype; ``x`` itself is returned when it already has it.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([1.5, 2.5])
    >>> str(F.astype(x, "float64").dtype), F.astype(x, "float32") is x
    ('float64', True)
    """
    old = x.dtype
    if old == dtype:
        return x
    return _make(x.data.astype(dtype), x.backend, (x,), lambda g: (g.astype(old),))


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge axes ``start_dim..end_dim`` into one.

    Parameters
    ----------
    x : Tensor
    start_dim : int, default=0
    end_dim : int, default=-1
        Both included; negative values count from the end.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> import numpy as np
    >>> x = mt.tensor(np.zeros((2, 3, 4), dtype=np.float32))
    >>> F.flatten(x).shape, F.flatten(x, 1).shape, F.flatten(x, 0, 1).shape
    ((24,), (2, 12), (6, 4))
    """
    shape = x.shape
    if not shape:
        return reshape(x, (1,))
    s, e = start_dim % len(shape), end_dim % len(shape)
    n = 1
    for d in shape[s : e + 1]:
        n *= d
    return reshape(x, (*shape[:s], n, *shape[e + 1 :]))


def transpose(x: Tensor, *axes: Any) -> Tensor:
    """Permute axes (reverse them by default).

    Parameters
    ----------
    x : Tensor
    *axes : int or tuple of int
        The permutation, as separate ints or one tuple; none reverses the axes.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> import numpy as np
    >>> x = mt.tensor(np.zeros((2, 3, 4), dtype=np.float32))
    >>> F.transpose(x).shape, F.transpose(x, 0, 2, 1).shape
    ((4, 3, 2), (2, 4, 3))
    >>> F.transpose(mt.tensor([[1.0, 2.0]])).numpy().tolist()
    [[1.0], [2.0]]
    """
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    perm = tuple(int(a) % x.ndim for a in axes) if axes else tuple(reversed(range(x.ndim)))
    inverse = tuple(sorted(range(len(perm)), key=perm.__getitem__))
    return _make(x.data.transpose(perm), x.backend, (x,), lambda g: (g.transpose(inverse),))


def _basic_index(key: Any) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (int, slice)) for k in keys)


def getitem(x: Tensor, key: Any) -> Tensor:
    """Indexing and slicing with NumPy's rules; repeated fancy indices accumulate gradients.

    Parameters
    ----------
    x : Tensor
    key : int, slice, None, Ellipsis, array_like, Tensor or tuple of these
        What ``x[key]`` takes.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = F.getitem(x, [0, 0, 2])
    >>> y.numpy().tolist()
    [1.0, 1.0, 3.0]
    >>> y.sum().backward()
    >>> x.grad.tolist()  # index 0 was taken twice
    [2.0, 0.0, 1.0]
    """
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
    """Join tensors along an existing axis.

    Parameters
    ----------
    tensors : sequence of Tensor or array_like
        At least one a Tensor; their shapes match except along ``axis``.
    axis : int, default=0

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> a, b = mt.tensor([[1.0, 2.0]]), mt.tensor([[3.0, 4.0], [5.0, 6.0]])
    >>> F.concatenate([a, b]).numpy().tolist()
    [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    """
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
    """Join same-shaped tensors along a new axis.

    Parameters
    ----------
    tensors : sequence of Tensor or array_like
        At least one a Tensor, all of one shape.
    axis : int, default=0
        Where the new axis goes in the result.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> a, b = mt.tensor([1.0, 2.0]), mt.tensor([3.0, 4.0])
    >>> F.stack([a, b]).numpy().tolist(), F.stack([a, b], axis=1).numpy().tolist()
    ([[1.0, 2.0], [3.0, 4.0]], [[1.0, 3.0], [2.0, 4.0]])
    """
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
    """Elementwise exponential.

    Parameters
    ----------
    x : Tensor

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.exp(mt.tensor([0.0, 1.0])).numpy().astype(float).round(4).tolist()
    [1.0, 2.7183]
    """
    y = x.backend.xp.exp(x.data)
    return _make(y, x.backend, (x,), lambda g: (g * y,))


def log(x: Tensor) -> Tensor:
    """Elementwise natural logarithm.

    Parameters
    ----------
    x : Tensor

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([1.0, 4.0], requires_grad=True)
    >>> y = F.log(x)
    >>> y.sum().backward()
    >>> y.numpy().astype(float).round(4).tolist(), x.grad.tolist()
    ([0.0, 1.3863], [1.0, 0.25])
    """
    xd = x.data
    return _make(x.backend.xp.log(xd), x.backend, (x,), lambda g: (g / xd,))


def sqrt(x: Tensor) -> Tensor:
    """Elementwise square root.

    Parameters
    ----------
    x : Tensor

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.sqrt(mt.tensor([4.0, 9.0])).numpy().tolist()
    [2.0, 3.0]
    """
    y = x.backend.xp.sqrt(x.data)
    return _make(y, x.backend, (x,), lambda g: (g * 0.5 / y,))


def abs(x: Tensor) -> Tensor:
    """Elementwise absolute value (gradient 0 at 0).

    Parameters
    ----------
    x : Tensor

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([-2.0, 0.0, 3.0], requires_grad=True)
    >>> y = F.abs(x)
    >>> y.sum().backward()
    >>> y.numpy().tolist(), x.grad.tolist()
    ([2.0, 0.0, 3.0], [-1.0, 0.0, 1.0])
    """
    xp = x.backend.xp
    xd = x.data
    return _make(xp.abs(xd), x.backend, (x,), lambda g: (g * xp.sign(xd),))


def clip(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    """Clamp values to ``[min, max]``; the gradient passes where ``min <= x <= max``.

    Parameters
    ----------
    x : Tensor
    min, max : float, optional
        The bounds; None leaves that side open.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    >>> y = F.clip(x, 0.0, 1.0)
    >>> y.sum().backward()
    >>> y.numpy().tolist(), x.grad.tolist()
    ([0.0, 0.5, 1.0], [0.0, 1.0, 0.0])
    """
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
    """Elementwise ``a if condition else b`` with broadcasting.

    Parameters
    ----------
    condition : Tensor or array_like
        Converted to booleans.
    a, b : Tensor, array_like or scalar
        At least one of them a Tensor; each gets the gradient where it was chosen.

    Returns
    -------
    Tensor

    Raises
    ------
    TypeError
        If neither ``a`` nor ``b`` is a Tensor.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([-1.0, 2.0, -3.0])
    >>> F.where(x > 0, x, 0.0).numpy().tolist()
    [0.0, 2.0, 0.0]
    """
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
    """Elementwise maximum (ties send the gradient to ``a``).

    Parameters
    ----------
    a, b : Tensor, array_like or scalar
        At least one of them a Tensor.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.maximum(mt.tensor([1.0, 5.0]), mt.tensor([3.0, 2.0])).numpy().tolist()
    [3.0, 5.0]
    """
    a, b = _pair(a, b)
    return where(a.data >= b.data, a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum (ties send the gradient to ``a``).

    Parameters
    ----------
    a, b : Tensor, array_like or scalar
        At least one of them a Tensor.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.minimum(mt.tensor([1.0, 5.0]), 2.0).numpy().tolist()
    [1.0, 2.0]
    """
    a, b = _pair(a, b)
    return where(a.data <= b.data, a, b)
