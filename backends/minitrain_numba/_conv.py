"""``ConvMixin``: Numba overrides of ``conv2d``, ``conv2d_backward``, ``maxpool2d``, ``avgpool2d`` and
``avgpool2d_backward`` (their kernels are in ``_conv_kernels``).

Convolution: ``im2col`` fills the column matrix straight from ``x`` (zeros where windows cover padding, no padded
copy) on the exact output grid, ``wo`` columns per output row where the reference computes ``wg`` (7-14 % less
GEMM work at the small CNN's shapes); one GEMM gives (o, n * ho * wo) and ``onp_to_nop`` writes it as NCHW,
adding the bias in the same pass. The backward writes the output gradient as (o, n * ho * wo) in one pass,
recomputes the columns, gets dweight from one GEMM and dbias as a row sum, and, when the input gradient is
needed, the column gradients from a GEMM into the columns' buffer, which ``col2im`` sums into dx directly. GEMMs
are ``np.matmul`` calls between the kernels (a few per layer: the call overhead that ``_blas`` saves the MLP
step is small here). Per-sample batched
GEMMs that write NCHW directly measured slower than one GEMM plus the transpose (conv2: 4.7 against 3.5 ms).
Pooling: one pass per plane; max pooling keeps the value and the first argmax together (a NaN sticks, as in the
reference), and padding is skipped, since -inf never changes a running max and 0 never changes a sum.

Not overridden: ``maxpool2d_backward`` (a zeroed dx and one scatter per output measured 0.88-1.18x the reference,
not reliably faster) and anything other than 4-D float32/float64 NumPy arrays of one dtype with a non-empty
batch and channels, which goes to the reference (``super()``); non-contiguous inputs are copied first.

Threading: the kernels run their serial variant: in training they run between OpenBLAS GEMMs that own the
cores. A/B in one process (2 cores, small CNN, samples/s): serial 1619-1782, the default policy of the time
(parallel above 1M elements: conv2's im2col and col2im, the first pooling) 1489-1721, numpy 1293-1351.

Measured on the 2-core machine (noisy: ranges over runs), float32, the small CNN's shapes, min-median of 7
interleaved rounds, numpy reference -> numba, per call:

* conv2d x (64, 1, 28, 28) w (32, 1, 3, 3) pad 1: forward 1.5-2.1 -> 1.1-1.8 ms (1.0-1.5x; 3x when the
  reference's run was slow), weight-only backward 2.1-2.6 -> 1.9-2.2 ms (1.2x);
* conv2d x (64, 32, 14, 14) w (64, 32, 3, 3) pad 1: forward 5.7-9.6 -> 4.9-8.5 ms (1.1-1.2x), backward
  13.7-20.6 -> 10.6-17.7 ms (1.2x); the three GEMMs are about 10 of those ms;
* maxpool2d 2x2 on (64, 32, 28, 28) 2.6-4.6 -> 1.0-1.8 ms (2.3-2.7x); on (64, 64, 14, 14) 1.5-2.7 -> 0.7-1.3 ms
  (1.9-2.2x);
* avgpool2d 2x2 forward 2.4-3.1x, backward 1.1-1.4x at the same shapes;
* CNN training epoch (``asv_benchmarks`` workload ``cnn``, batch 64, Adam), samples/s, numpy vs numba,
  interleaved: 1014-1367 vs 1245-1628 (1.03-1.34x per round, most rounds 1.2-1.3x).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

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
    """Numba overrides of conv2d/maxpool2d/avgpool2d and their backwards; the reference (``super()``) otherwise."""

    _conv_grid: Any
    _pool_grid: Any

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
            return super().conv2d(x, weight, bias, stride=stride, padding=padding)  # type: ignore[misc]
        kh, kw, sh, sw, ph, pw, _, ho, wo, _, _ = self._conv_grid(x.shape, weight.shape[2:], stride, padding)
        n, c, o, p = x.shape[0], x.shape[1], weight.shape[0], ho * wo
        bvec = _vector(bias, o, dt, 0.0)
        if bvec is None or ho <= 0 or wo <= 0:
            return super().conv2d(x, weight, bias, stride=stride, padding=padding)  # type: ignore[misc]
        ck = _ck()
        cols = np.empty((c * kh * kw, n * p), dt)
        dims = (n, c, x.shape[2], x.shape[3], ho, wo)
        ck.im2col.serial(_flat(x), dims, kh, kw, sh, sw, ph, pw, cols.reshape(-1))
        z = np.matmul(weight.reshape(o, -1), cols)
        y = np.empty((n, o, ho, wo), dt)
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
        grid = self._conv_grid(x.shape, weight.shape[2:], stride, padding) if dt is not None else None
        ok = grid is not None and x.shape[1] == weight.shape[1] and min(*x.shape[:2], weight.shape[0], *grid[7:9]) > 0
        if not ok or grad.shape != (x.shape[0], weight.shape[0], grid[7], grid[8]):  # type: ignore[index]
            return super().conv2d_backward(  # type: ignore[misc]
                grad, x, weight, stride=stride, padding=padding, need_input_grad=need_input_grad
            )
        kh, kw, sh, sw, ph, pw, _, ho, wo, _, _ = grid  # type: ignore[misc]
        n, c, o, p = x.shape[0], x.shape[1], weight.shape[0], ho * wo
        ck = _ck()
        g = np.empty((o, n * p), dt)
        ck.nop_to_onp.serial(np.ascontiguousarray(grad).reshape(n, o, p), g.reshape(o, n, p))
        cols = np.empty((c * kh * kw, n * p), dt)
        dims = (n, c, x.shape[2], x.shape[3], ho, wo)
        ck.im2col.serial(_flat(x), dims, kh, kw, sh, sw, ph, pw, cols.reshape(-1))
        w2 = weight.reshape(o, -1)
        dweight = np.matmul(g, cols.T).reshape(weight.shape)
        dbias = g.sum(axis=1)
        if not need_input_grad:
            return None, dweight, dbias
        dcols = np.matmul(w2.T, g, out=cols)
        dx = np.empty(x.shape, dt)
        ck.col2im.serial(dcols.reshape(-1), dims, kh, kw, sh, sw, ph, pw, dx.reshape(-1))
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
        grid = self._pool_grid(x.shape, kernel_size, stride, padding) if dt is not None else None
        if grid is None or grid[6] <= 0 or grid[7] <= 0:
            return super().maxpool2d(x, kernel_size=kernel_size, stride=stride, padding=padding)  # type: ignore[misc]
        kh, kw, sh, sw, ph, pw, ho, wo = grid
        shape = (x.shape[0], x.shape[1], ho, wo)
        y = np.empty(shape, dt)
        argmax = np.empty(shape, np.int8 if kh * kw <= 128 else np.int32)
        dims = (*x.shape, ho, wo)
        _ck().maxpool.serial(_flat(x), dims, kh, kw, sh, sw, ph, pw, y.reshape(-1), argmax.reshape(-1))
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
        grid = self._pool_grid(x.shape, kernel_size, stride, padding) if dt is not None else None
        if grid is None or grid[6] <= 0 or grid[7] <= 0:
            return super().avgpool2d(x, kernel_size=kernel_size, stride=stride, padding=padding)  # type: ignore[misc]
        kh, kw, sh, sw, ph, pw, ho, wo = grid
        y = np.empty((x.shape[0], x.shape[1], ho, wo), dt)
        _ck().avgpool.serial(_flat(x), (*x.shape, ho, wo), kh, kw, sh, sw, ph, pw, y.reshape(-1))
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
        grid = self._pool_grid(shape, kernel_size, stride, padding) if dt is not None and shape is not None else None
        if grid is None or grad.shape != (shape[0], shape[1], grid[6], grid[7]):  # type: ignore[index]
            return super().avgpool2d_backward(  # type: ignore[misc]
                grad, x_shape, kernel_size=kernel_size, stride=stride, padding=padding
            )
        kh, kw, sh, sw, ph, pw, _, _ = grid
        dx = np.empty(shape, dt)  # type: ignore[arg-type]
        dims = (*shape, grad.shape[2], grad.shape[3])  # type: ignore[misc]
        _ck().avgpool_backward.serial(_flat(grad), dims, kh, kw, sh, sw, ph, pw, dx.reshape(-1))
        return dx
