"""Differentiable tensor math: arithmetic and reductions (shape ops and elementwise functions: ``shape_ops``)."""

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
    """Elementwise ``a + b`` with broadcasting.

    Parameters
    ----------
    a, b : Tensor, array_like or scalar
        At least one of them a Tensor; the other is converted to its backend (and float dtype).

    Returns
    -------
    Tensor
        The broadcast sum; the gradient of each operand is summed back to its shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> a = mt.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> y = F.add(a, mt.tensor([10.0, 20.0]))
    >>> y.numpy().tolist()
    [[11.0, 22.0], [13.0, 24.0]]
    >>> y.sum().backward()
    >>> a.grad.tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    if isinstance(a, Tensor) and _is_scalar(b):
        return _make(a.data + b, a.backend, (a,), lambda g: (g,))
    a, b = _pair(a, b)
    sa, sb = a.shape, b.shape
    return _make(a.data + b.data, a.backend, (a, b), lambda g: (_unbroadcast(g, sa), _unbroadcast(g, sb)))


def sub(a: Any, b: Any) -> Tensor:
    """Elementwise ``a - b`` with broadcasting.

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
    >>> F.sub(mt.tensor([5.0, 7.0]), 2.0).numpy().tolist()
    [3.0, 5.0]
    >>> F.sub(1.0, mt.tensor([0.25, 0.5])).numpy().tolist()
    [0.75, 0.5]
    """
    if isinstance(a, Tensor) and _is_scalar(b):
        return _make(a.data - b, a.backend, (a,), lambda g: (g,))
    a, b = _pair(a, b)
    sa, sb = a.shape, b.shape
    return _make(a.data - b.data, a.backend, (a, b), lambda g: (_unbroadcast(g, sa), _unbroadcast(-g, sb)))


def mul(a: Any, b: Any) -> Tensor:
    """Elementwise ``a * b`` with broadcasting.

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
    >>> a = mt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> F.mul(a, mt.tensor([4.0, 5.0, 6.0])).sum().backward()
    >>> a.grad.tolist()
    [4.0, 5.0, 6.0]
    """
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
    """Elementwise ``a / b`` with broadcasting.

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
    >>> F.div(mt.tensor([1.0, 3.0]), mt.tensor([2.0, 4.0])).numpy().tolist()
    [0.5, 0.75]
    """
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
    """Elementwise ``-a``.

    Parameters
    ----------
    a : Tensor

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.neg(mt.tensor([1.0, -2.0])).numpy().tolist()
    [-1.0, 2.0]
    """
    return _make(-a.data, a.backend, (a,), lambda g: (-g,))


def pow(a: Any, p: Any) -> Tensor:
    """Elementwise ``a ** p``; ``p`` a scalar or a tensor.

    Parameters
    ----------
    a : Tensor or array_like
    p : scalar, Tensor or array_like
        The exponent; a tensor exponent gets a gradient too (taken where ``a > 0``).

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> a = mt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = F.pow(a, 2)
    >>> y.numpy().tolist()
    [1.0, 4.0, 9.0]
    >>> y.sum().backward()
    >>> a.grad.tolist()
    [2.0, 4.0, 6.0]
    """
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
    """Matrix product with NumPy's rules (1-D vectors, batched broadcasting).

    Parameters
    ----------
    a, b : Tensor or array_like
        At least one of them a Tensor; 2-D products run on the backend's ``gemm`` kernel.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> a = mt.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> F.matmul(a, mt.tensor([[1.0], [1.0]])).numpy().tolist()
    [[3.0], [7.0]]
    >>> F.matmul(mt.tensor([1.0, 1.0]), a).shape  # a 1-D vector on the left
    (2,)
    """
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
    """Sum over ``axis`` (all axes by default).

    Parameters
    ----------
    x : Tensor
    axis : int or tuple of int, optional
    keepdims : bool, default=False
        Keep the reduced axes with length 1.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> F.sum(x).item(), F.sum(x, axis=0).numpy().tolist(), F.sum(x, axis=1, keepdims=True).shape
    (10.0, [4.0, 6.0], (2, 1))
    """
    axes = _axes(axis, x.ndim)
    return _spread(x, x.data.sum(axis=axes, keepdims=keepdims), axes, keepdims)


def mean(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes by default).

    Parameters
    ----------
    x : Tensor
    axis : int or tuple of int, optional
    keepdims : bool, default=False
        Keep the reduced axes with length 1.

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> y = F.mean(x, axis=1)
    >>> y.numpy().tolist()
    [1.5, 3.5]
    >>> y.sum().backward()
    >>> x.grad.tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """
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
    """Maximum over ``axis``; tied maxima share the gradient.

    Parameters
    ----------
    x : Tensor
    axis : int or tuple of int, optional
        All axes by default.
    keepdims : bool, default=False

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([1.0, 3.0, 3.0], requires_grad=True)
    >>> y = F.max(x)
    >>> y.backward()
    >>> y.item(), x.grad.tolist()
    (3.0, [0.0, 0.5, 0.5])
    """
    return _extremum(x, axis, keepdims, True)


def min(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Minimum over ``axis``; tied minima share the gradient.

    Parameters
    ----------
    x : Tensor
    axis : int or tuple of int, optional
        All axes by default.
    keepdims : bool, default=False

    Returns
    -------
    Tensor

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.min(mt.tensor([[4.0, 1.0], [2.0, 5.0]]), axis=1).numpy().tolist()
    [1.0, 2.0]
    """
    return _extremum(x, axis, keepdims, False)
