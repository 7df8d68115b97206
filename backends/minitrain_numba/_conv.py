"""``ConvMixin``: Numba overrides of ``conv2d``, ``conv2d_backward``, ``conv2d_act_pool``,
``conv2d_act_pool_backward``, ``maxpool2d``, ``avgpool2d`` and ``avgpool2d_backward``.

Convolution (kernels in ``_conv_gemm`` and ``_conv_epilogue``): one compiled call per op walks the batch in
chunks of about ``CHUNK_ROWS`` output pixels (GEMMs that tall run near peak; one-image chunks did not).
Per chunk: im2col straight from ``x`` (no padded copy; a "same" convolution copies each column row as one shifted
run of the plane), one GEMM on NumPy's own OpenBLAS (``_blas``), then one pass that adds the bias, applies the
activation and, for ``conv2d_act_pool``, max-pools and writes NCHW. ``conv2d`` is the block with the identity
and no pooling. The backward builds the GEMMs' output gradient from the (pooled) gradient in one pass, with the
bias gradient, recomputes the chunk's columns, accumulates dweight, and, when the input gradient is needed,
writes the column gradient into the same column buffer and sums it into dx. With pooling the GEMM output is
channels-last, so that the pooling and its gradient are vectorized over the channels. Where NumPy's BLAS cannot
be called from compiled code, the same per-chunk passes run from Python around ``np.matmul``.

Pooling: one pass per plane; max pooling keeps the value and the first argmax together (a NaN sticks, as in the
reference), and padding is skipped, since -inf never changes a running max and 0 never changes a sum.

Not overridden: ``maxpool2d_backward`` (a zeroed dx and one scatter per output was not reliably faster than the
reference). Anything other than 4-D float32/float64 NumPy arrays of one dtype with a non-empty batch and
channels returns ``NotImplemented`` (the reference runs), as do activations whose backward needs the
pre-activation (gelu); non-contiguous inputs are copied first.

Threading: the compiled passes run on the calling thread between OpenBLAS's threaded GEMMs, and release the GIL.
Splitting the batch over threads, one BLAS thread each, measured slower on an idle 2-core machine (faster on a
loaded one); the parallel variant of the pooling kernels measured slower between the GEMMs too (figures in
docs/performance.md).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from minitrain.backend import geometry2d
from minitrain.backend.base import NEEDS_PREACTIVATION, canonical_activation, pair

from ._util import _dtype, _load, _vector

#: GEMM rows (output pixels) of one chunk: the batch is walked in chunks of about this many pixels, enough for
#: efficient GEMMs (one image of 14 x 14 gave 196-row GEMMs at half the speed); ``CHUNK_BYTES`` caps them.
CHUNK_ROWS = 3072
CHUNK_BYTES = 1 << 23
_NO_ARGMAX = np.empty(0, np.int8)


def _ck() -> ModuleType:
    """The convolution kernels (imported, with numba, on first use)."""
    return _load("_conv_kernels")


def _cg() -> ModuleType:
    """The chunked im2col + GEMM kernels (imported, with numba, on first use)."""
    return _load("_conv_gemm")


def _CODES() -> dict[str, int]:
    """Activation name -> code of the compiled kernels."""
    return _load("_kernels").CODES


def _chunk(n: int, k: int, o: int, p: int, dt: np.dtype) -> int:
    """Images per chunk of n images of p pixels: about CHUNK_ROWS pixels, with the columns (k rows) and GEMM output
    (o rows) within CHUNK_BYTES, in chunks of equal size."""
    most = max(1, min(n, -(-CHUNK_ROWS // p), CHUNK_BYTES // max(1, (k + o) * p * dt.itemsize)))
    return -(-n // -(-n // most))


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
    """Numba overrides of the convolution and pooling kernels (``NotImplemented``: the reference runs)."""

    def _conv_geometry(self, x: Any, weight: Any, bias: Any, stride: Any, padding: Any, pool: Any) -> Any:
        """``(dtype, geometry, pool)`` of arguments the compiled convolution takes, else None."""
        dt = _ok4(x, weight)
        same = bias is None or (type(bias) is np.ndarray and bias.dtype == dt)
        if dt is None or not same or x.shape[1] != weight.shape[1] or min(*x.shape[:2], weight.shape[0]) == 0:
            return None
        g = geometry2d(x.shape, weight.shape[2:], stride, padding)
        pool = pair(pool)
        if g.ho < pool[0] or g.wo < pool[1] or min(pool) < 1:
            return None
        return dt, g, pool

    def _conv_forward(self, x: Any, weight: Any, bias: Any, stride: Any, padding: Any, name: str, alpha: float,
                      pool: Any) -> Any:  # fmt: skip
        """``(y, argmax or None)`` of conv -> activation ``name`` -> max pooling, else NotImplemented."""
        ok = self._conv_geometry(x, weight, bias, stride, padding, pool)
        bvec = None if ok is None else _vector(bias, weight.shape[0], ok[0], 0.0)
        if bvec is None:
            return NotImplemented
        dt, g, pool = ok
        n, o, k, p, geo = x.shape[0], weight.shape[0], weight[0].size, g.ho * g.wo, tuple(g)
        pooled = pool != (1, 1)
        y = np.empty((n, o, g.ho // pool[0], g.wo // pool[1]), dt)
        am = np.empty(y.shape if pooled else 0, np.int8 if pool[0] * pool[1] <= 128 else np.int32)
        x, w2 = np.ascontiguousarray(x), np.ascontiguousarray(weight).reshape(o, k)
        forward, _, epilogue, _ = _cg().kernels(_CODES()[name], pooled)
        chunk = _chunk(n, k, o, p, dt)
        cols, z = np.empty((k, chunk * p), dt), np.empty((chunk * p, o) if pooled else (o, chunk * p), dt)
        ty, ta = np.empty(y[0].size if pooled else 0, dt), np.empty(y[0].size if pooled else 0, am.dtype)
        if _cg().AVAILABLE:
            forward(x, w2, bvec, geo, pool, float(alpha), y, am, cols, z, ty, ta, chunk)
        else:  # the same passes, the GEMMs through np.matmul
            for b0 in range(0, n, chunk):
                nb = min(chunk, n - b0)
                _cg().im2col_chunk(x, b0, nb, geo, cols)
                if pooled:
                    np.matmul(cols[:, : nb * p].T, w2.T, out=z[: nb * p])
                else:
                    np.matmul(w2, cols[:, : nb * p], out=z[:, : nb * p])
                epilogue(z, bvec, b0, nb, geo, pool, float(alpha), y, am, ty, ta)
        return y, (am if pooled else None)

    def _conv_backward(self, grad: Any, x: Any, weight: Any, y: Any, argmax: Any, stride: Any, padding: Any,
                       name: str, alpha: float, pool: Any, need: bool) -> Any:  # fmt: skip
        """``(dx or None, dweight, dbias)`` of ``_conv_forward``, else NotImplemented."""
        ok = self._conv_geometry(x, weight, None, stride, padding, pool)
        if ok is None or _ok4(grad, x, weight, y) is None:
            return NotImplemented
        dt, g, pool = ok
        n, o, k, p, geo = x.shape[0], weight.shape[0], weight[0].size, g.ho * g.wo, tuple(g)
        pooled = pool != (1, 1)
        shape = (n, o, g.ho // pool[0], g.wo // pool[1])
        if grad.shape != shape or y.shape != shape:
            return NotImplemented
        if pooled and not (type(argmax) is np.ndarray and argmax.shape == shape and argmax.dtype.kind == "i"):
            return NotImplemented
        dx = np.empty(x.shape if need else 0, dt)
        grad, x, y = (np.ascontiguousarray(a) for a in (grad, x, y))
        am = np.ascontiguousarray(argmax) if pooled else _NO_ARGMAX
        w2 = np.ascontiguousarray(weight).reshape(o, k)
        _, backward, _, prologue = _cg().kernels(_CODES()[name], pooled)
        chunk = _chunk(n, k, o, p, dt)
        cols, gz = np.empty((k, chunk * p), dt), np.empty((chunk * p, o) if pooled else (o, chunk * p), dt)
        tv, ta = np.empty(y[0].size if pooled else 0, dt), np.empty(y[0].size if pooled else 0, am.dtype)
        dw2, acc = np.zeros((o, k), dt), np.zeros(o)
        if _cg().AVAILABLE:
            backward(grad, x, w2, y, am, geo, pool, float(alpha), need, dw2, acc, dx, cols, gz, tv, ta, chunk)
        else:  # the same passes, the GEMMs through np.matmul
            for b0 in range(0, n, chunk):
                nb = min(chunk, n - b0)
                prologue(grad, y, am, b0, nb, geo, pool, float(alpha), gz, acc, tv, ta)
                _cg().im2col_chunk(x, b0, nb, geo, cols)
                gzc = gz[: nb * p].T if pooled else gz[:, : nb * p]
                dw2 += gzc @ cols[:, : nb * p].T
                if need:
                    np.matmul(w2.T, gzc, out=cols[:, : nb * p])
                    _cg().col2im_chunk(cols, b0, nb, geo, dx)
        return (dx if need else None), dw2.reshape(weight.shape), acc.astype(dt)

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
        out = self._conv_forward(x, weight, bias, stride, padding, "identity", 0.0, (1, 1))
        return out if out is NotImplemented else out[0]

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
        return self._conv_backward(grad, x, weight, grad, None, stride, padding, "identity", 0.0, (1, 1),
                                   bool(need_input_grad))  # fmt: skip

    def conv2d_act_pool(
        self,
        x: Any,
        weight: Any,
        bias: Any,
        *,
        stride: int | tuple[int, int] = (1, 1),
        padding: int | tuple[int, int] = (0, 0),
        activation: str = "relu",
        alpha: float = 0.01,
        pool: int | tuple[int, int] = (2, 2),
    ) -> tuple[Any, Any]:
        """``maxpool2d(act(conv2d(x, weight, bias)))`` over disjoint ``pool`` windows: ``(y, argmax)``."""
        name = canonical_activation(activation)
        if name in NEEDS_PREACTIVATION:
            return NotImplemented
        return self._conv_forward(x, weight, bias, stride, padding, name, alpha, pool)

    def conv2d_act_pool_backward(
        self,
        grad: Any,
        x: Any,
        weight: Any,
        y: Any,
        argmax: Any,
        *,
        stride: int | tuple[int, int] = (1, 1),
        padding: int | tuple[int, int] = (0, 0),
        activation: str = "relu",
        alpha: float = 0.01,
        pool: int | tuple[int, int] = (2, 2),
        need_input_grad: bool = True,
    ) -> tuple[Any, Any, Any]:
        """Gradients of ``conv2d_act_pool`` from its output ``y`` and ``argmax``: ``(dx or None, dweight, dbias)``."""
        name = canonical_activation(activation)
        if name in NEEDS_PREACTIVATION:
            return NotImplemented
        return self._conv_backward(grad, x, weight, y, argmax, stride, padding, name, alpha, pool,
                                   bool(need_input_grad))  # fmt: skip

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
