"""Numba kernels of the convolution as im2col + GEMM over chunks of the batch, with the bias, the activation and
max pooling fused around the GEMM (imported with numba, on first use; ``_conv`` says when they run).

A call walks the batch in chunks of ``chunk`` images (``_conv._chunk`` sizes them for efficient GEMMs):
per chunk, ``_im2col`` fills the columns (c * kh * kw rows of nb * ho * wo), the GEMM writes
the pre-activation z (o rows of nb * ho * wo) and one pass (``_epilogue``) adds the bias, applies the activation,
max-pools disjoint (qh, qw) windows (first maximum, as the reference's ``maxpool2d``) and writes NCHW. The
backward builds the GEMMs' output gradient from the pooled gradient in one pass (``_prologue``: act' of the
saved output, scattered to each window's argmax, the bias gradient summed in float64), recomputes the chunk's
columns, accumulates dweight, and, when the input gradient is needed, writes the column gradient into the same
column buffer and sums it into dx (``_col2im``). GEMMs run on NumPy's own OpenBLAS (``_blas``); where it cannot
be registered, ``_conv`` drives the same per-chunk passes from Python with ``np.matmul`` between them.

A "same" convolution (stride 1, output as large as the input) copies each column row of an image as one
shifted run of the input plane, then zeroes the entries whose window reads padding (``_shifted``); other
geometries copy one output row at a time. Indices into flat arrays are unsigned (``_U``, see ``_conv_kernels``).
The activation code and whether pooling applies are constants of the compiled code: one kernel per activation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from . import _conv_epilogue as _ep
from ._blas import gemm, register
from ._conv_kernels import _span
from ._jit import FASTMATH, _njit
from ._kernels import _consts

#: Whether NumPy's BLAS could be registered for compiled code (else ``_conv`` drives the chunks from Python).
AVAILABLE = register()
_U = np.uint64


@njit(inline="always")
def _shifted(i: int, j: int, h: int, w: int, ph: int, pw: int) -> tuple[int, int, int, int, int, int, int]:
    """A same convolution's offset (i, j) as a shift of the flat plane: ``(shift, p0, p1, ylo, yhi, x0, x1)``: the
    run ``[p0, p1)`` reads ``p + shift``; rows outside ``[ylo, yhi)`` and columns outside ``[x0, x1)`` read padding."""
    ylo, yhi = max(0, ph - i), min(h, h + ph - i)
    x0, x1 = max(0, pw - j), min(w, w + pw - j)
    p0 = ylo * w + x0
    return (i - ph) * w + (j - pw), p0, max(p0, (yhi - 1) * w + x1), ylo, yhi, x0, x1


@njit(inline="always")
def _im2col(x: np.ndarray, b0: int, nb: int, dims: tuple, geo: tuple, cols: np.ndarray, ld: int) -> None:
    """Columns of images ``b0 .. b0 + nb`` of flat NCHW ``x`` into flat ``cols`` (row r at ``r * ld``)."""
    c, h, w = dims[1], dims[2], dims[3]
    kh, kw, sh, sw, ph, pw, ho, wo = geo
    zero, p = cols.dtype.type(0), ho * wo
    same = sh == 1 and sw == 1 and ho == h and wo == w
    for r in range(c * kh * kw):
        ci, i, j = r // (kh * kw), (r // kw) % kh, r % kw
        if same:
            shift, p0, p1, ylo, yhi, x0, x1 = _shifted(i, j, h, w, ph, pw)
            for bb in range(nb):
                dst, src = _U(r * ld + bb * p), _U(((b0 + bb) * c + ci) * p + p0 + shift)
                for t in range(_U(p1 - p0)):
                    cols[dst + _U(p0) + t] = x[src + t]
                for t in range(_U(p0)):
                    cols[dst + t] = zero
                for t in range(_U(p1), _U(p)):
                    cols[dst + t] = zero
                for yo in range(ylo, yhi):
                    row = dst + _U(yo * w)
                    for t in range(_U(x0)):
                        cols[row + t] = zero
                    for t in range(_U(x1), _U(w)):
                        cols[row + t] = zero
            continue
        x0, x1 = _span(j, sw, pw, w, wo)
        for bb in range(nb):
            for yo in range(ho):
                yy = yo * sh + i - ph
                dst = _U(r * ld + bb * p + yo * wo)
                if yy < 0 or yy >= h:
                    for t in range(_U(wo)):
                        cols[dst + t] = zero
                    continue
                for t in range(_U(x0)):
                    cols[dst + t] = zero
                d0, s0 = dst + _U(x0), _U((((b0 + bb) * c + ci) * h + yy) * w + x0 * sw + j - pw)
                for t in range(_U(x1 - x0)):
                    cols[d0 + t] = x[s0 + t * _U(sw)]
                for t in range(_U(x1), _U(wo)):
                    cols[dst + t] = zero


@njit(inline="always")
def _col2im(cols: np.ndarray, ld: int, b0: int, nb: int, dims: tuple, geo: tuple, dx: np.ndarray) -> None:
    """Sum the column gradients in flat ``cols`` (row r at ``r * ld``) into images ``b0 .. b0 + nb`` of flat ``dx``.

    A same convolution's runs are added as shifts of the plane after the entries that read padding are zeroed
    (``cols`` is scratch)."""
    c, h, w = dims[1], dims[2], dims[3]
    kh, kw, sh, sw, ph, pw, ho, wo = geo
    zero, p, hw = dx.dtype.type(0), ho * wo, h * w
    same = sh == 1 and sw == 1 and ho == h and wo == w
    for bb in range(nb):
        for ci in range(c):
            base = _U(((b0 + bb) * c + ci) * hw)
            for t in range(_U(hw)):
                dx[base + t] = zero
            for i in range(kh):
                for j in range(kw):
                    r = (ci * kh + i) * kw + j
                    src = _U(r * ld + bb * p)
                    if same:
                        shift, p0, p1, ylo, yhi, x0, x1 = _shifted(i, j, h, w, ph, pw)
                        if x0 > 0 or x1 < w:
                            for yo in range(ylo, yhi):
                                row = src + _U(yo * w)
                                for t in range(_U(x0)):
                                    cols[row + t] = zero
                                for t in range(_U(x1), _U(w)):
                                    cols[row + t] = zero
                        d0 = base + _U(p0 + shift)
                        s0 = src + _U(p0)
                        for t in range(_U(p1 - p0)):
                            dx[d0 + t] += cols[s0 + t]
                        continue
                    x0, x1 = _span(j, sw, pw, w, wo)
                    for yo in range(ho):
                        yy = yo * sh + i - ph
                        if yy < 0 or yy >= h:
                            continue
                        s0 = src + _U(yo * wo + x0)
                        d0 = base + _U(yy * w + x0 * sw + j - pw)
                        for t in range(_U(x1 - x0)):
                            dx[d0 + t * _U(sw)] += cols[s0 + t]


_OPTS = {"error_model": "numpy", "fastmath": set(FASTMATH), "nogil": True}


def _im2col_chunk(x: np.ndarray, b0: int, nb: int, geo: tuple, cols: np.ndarray) -> None:
    """``_im2col`` of 4-D ``x`` into 2-D ``cols`` (the Python driver's piece)."""
    _im2col(x.reshape(-1), b0, nb, x.shape, geo, cols.reshape(-1), cols.shape[1])


def _col2im_chunk(cols: np.ndarray, b0: int, nb: int, geo: tuple, dx: np.ndarray) -> None:
    """``_col2im`` of 2-D ``cols`` into 4-D ``dx`` (the Python driver's piece)."""
    _col2im(cols.reshape(-1), cols.shape[1], b0, nb, dx.shape, geo, dx.reshape(-1))


im2col_chunk, col2im_chunk = _njit(_im2col_chunk, **_OPTS), _njit(_col2im_chunk, **_OPTS)


def _make(code: int, pooled: bool) -> tuple[Any, Any, Any, Any]:
    """The compiled passes of activation ``code``, with pooling (channels-last z) or without (channels-first): the
    (forward, backward) drivers and the (epilogue, prologue) pieces of the Python driver. Both arguments are
    constants of the compiled code, so that each kernel compiles only the passes it runs."""

    def epilogue(z, bias, b0, nb, geo, pool, alpha, y, am, ty, ta):
        """The epilogue of one chunk."""
        k, o, ho, wo = _consts(y, alpha), y.shape[1], geo[6], geo[7]
        if pooled:
            _ep.epilogue_pooled(z.reshape(-1), bias, b0, nb, o, ho, wo, pool, code, k, y.reshape(-1), am.reshape(-1),
                                ty, ta)  # fmt: skip
        else:
            _ep.epilogue(z.reshape(-1), z.shape[1], bias, b0, nb, o, ho * wo, code, k, y.reshape(-1))

    def prologue(grad, y, am, b0, nb, geo, pool, alpha, gz, acc, tv, ta):
        """The prologue of one chunk."""
        k, o, ho, wo = _consts(gz, alpha), grad.shape[1], geo[6], geo[7]
        if pooled:
            _ep.prologue_pooled(grad.reshape(-1), y.reshape(-1), am.reshape(-1), b0, nb, o, ho, wo, pool, code, k,
                                gz.reshape(-1), acc, tv, ta)  # fmt: skip
        else:
            _ep.prologue(grad.reshape(-1), y.reshape(-1), b0, nb, o, ho * wo, code, k, gz.reshape(-1), gz.shape[1], acc)

    def forward(x, w2, bias, geo, pool, alpha, y, am, cols, z, ty, ta, chunk):
        """y (and argmax) of the whole batch, chunk by chunk, the GEMMs on NumPy's BLAS."""
        n, o, ho, wo, ld = x.shape[0], w2.shape[0], geo[6], geo[7], cols.shape[1]
        p, k = ho * wo, _consts(y, alpha)
        xf, cf, zf, yf, amf = x.reshape(-1), cols.reshape(-1), z.reshape(-1), y.reshape(-1), am.reshape(-1)
        for b0 in range(0, n, chunk):
            nb = min(chunk, n - b0)
            _im2col(xf, b0, nb, x.shape, geo, cf, ld)
            if pooled:
                gemm(cols[:, : nb * p], True, w2, True, z[: nb * p], 1.0, 0.0)
                _ep.epilogue_pooled(zf, bias, b0, nb, o, ho, wo, pool, code, k, yf, amf, ty, ta)
            else:
                gemm(w2, False, cols[:, : nb * p], False, z[:, : nb * p], 1.0, 0.0)
                _ep.epilogue(zf, ld, bias, b0, nb, o, p, code, k, yf)

    def backward(grad, x, w2, y, am, geo, pool, alpha, need_dx, dw2, acc, dx, cols, gz, tv, ta, chunk):
        """dweight (into dw2), the bias gradient (float64, into acc) and dx if ``need_dx``, chunk by chunk."""
        n, o, ho, wo, ld = x.shape[0], w2.shape[0], geo[6], geo[7], cols.shape[1]
        p, k = ho * wo, _consts(gz, alpha)
        gf, yf, amf, xf = grad.reshape(-1), y.reshape(-1), am.reshape(-1), x.reshape(-1)
        cf, zf, dxf = cols.reshape(-1), gz.reshape(-1), dx.reshape(-1)
        for b0 in range(0, n, chunk):
            nb = min(chunk, n - b0)
            beta = 0.0 if b0 == 0 else 1.0
            _im2col(xf, b0, nb, x.shape, geo, cf, ld)
            if pooled:
                _ep.prologue_pooled(gf, yf, amf, b0, nb, o, ho, wo, pool, code, k, zf, acc, tv, ta)
                gemm(gz[: nb * p], True, cols[:, : nb * p], True, dw2, 1.0, beta)
                if need_dx:
                    gemm(w2, True, gz[: nb * p], True, cols[:, : nb * p], 1.0, 0.0)
            else:
                _ep.prologue(gf, yf, b0, nb, o, p, code, k, zf, ld, acc)
                gemm(gz[:, : nb * p], False, cols[:, : nb * p], True, dw2, 1.0, beta)
                if need_dx:
                    gemm(w2, True, gz[:, : nb * p], False, cols[:, : nb * p], 1.0, 0.0)
            if need_dx:
                _col2im(cf, ld, b0, nb, x.shape, geo, dxf)

    return tuple(_njit(f, **_OPTS) for f in (forward, backward, epilogue, prologue))  # type: ignore[return-value]


_MADE: dict[tuple[int, bool], tuple[Any, Any, Any, Any]] = {}


def kernels(code: int, pooled: bool) -> tuple[Any, Any, Any, Any]:
    """``(forward, backward, epilogue, prologue)`` of activation ``code`` with or without pooling, made once."""
    made = _MADE.get((code, pooled))
    if made is None:
        made = _MADE[code, pooled] = _make(code, pooled)
    return made
