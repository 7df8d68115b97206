"""Convolution and pooling kernels of the CuPy backend.

Convolution is im2col + one cuBLAS GEMM + a kernel that reorders the (out channels, batch, pixels) product to
NCHW and adds the bias; its backward reorders the gradient once, runs two GEMMs (weights, columns) and scatters
the column gradients back with col2im (a thread per input pixel, so no atomics). Pooling runs a thread per output
(forward) or per input pixel (backward); max pooling keeps an int8 argmax, as the reference does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minitrain.backend import Geometry2d, geometry2d

from ._common import cp, ok


def _grid(shape: tuple[int, ...], g: Geometry2d) -> tuple[int, ...]:
    """The twelve integers the convolution and pooling kernels take: n, c, h, w, ho, wo, kh, kw, sh, sw, ph, pw."""
    n, c, h, w = shape
    return (n, c, h, w, g.ho, g.wo, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw)


class SpatialMixin:
    """CuPy overrides of ``conv2d``, ``maxpool2d``, ``avgpool2d`` and their backward kernels."""

    _launch: Any
    _zeros: Any

    def _columns(self, x: Any, g: Geometry2d) -> Any:
        """im2col: (c * kh * kw, n * ho * wo) columns of ``x``, zeros where a window covers padding."""
        n, c = x.shape[:2]
        cols = cp().empty((c * g.kh * g.kw, n * g.ho * g.wo), dtype=x.dtype)
        self._launch("im2col", x.dtype, cols.size, x, cols, *_grid(x.shape, g))
        return cols

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
        xpm = cp()
        dt = ok(x, bias)
        if dt is None or x.ndim != 4 or not isinstance(weight, xpm.ndarray) or weight.dtype != dt or weight.ndim != 4:
            return NotImplemented
        o = weight.shape[0]
        if weight.shape[1] != x.shape[1] or (bias is not None and bias.shape != (o,)):
            return NotImplemented
        g = geometry2d(x.shape, weight.shape[2:], stride, padding)
        n = x.shape[0]
        if g.ho <= 0 or g.wo <= 0 or x.size == 0 or weight.size == 0:
            return NotImplemented
        z = xpm.matmul(weight.reshape(o, -1), self._columns(x, g))
        y = xpm.empty((n, o, g.ho, g.wo), dtype=dt)
        self._launch("onp_to_nop", dt, y.size, z, self._zeros(o, dt) if bias is None else bias, y, o, n, g.ho * g.wo)
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
        xpm = cp()
        dt = ok(grad, x)
        if dt is None or x.ndim != 4 or not isinstance(weight, xpm.ndarray) or weight.dtype != dt or weight.ndim != 4:
            return NotImplemented
        n, o = x.shape[0], weight.shape[0]
        g = geometry2d(x.shape, weight.shape[2:], stride, padding)
        if grad.shape != (n, o, g.ho, g.wo) or x.size == 0 or weight.size == 0 or grad.size == 0:
            return NotImplemented
        p = g.ho * g.wo
        gz = xpm.empty((o, n * p), dtype=dt)
        self._launch("nop_to_onp", dt, gz.size, grad, gz, n, o, p)
        cols = self._columns(x, g)
        dweight = xpm.matmul(gz, cols.T).reshape(weight.shape)
        dbias = gz.sum(axis=1, dtype=np.float64).astype(dt)
        if not need_input_grad:
            return None, dweight, dbias
        dcols = xpm.matmul(weight.reshape(o, -1).T, gz, out=cols)
        dx = xpm.empty(x.shape, dtype=dt)
        self._launch("col2im", dt, dx.size, dcols, dx, *_grid(x.shape, g))
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
        dt = ok(x)
        g = geometry2d(x.shape, kernel_size, stride, padding) if dt is not None and x.ndim == 4 else None
        if g is None or g.kh * g.kw > 128 or g.ho <= 0 or g.wo <= 0:
            return NotImplemented
        shape = (x.shape[0], x.shape[1], g.ho, g.wo)
        y, argmax = cp().empty(shape, dtype=dt), cp().empty(shape, dtype=np.int8)
        self._launch("maxpool", dt, y.size, x, y, argmax, *_grid(x.shape, g))
        return y, argmax

    def maxpool2d_backward(
        self,
        grad: Any,
        argmax: Any,
        x_shape: tuple[int, ...],
        *,
        kernel_size: int | tuple[int, int] = (2, 2),
        stride: int | tuple[int, int] = (2, 2),
        padding: int | tuple[int, int] = (0, 0),
    ) -> Any:
        """Gradient of ``maxpool2d``: ``grad`` routed to each window's argmax, summed where windows overlap."""
        dt = ok(grad)
        if dt is None or len(x_shape) != 4 or not isinstance(argmax, cp().ndarray) or argmax.dtype != np.int8:
            return NotImplemented
        g = geometry2d(x_shape, kernel_size, stride, padding)
        want = (x_shape[0], x_shape[1], g.ho, g.wo)
        if grad.shape != want or argmax.shape != want or not argmax.flags.c_contiguous:
            return NotImplemented
        dx = cp().empty(tuple(x_shape), dtype=dt)
        self._launch("maxpool_backward", dt, dx.size, grad, argmax, dx, *_grid(tuple(x_shape), g))
        return dx

    def avgpool2d(
        self,
        x: Any,
        *,
        kernel_size: int | tuple[int, int] = (2, 2),
        stride: int | tuple[int, int] = (2, 2),
        padding: int | tuple[int, int] = (0, 0),
    ) -> Any:
        """Mean over windows, zero padding included in the count (PyTorch's ``count_include_pad=True``)."""
        dt = ok(x)
        g = geometry2d(x.shape, kernel_size, stride, padding) if dt is not None and x.ndim == 4 else None
        if g is None or g.ho <= 0 or g.wo <= 0:
            return NotImplemented
        y = cp().empty((x.shape[0], x.shape[1], g.ho, g.wo), dtype=dt)
        self._launch("avgpool", dt, y.size, x, y, *_grid(x.shape, g))
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
        dt = ok(grad)
        if dt is None or len(x_shape) != 4:
            return NotImplemented
        g = geometry2d(x_shape, kernel_size, stride, padding)
        if grad.shape != (x_shape[0], x_shape[1], g.ho, g.wo):
            return NotImplemented
        dx = cp().empty(tuple(x_shape), dtype=dt)
        self._launch("avgpool_backward", dt, dx.size, grad, dx, *_grid(tuple(x_shape), g))
        return dx
