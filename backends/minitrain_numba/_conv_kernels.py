"""Numba kernels of the pooling overrides in ``_conv`` (the convolution's are in ``_conv_gemm`` and
``_conv_epilogue``), and the helpers both use.

Every kernel loops over flat views of C-contiguous NCHW arrays of one float dtype (``n, c, h, w`` and the
output size passed as ints) and writes into arrays the caller allocated. Output pixel ``(yo, xo)`` reads input
pixel ``(yo * sh + i - ph, xo * sw + j - pw)`` at window offset ``(i, j)``; a read outside the input is padding.
Rows are walked with the span of in-range output columns computed once (``_span``), so inner loops carry no
bounds tests. Indices into the flat arrays are unsigned (``_U``): Numba wraps negative signed indices, and
that test on every access kept LLVM from vectorizing the im2col copy's short rows (see docs/performance.md).
Pooling windows inside the input take an unrolled path, the kernel size a compile-time constant for 2x2 and
3x3 (``_max_plane`` etc. are inlined per size); windows that touch padding take a checked path.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._jit import kernel

_U = np.uint64


@njit(inline="always")
def _span(j: int, sw: int, pw: int, w: int, wo: int) -> tuple[int, int]:
    """The output columns ``[x0, x1)`` whose offset-``j`` read ``xo * sw + j - pw`` lies inside ``[0, w)``."""
    x0 = max(0, -((j - pw) // sw))
    x1 = min(wo, (w - 1 + pw - j) // sw + 1)
    return x0, max(x0, x1)


# ---------------------------------------------------------------------------------------- pooling
@njit(inline="always")
def _upd(v: float, m: float, a: int, k: int) -> tuple[float, int]:
    """One step of the reference's running max: a greater ``v`` wins with its offset ``k``; a NaN sticks."""
    gt = v > m
    m2 = v if gt else m
    return (v if v != v else m2), (k if gt else a)


@njit(inline="always")
def _max_plane(
    x: np.ndarray,
    y: np.ndarray,
    am: np.ndarray,
    bc: int,
    dims: tuple,
    kh: int,
    kw: int,
    sh: int,
    sw: int,
    ph: int,
    pw: int,
) -> None:
    """Max pooling of plane ``bc`` (``kh``, ``kw`` are literals where the caller dispatched on them)."""
    h, w, ho, wo = dims[2], dims[3], dims[4], dims[5]
    ninf = y.dtype.type(-np.inf)
    xb, yb = bc * h * w, bc * ho * wo
    for yo in range(ho):
        y0 = yo * sh - ph
        for xo in range(wo):
            x0 = xo * sw - pw
            m, a = ninf, 0
            if y0 >= 0 and y0 + kh <= h and x0 >= 0 and x0 + kw <= w:
                p = _U(xb + y0 * w + x0)
                for i in range(kh):
                    for j in range(kw):
                        m, a = _upd(x[p + _U(i * w + j)], m, a, i * kw + j)
            else:  # padding reads as -inf: it never changes the running max, so it is skipped
                for i in range(kh):
                    if 0 <= y0 + i < h:
                        for j in range(kw):
                            if 0 <= x0 + j < w:
                                m, a = _upd(x[_U(xb + (y0 + i) * w + x0 + j)], m, a, i * kw + j)
            q = _U(yb + yo * wo + xo)
            y[q] = m
            am[q] = a


@kernel
def maxpool(
    x: np.ndarray, dims: tuple, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, y: np.ndarray, am: np.ndarray
) -> None:
    """Window maxima of ``x`` into ``y`` and the offset ``i * kw + j`` of each first max into ``am``.

    Padding reads as -inf; a NaN makes the max NaN and stops the argmax where it is, as in the reference.
    """
    for bc in prange(dims[0] * dims[1]):
        if kh == 2 and kw == 2:
            _max_plane(x, y, am, bc, dims, 2, 2, sh, sw, ph, pw)
        elif kh == 3 and kw == 3:
            _max_plane(x, y, am, bc, dims, 3, 3, sh, sw, ph, pw)
        else:
            _max_plane(x, y, am, bc, dims, kh, kw, sh, sw, ph, pw)


@njit(inline="always")
def _avg_plane(
    x: np.ndarray, y: np.ndarray, bc: int, dims: tuple, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int
) -> None:
    """Average pooling of plane ``bc``: sums in the reference's offset order (padding adds 0), then / (kh * kw)."""
    h, w, ho, wo = dims[2], dims[3], dims[4], dims[5]
    count, zero = y.dtype.type(kh * kw), y.dtype.type(0)
    xb, yb = bc * h * w, bc * ho * wo
    for yo in range(ho):
        y0 = yo * sh - ph
        for xo in range(wo):
            x0 = xo * sw - pw
            s = zero
            if y0 >= 0 and y0 + kh <= h and x0 >= 0 and x0 + kw <= w:
                p = _U(xb + y0 * w + x0)
                for i in range(kh):
                    for j in range(kw):
                        s += x[p + _U(i * w + j)]
            else:
                for i in range(kh):
                    if 0 <= y0 + i < h:
                        for j in range(kw):
                            if 0 <= x0 + j < w:
                                s += x[_U(xb + (y0 + i) * w + x0 + j)]
            y[_U(yb + yo * wo + xo)] = s / count


@kernel
def avgpool(x: np.ndarray, dims: tuple, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, y: np.ndarray) -> None:
    """Window means of ``x`` into ``y``, padding counted as zeros."""
    for bc in prange(dims[0] * dims[1]):
        if kh == 2 and kw == 2:
            _avg_plane(x, y, bc, dims, 2, 2, sh, sw, ph, pw)
        elif kh == 3 and kw == 3:
            _avg_plane(x, y, bc, dims, 3, 3, sh, sw, ph, pw)
        else:
            _avg_plane(x, y, bc, dims, kh, kw, sh, sw, ph, pw)


@njit(inline="always")
def _avg_back_plane(
    grad: np.ndarray, dx: np.ndarray, bc: int, dims: tuple, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int
) -> None:
    """Average pooling's backward for plane ``bc``: ``grad / (kh * kw)`` added over each window, padding dropped."""
    h, w, ho, wo = dims[2], dims[3], dims[4], dims[5]
    count, zero = dx.dtype.type(kh * kw), dx.dtype.type(0)
    xb, gb = bc * h * w, bc * ho * wo
    for t in range(_U(h * w)):
        dx[_U(xb) + t] = zero
    for yo in range(ho):
        y0 = yo * sh - ph
        for xo in range(wo):
            x0 = xo * sw - pw
            g = grad[_U(gb + yo * wo + xo)] / count
            if y0 >= 0 and y0 + kh <= h and x0 >= 0 and x0 + kw <= w:
                p = _U(xb + y0 * w + x0)
                for i in range(kh):
                    for j in range(kw):
                        dx[p + _U(i * w + j)] += g
            else:
                for i in range(kh):
                    if 0 <= y0 + i < h:
                        for j in range(kw):
                            if 0 <= x0 + j < w:
                                dx[_U(xb + (y0 + i) * w + x0 + j)] += g


@kernel
def avgpool_backward(
    grad: np.ndarray, dims: tuple, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dx: np.ndarray
) -> None:
    """Spread ``grad / (kh * kw)`` over each window into ``dx`` (zeroed here), padding dropped."""
    for bc in prange(dims[0] * dims[1]):
        if kh == 2 and kw == 2:
            _avg_back_plane(grad, dx, bc, dims, 2, 2, sh, sw, ph, pw)
        elif kh == 3 and kw == 3:
            _avg_back_plane(grad, dx, bc, dims, 3, 3, sh, sw, ph, pw)
        else:
            _avg_back_plane(grad, dx, bc, dims, kh, kw, sh, sw, ph, pw)
