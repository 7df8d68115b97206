"""Differentiable convolution and pooling: each one node over the ``conv2d`` / ``maxpool2d`` / ``avgpool2d`` kernels."""

from __future__ import annotations

import numbers
from typing import Any

from ..autograd import Tensor

_make = Tensor._make


def _pair(op: str, name: str, value: Any, low: int) -> tuple[int, int]:
    """``value`` (an int or a pair of ints) as a pair of ints >= ``low``, else a ValueError naming it."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low for v in pair
    ):
        raise ValueError(f"{op}: {name} must be an int >= {low} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_input(op: str, x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: expected input of shape (N, C, H, W) (4 dimensions), got shape {x.shape}")


def _check_fits(op: str, x: Tensor, kernel: tuple[int, int], pad: tuple[int, int]) -> None:
    for axis, size, k, p in zip(("height", "width"), x.shape[2:], kernel, pad):
        if size + 2 * p < k:
            raise ValueError(
                f"{op}: kernel {kernel[0]}x{kernel[1]} does not fit the input {axis} {size} with padding {p}; "
                f"use a smaller kernel or more padding (input shape {x.shape})"
            )


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0) -> Tensor:
    """2-D convolution (cross-correlation, as in PyTorch) as one node over the ``conv2d`` kernel.

    Parameters
    ----------
    x : Tensor of shape (N, C_in, H, W)
    weight : Tensor of shape (C_out, C_in, kh, kw)
    bias : Tensor of shape (C_out,), optional
    stride : int or (int, int), default=1
    padding : int or (int, int), default=0
        Zeros added on both sides of each spatial axis.

    Returns
    -------
    Tensor of shape (N, C_out, H_out, W_out)
        ``H_out = (H + 2 * padding - kh) // stride + 1``, likewise ``W_out``.

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor(np.ones((1, 1, 4, 4), dtype=np.float32))
    >>> w = mt.tensor(np.ones((2, 1, 3, 3), dtype=np.float32))
    >>> F.conv2d(x, w, padding=1).shape
    (1, 2, 4, 4)
    """
    stride, padding = _pair("conv2d", "stride", stride, 1), _pair("conv2d", "padding", padding, 0)
    _check_input("conv2d", x)
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must have shape (C_out, C_in, kh, kw), got shape {weight.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"conv2d: input has {x.shape[1]} channels (shape {x.shape}) but weight expects {weight.shape[1]} "
            f"(weight shape {weight.shape})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    _check_fits("conv2d", x, weight.shape[2:], padding)
    be, xd, wd = x.backend, x.data, weight.data
    y = be.conv2d(xd, wd, None if bias is None else bias.data, stride=stride, padding=padding)

    def bw(g: Any) -> tuple[Any, ...]:
        return be.conv2d_backward(g, xd, wd, stride=stride, padding=padding, need_input_grad=x.requires_grad)

    return _make(y, be, (x, weight) if bias is None else (x, weight, bias), bw)


def conv2d_act_pool(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    activation: str,
    alpha: float,
    pool: tuple[int, int],
) -> Tensor:
    """``max_pool2d(activation(conv2d(x, weight, bias, stride, padding)), pool)`` as one node over the
    ``conv2d_act_pool`` kernel (``pool`` (1, 1): no pooling); ``nn.Sequential`` runs Conv2d -> activation
    (-> MaxPool2d) this way. Arguments are checked by the layers that call it.
    """
    be, xd, wd = x.backend, x.data, weight.data
    kw = {"stride": stride, "padding": padding, "activation": activation, "alpha": alpha, "pool": pool}
    y, argmax = be.conv2d_act_pool(xd, wd, None if bias is None else bias.data, **kw)

    def bw(g: Any) -> tuple[Any, ...]:
        return be.conv2d_act_pool_backward(g, xd, wd, y, argmax, need_input_grad=x.requires_grad, **kw)

    return _make(y, be, (x, weight) if bias is None else (x, weight, bias), bw)


def _pool_args(op: str, x: Tensor, kernel_size: Any, stride: Any, padding: Any) -> tuple[tuple[int, int], ...]:
    kernel = _pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else _pair(op, "stride", stride, 1)
    pad = _pair(op, "padding", padding, 0)
    _check_input(op, x)
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {padding!r} must be at most half the kernel size {kernel_size!r}")
    _check_fits(op, x, kernel, pad)
    return kernel, stride, pad


def max_pool2d(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """2-D max pooling as one node over the ``maxpool2d`` kernel (padding counts as -inf, like PyTorch).

    Parameters
    ----------
    x : Tensor of shape (N, C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int), default=0
        At most half the kernel size.

    Returns
    -------
    Tensor of shape (N, C, H_out, W_out)
        ``H_out = (H + 2 * padding - kh) // stride + 1``, likewise ``W_out``. Where a window has several
        maxima, the gradient goes to the first (row-major).

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    >>> F.max_pool2d(x, 2).numpy()[0, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """
    kernel, stride, pad = _pool_args("max_pool2d", x, kernel_size, stride, padding)
    be, shape = x.backend, x.shape
    y, argmax = be.maxpool2d(x.data, kernel_size=kernel, stride=stride, padding=pad)

    def bw(g: Any) -> tuple[Any]:
        return (be.maxpool2d_backward(g, argmax, shape, kernel_size=kernel, stride=stride, padding=pad),)

    return _make(y, be, (x,), bw)


def avg_pool2d(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """2-D average pooling as one node over the ``avgpool2d`` kernel (zero padding counted, like PyTorch).

    Parameters
    ----------
    x : Tensor of shape (N, C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int), default=0
        At most half the kernel size; padded zeros count in every window's mean
        (PyTorch's ``count_include_pad=True``).

    Returns
    -------
    Tensor of shape (N, C, H_out, W_out)

    Examples
    --------
    >>> import numpy as np
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    >>> F.avg_pool2d(x, 2).numpy()[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    kernel, stride, pad = _pool_args("avg_pool2d", x, kernel_size, stride, padding)
    be, shape = x.backend, x.shape
    y = be.avgpool2d(x.data, kernel_size=kernel, stride=stride, padding=pad)

    def bw(g: Any) -> tuple[Any]:
        return (be.avgpool2d_backward(g, shape, kernel_size=kernel, stride=stride, padding=pad),)

    return _make(y, be, (x,), bw)
