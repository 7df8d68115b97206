"""Numba kernels of the convolution and pooling overrides in ``_conv`` (see there for what each replaces).

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


# ---------------------------------------------------------------------------------------- convolution
@kernel
def im2col(x: np.ndarray, dims: tuple, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, cols: np.ndarray) -> None:
    """Fill ``cols`` (c * kh * kw rows of n * ho * wo) with the windows of ``x`` (n, c, h, w), zeros in the padding."""
    n, c, h, w, ho, wo = dims
    zero, usw = cols.dtype.type(0), _U(sw)
    for r in prange(c * kh * kw):
        ci, i, j = r // (kh * kw), (r // kw) % kh, r % kw
        x0, x1 = _span(j, sw, pw, w, wo)
        for b in range(n):
            for yo in range(ho):
                yy = yo * sh + i - ph
                dst = _U(((r * n + b) * ho + yo) * wo)
                if yy < 0 or yy >= h:
                    for t in range(_U(wo)):
                        cols[dst + t] = zero
                    continue
                for t in range(_U(x0)):
                    cols[dst + t] = zero
                d0, s0 = dst + _U(x0), _U(((b * c + ci) * h + yy) * w + x0 * sw + j - pw)
                if sw == 1:
                    for t in range(_U(x1 - x0)):
                        cols[d0 + t] = x[s0 + t]
                else:
                    for t in range(_U(x1 - x0)):
                        cols[d0 + t] = x[s0 + t * usw]
                for t in range(_U(x1), _U(wo)):
                    cols[dst + t] = zero


@kernel
def col2im(
    dcols: np.ndarray, dims: tuple, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dx: np.ndarray
) -> None:
    """Sum the column gradients ``dcols`` (c * kh * kw rows of n * ho * wo) into ``dx`` (n, c, h, w), minus padding."""
    n, c, h, w, ho, wo = dims
    zero, usw = dx.dtype.type(0), _U(sw)
    for bc in prange(n * c):
        b, ci = bc // c, bc % c
        base = _U(bc * h * w)
        for t in range(_U(h * w)):
            dx[base + t] = zero
        for i in range(kh):
            for j in range(kw):
                r = (ci * kh + i) * kw + j
                x0, x1 = _span(j, sw, pw, w, wo)
                for yo in range(ho):
                    yy = yo * sh + i - ph
                    if yy < 0 or yy >= h:
                        continue
                    s0 = _U(((r * n + b) * ho + yo) * wo + x0)
                    d0 = base + _U(yy * w + x0 * sw + j - pw)
                    if sw == 1:
                        for t in range(_U(x1 - x0)):
                            dx[d0 + t] += dcols[s0 + t]
                    else:
                        for t in range(_U(x1 - x0)):
                            dx[d0 + t * usw] += dcols[s0 + t]


@kernel
def onp_to_nop(z: np.ndarray, bias: np.ndarray, y: np.ndarray) -> None:
    """``y[b, o, p] = z[o, b, p] + bias[o]``: the GEMM's (o, n, ho * wo) result as (n, o, ho * wo), plus the bias."""
    o, n, p = z.shape
    for b in prange(n):
        for oc in range(o):
            bv = bias[oc]
            for k in range(p):
                y[b, oc, k] = z[oc, b, k] + bv


@kernel
def nop_to_onp(g: np.ndarray, out: np.ndarray) -> None:
    """``out[o, b, p] = g[b, o, p]``: the output gradient (n, o, ho * wo) as the GEMMs' (o, n, ho * wo)."""
    n, o, p = g.shape
    for oc in prange(o):
        for b in range(n):
            for k in range(p):
                out[oc, b, k] = g[b, oc, k]


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
