"""``ConvMixin``: Numba overrides of ``conv2d``, ``conv2d_backward``, ``maxpool2d``, ``avgpool2d`` and
``avgpool2d_backward`` (their kernels are in ``_conv_kernels``).

Convolution: ``im2col`` fills the column matrix straight from ``x`` (zeros where windows cover padding, no padded
copy) on the exact output grid, ``wo`` columns per output row where the reference computes ``wg`` (less GEMM
work); one GEMM gives (o, n * ho * wo) and ``onp_to_nop`` writes it as NCHW, adding the bias in the same pass.
The backward writes the output gradient as (o, n * ho * wo) in one pass, recomputes the columns, gets dweight
from one GEMM and dbias as a row sum, and, when the input gradient is needed, the column gradients from a GEMM
into the columns' buffer, which ``col2im`` sums into dx directly. GEMMs are ``np.matmul`` calls between the
kernels. Per-sample batched GEMMs that write NCHW directly measured slower than one GEMM plus the transpose.
Pooling: one pass per plane; max pooling keeps the value and the first argmax together (a NaN sticks, as in the
reference), and padding is skipped, since -inf never changes a running max and 0 never changes a sum.

Not overridden: ``maxpool2d_backward`` (a zeroed dx and one scatter per output was not reliably faster than the
reference). Anything other than 4-D float32/float64 NumPy arrays of one dtype with a non-empty batch and
channels returns ``NotImplemented`` (the reference runs); non-contiguous inputs are copied first.

Threading: the kernels run their serial variant: in training they run between OpenBLAS GEMMs that own the
cores, and the parallel variant measured slower there (figures in docs/performance.md).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from minitrain.backend import geometry2d

from ._util import _dtype, _load, _vector


def _ck() -> ModuleType:
    """The convolution kernels (imported, with numba, on first use)."""
    return _load("_conv_kernels")


def _ok4(*arrays: Any) -> np.dtype | None:
    """The common float32/float64 dtype of 4-D NumPy arrays (None entries skipped), else None."""
    if any(a is not None and (type(a) is not np.ndarray or a.ndim != 4) for a in arrays):
        return None
    return _dtype(*arrays)


def _shape4(shape: Any) -> tuple[int, int, int, int] | None:
    """``shape`` as four non-negative ints, else None."""
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        return None
    return dims if len(dims) == 4 and min(dims) >= 0 else None  # type: ignore[return-value]


def _flat(a: np.ndarray) -> np.ndarray:
    """A flat C-order view of ``a`` (a contiguous copy if it is not C-contiguous)."""
    return np.ascontiguousarray(a).reshape(-1)


class ConvMixin:
    """Numba overrides of conv2d/maxpool2d/avgpool2d and their backwards (``NotImplemented``: the reference)."""

    def conv2d(
        self,
        x: Any,
        weight: Any,
        bias: Any,
        *,
        stride: int | tuple[int, int] = (1, 1),
        padding: int | tuple[int, int] = (0, 0),
    ) -> Any:
        """2-D cross-correlation of ``x`` (n, c, h, w) with ``weight`` (o, c, kh, kw), plus ``bias`` (o,) or None."""
        dt = _ok4(x, weight)
        same = bias is None or (type(bias) is np.ndarray and bias.dtype == dt)
        if dt is None or not same or x.shape[1] != weight.shape[1] or min(x.shape[:2]) == 0 or weight.shape[0] == 0:
            return NotImplemented
        g = geometry2d(x.shape, weight.shape[2:], stride, padding)
        n, c, o, p = x.shape[0], x.shape[1], weight.shape[0], g.ho * g.wo
        bvec = _vector(bias, o, dt, 0.0)
        if bvec is None or g.ho <= 0 or g.wo <= 0:
            return NotImplemented
        ck = _ck()
        cols = np.empty((c * g.kh * g.kw, n * p), dt)
        dims = (n, c, x.shape[2], x.shape[3], g.ho, g.wo)
        ck.im2col.serial(_flat(x), dims, *g[:6], cols.reshape(-1))
        z = np.matmul(weight.reshape(o, -1), cols)
        y = np.empty((n, o, g.ho, g.wo), dt)
        ck.onp_to_nop.serial(z.reshape(o, n, p), bvec, y.reshape(n, o, p))
        return y

    def conv2d_backward(
        self,
        grad: Any,
        x: Any,
        weight: Any,
        *,
        stride: int | tuple[int, int] = (1, 1),
        padding: int | tuple[int, int] = (0, 0),
        need_input_grad: bool = True,
    ) -> tuple[Any, Any, Any]:
        """Gradients of ``conv2d``: ``(dx or None, dweight, dbias)``, recomputing the columns of ``x``."""
        dt = _ok4(grad, x, weight)
        if dt is None or x.shape[1] != weight.shape[1]:
            return NotImplemented
        g = geometry2d(x.shape, weight.shape[2:], stride, padding)
        n, c, o, p = x.shape[0], x.shape[1], weight.shape[0], g.ho * g.wo
        if min(n, c, o, g.ho, g.wo) <= 0 or grad.shape != (n, o, g.ho, g.wo):
            return NotImplemented
        ck = _ck()
        gz = np.empty((o, n * p), dt)
        ck.nop_to_onp.serial(np.ascontiguousarray(grad).reshape(n, o, p), gz.reshape(o, n, p))
        cols = np.empty((c * g.kh * g.kw, n * p), dt)
        dims = (n, c, x.shape[2], x.shape[3], g.ho, g.wo)
        ck.im2col.serial(_flat(x), dims, *g[:6], cols.reshape(-1))
        w2 = weight.reshape(o, -1)
        dweight = np.matmul(gz, cols.T).reshape(weight.shape)
        dbias = gz.sum(axis=1)
        if not need_input_grad:
            return None, dweight, dbias
        dcols = np.matmul(w2.T, gz, out=cols)
        dx = np.empty(x.shape, dt)
        ck.col2im.serial(dcols.reshape(-1), dims, *g[:6], dx.reshape(-1))
        return dx, dweight, dbias

    def maxpool2d(
        self,
        x: Any,
        *,
        kernel_size: int | tuple[int, int] = (2, 2),
        stride: int | tuple[int, int] = (2, 2),
        padding: int | tuple[int, int] = (0, 0),
    ) -> tuple[Any, Any]:
        """Max over windows (padding counts as -inf); ``(y, argmax)``, argmax = i * kw + j of the first max."""
        dt = _ok4(x)
        g = geometry2d(x.shape, kernel_size, stride, padding) if dt is not None else None
        if g is None or g.ho <= 0 or g.wo <= 0:
            return NotImplemented
        shape = (x.shape[0], x.shape[1], g.ho, g.wo)
        y = np.empty(shape, dt)
        argmax = np.empty(shape, np.int8 if g.kh * g.kw <= 128 else np.int32)
        _ck().maxpool.serial(_flat(x), (*x.shape, g.ho, g.wo), *g[:6], y.reshape(-1), argmax.reshape(-1))
        return y, argmax

    def avgpool2d(
        self,
        x: Any,
        *,
        kernel_size: int | tuple[int, int] = (2, 2),
        stride: int | tuple[int, int] = (2, 2),
        padding: int | tuple[int, int] = (0, 0),
    ) -> Any:
        """Mean over windows, zero padding included in the count (PyTorch's ``count_include_pad=True``)."""
        dt = _ok4(x)
        g = geometry2d(x.shape, kernel_size, stride, padding) if dt is not None else None
        if g is None or g.ho <= 0 or g.wo <= 0:
            return NotImplemented
        y = np.empty((x.shape[0], x.shape[1], g.ho, g.wo), dt)
        _ck().avgpool.serial(_flat(x), (*x.shape, g.ho, g.wo), *g[:6], y.reshape(-1))
        return y

    def avgpool2d_backward(
        self,
        grad: Any,
        x_shape: tuple[int, ...],
        *,
        kernel_size: int | tuple[int, int] = (2, 2),
        stride: int | tuple[int, int] = (2, 2),
        padding: int | tuple[int, int] = (0, 0),
    ) -> Any:
        """Gradient of ``avgpool2d``: ``grad / (kh * kw)`` spread over each window, summed where windows overlap."""
        dt, shape = _ok4(grad), _shape4(x_shape)
        if dt is None or shape is None:
            return NotImplemented
        g = geometry2d(shape, kernel_size, stride, padding)
        if grad.shape != (shape[0], shape[1], g.ho, g.wo):
            return NotImplemented
        dx = np.empty(shape, dt)
        _ck().avgpool_backward.serial(_flat(grad), (*shape, g.ho, g.wo), *g[:6], dx.reshape(-1))
        return dx
