"""Differentiable spatial ops: adaptive average / max pooling (PyTorch's bins) and channel-wise dropout."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import random
from ..autograd import Tensor

_make = Tensor._make


def _output_size(op: str, output_size: Any, size: tuple[int, int]) -> tuple[int, int]:
    """``output_size`` (an int, or a pair of ints or None: None keeps that input size) as a pair of ints."""
    pair = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(pair) != 2 or not all(
        v is None or (isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1) for v in pair
    ):
        raise ValueError(f"{op}: output_size must be an int >= 1 or a pair of them (or None), got {output_size!r}")
    return tuple(size[i] if v is None else int(v) for i, v in enumerate(pair))  # type: ignore[return-value]


def _check(op: str, x: Tensor) -> None:
    if x.ndim not in (3, 4) or x.shape[-1] < 1 or x.shape[-2] < 1:
        raise ValueError(f"{op}: expected input of shape (N, C, H, W) or (C, H, W) with H, W >= 1, got {x.shape}")


def bins(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows along one axis: ``[floor(i * size / out), ceil((i + 1) * size / out))``."""
    return [((i * size) // out, -(-(i + 1) * size // out)) for i in range(out)]


def _averaging(size: int, out: int, dtype: Any) -> np.ndarray:
    """The (out, size) matrix that averages each window of :func:`bins`."""
    m = np.zeros((out, size), dtype=dtype)
    for i, (s, e) in enumerate(bins(size, out)):
        m[i, s:e] = 1.0 / (e - s)
    return m


def adaptive_avg_pool2d(x: Tensor, output_size: Any) -> Tensor:
    """2-D adaptive average pooling with PyTorch's windows, as one node (any output size).

    Parameters
    ----------
    x : Tensor of shape (N, C, H, W) or (C, H, W)
    output_size : int or (int or None, int or None)
        (H_out, W_out); None keeps that input size. ``1`` is global average pooling.

    Returns
    -------
    Tensor of shape (N, C, H_out, W_out) or (C, H_out, W_out)
        Window ``i`` of an axis of length ``n`` covers ``[floor(i * n / out), ceil((i + 1) * n / out))``.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor(np.arange(16.0).reshape(1, 1, 4, 4))
    >>> F.adaptive_avg_pool2d(x, (1, 2)).numpy()
    array([[[[6.5, 8.5]]]])
    """
    _check("adaptive_avg_pool2d", x)
    be, xd = x.backend, x.data
    H, W = x.shape[-2:]
    oh, ow = _output_size("adaptive_avg_pool2d", output_size, (H, W))
    if (oh, ow) == (1, 1):  # global pooling
        y = xd.mean(axis=(-2, -1), keepdims=True)
        shape, xp = x.shape, be.xp
        return _make(y, be, (x,), lambda g: (xp.broadcast_to(g / (H * W), shape).copy(),))
    ph = be.asarray(_averaging(H, oh, np.dtype(x.dtype)))
    pw = be.asarray(_averaging(W, ow, np.dtype(x.dtype)))
    xp = be.xp
    y = xp.matmul(xp.matmul(ph, xd), pw.T)
    return _make(y, be, (x,), lambda g: (xp.matmul(xp.matmul(ph.T, g), pw),))


def adaptive_max_pool2d(x: Tensor, output_size: Any, return_indices: bool = False) -> Any:
    """2-D adaptive max pooling with PyTorch's windows, as one node.

    Parameters
    ----------
    x : Tensor of shape (N, C, H, W) or (C, H, W)
    output_size : int or (int or None, int or None)
    return_indices : bool, default=False
        Also return, for every output, the index of its maximum in the flattened H * W plane (PyTorch's).

    Returns
    -------
    Tensor of shape (N, C, H_out, W_out) or (C, H_out, W_out), and the indices (an int64 Tensor of that shape)
    if asked. A window's gradient goes to its first maximum (row-major); NaN counts as the maximum.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor(np.arange(16.0).reshape(1, 1, 4, 4))
    >>> F.adaptive_max_pool2d(x, 2).numpy()
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    """
    _check("adaptive_max_pool2d", x)
    be, xp = x.backend, x.backend.xp
    shape = x.shape
    H, W = shape[-2:]
    oh, ow = _output_size("adaptive_max_pool2d", output_size, (H, W))
    flat = x.data.reshape(-1, H, W)
    M = flat.shape[0]
    rows = xp.arange(M)
    out = xp.empty((M, oh, ow), dtype=x.dtype)
    idx = xp.empty((M, oh, ow), dtype=xp.int64)
    for i, (hs, he) in enumerate(bins(H, oh)):
        for j, (ws, we) in enumerate(bins(W, ow)):
            win = flat[:, hs:he, ws:we].reshape(M, -1)
            a = win.argmax(axis=1)
            out[:, i, j] = win[rows, a]
            idx[:, i, j] = (hs + a // (we - ws)) * W + ws + a % (we - ws)

    def bw(g: Any) -> tuple[Any]:
        gx = xp.zeros((M, H * W), dtype=g.dtype)
        xp.add.at(gx, (rows[:, None], idx.reshape(M, -1)), g.reshape(M, -1))
        return (gx.reshape(shape),)

    y = _make(out.reshape((*shape[:-2], oh, ow)), be, (x,), bw)
    return (y, _make(idx.reshape(y.shape), be)) if return_indices else y


def _channel_dropout(op: str, x: Tensor, p: float, training: bool, generator: Any, spatial: int) -> Tensor:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability must be in [0, 1], got {p}")
    if x.ndim not in (spatial + 1, spatial + 2):
        raise ValueError(
            f"{op}: expected input with {spatial + 2} dimensions (or {spatial + 1} unbatched), got {x.shape}"
        )
    if not training or p == 0.0:
        return x
    be = x.backend
    if generator is None:
        generator = be.generator(random.spawn_seed())
    ones = be.xp.ones((*x.shape[: x.ndim - spatial], *(1,) * spatial), dtype=x.dtype)
    mask = be.dropout(ones, p, generator)[1]
    return _make(x.data * mask, be, (x,), lambda g: (g * mask,))


def dropout2d(x: Tensor, p: float = 0.5, training: bool = True, generator: Any = None) -> Tensor:
    """Channel-wise dropout: zero whole channels of (N, C, H, W) or (C, H, W) with probability ``p``, scale the
    rest by 1 / (1 - p). ``generator`` as for :func:`dropout`.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> y = F.dropout2d(mt.tensor(np.ones((2, 8, 3, 3))), 0.5, generator=np.random.default_rng(0)).numpy()
    >>> bool((y.std(axis=(2, 3)) == 0).all()), sorted({float(v) for v in np.unique(y)})
    (True, [0.0, 2.0])
    """
    return _channel_dropout("dropout2d", x, p, training, generator, 2)


def dropout1d(x: Tensor, p: float = 0.5, training: bool = True, generator: Any = None) -> Tensor:
    """Channel-wise dropout over (N, C, L) or (C, L): whole channels are zeroed; see :func:`dropout2d`.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.dropout1d(mt.tensor(np.ones((2, 8, 5))), 0.5, training=False).shape
    (2, 8, 5)
    """
    return _channel_dropout("dropout1d", x, p, training, generator, 1)
