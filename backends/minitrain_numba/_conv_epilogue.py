"""The passes around the convolution's GEMM (``_conv_gemm``): the forward's epilogue (bias, activation, max pooling,
NCHW output) and the backward's prologue (the GEMMs' output gradient and the bias gradient).

Two layouts of the GEMM output z, per chunk of ``nb`` images of ``p = ho * wo`` pixels:

* channels-first, (o, nb * p) (row oc at ``oc * ld``): without pooling. Each (channel, image) plane is a
  contiguous run, so the NCHW output is one vectorized pass per plane.
* channels-last, (nb * p, o) (pixel rows of o channels): with pooling. The windows' pixels are rows of o
  contiguous channels, so the running max, its argmax and the routing of the gradient are vectorized over the
  channels; one image's pooled (hq * wq, o) block is then transposed into NCHW through a small buffer (``ty``,
  ``ta``), and in the backward the pooled gradient is transposed into such a block first.

The max pooling follows the reference (``maxpool2d`` of the activated values): the first maximum of each window
in row-major order, a NaN sticks. Pool windows are disjoint (stride = size, no padding): a pixel outside every
window (floor mode) gets no gradient. Flat indices are unsigned (``_U``; see ``_conv_kernels``). Bias gradients
accumulate in float64.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._conv_kernels import _upd
from ._kernels import IDENTITY, _act, _act_grad

_U = np.uint64


@njit(inline="always")
def epilogue(z, ld, bias, b0, nb, o, p, code, k, y):
    """Channels-first z: ``y[b0 + bb, oc] = act(z[oc, bb * p:(bb + 1) * p] + bias[oc])``, NCHW."""
    for oc in range(o):
        bv = bias[oc]
        for bb in range(nb):
            src, dst = _U(oc * ld + bb * p), _U(((b0 + bb) * o + oc) * p)
            for t in range(_U(p)):
                y[dst + t] = _act(z[src + t] + bv, code, k)


@njit(inline="always")
def prologue(grad, y, b0, nb, o, p, code, k, gz, ld, acc):
    """Channels-first gz: ``gz[oc, bb * p + t] = grad * act'(y)`` of image b0 + bb; the bias gradient into acc."""
    for oc in range(o):
        for bb in range(nb):
            src, dst = _U(((b0 + bb) * o + oc) * p), _U(oc * ld + bb * p)
            if code == IDENTITY:
                for t in range(_U(p)):
                    gz[dst + t] = grad[src + t]
            else:
                for t in range(_U(p)):
                    gz[dst + t] = grad[src + t] * _act_grad(y[src + t], code, k)
            s = 0.0
            for t in range(_U(p)):
                s += gz[dst + t]
            acc[oc] += s


@njit(inline="always")
def _pool_pixel(z, base, wo, o, bias, code, k, ty, ta, t0, qh, qw):
    """The running max and argmax of one pooled pixel's window, every channel, into ``ty`` / ``ta`` at ``t0``
    (``qh``, ``qw`` literals where the caller dispatched on them, so that the window unrolls in the channel loop)."""
    ninf = ty.dtype.type(-np.inf)
    for oc in range(_U(o)):
        bv = bias[oc]
        m, a = ninf, 0
        for i in range(qh):
            for j in range(qw):
                m, a = _upd(_act(z[_U(base + (i * wo + j) * o) + oc] + bv, code, k), m, a, i * qw + j)
        ty[t0 + oc] = m
        ta[t0 + oc] = a


@njit(inline="always")
def _route_pixel(gz, base, wo, o, tv, ta, t0, qh, qw):
    """One pooled pixel's gradient (``tv`` at ``t0``) into its window's rows of ``gz``: at the argmax, else 0."""
    zero = gz.dtype.type(0)
    for oc in range(_U(o)):
        v, a = tv[t0 + oc], ta[t0 + oc]
        for i in range(qh):
            for j in range(qw):
                gz[_U(base + (i * wo + j) * o) + oc] = v if a == i * qw + j else zero


@njit(inline="always")
def epilogue_pooled(z, bias, b0, nb, o, ho, wo, pool, code, k, y, am, ty, ta):
    """Channels-last z (pixel rows of o): y = maxpool(act(z + bias)) over disjoint windows, and the argmax, NCHW."""
    qh, qw = pool
    p, wq = ho * wo, wo // qw
    nq = (ho // qh) * wq
    for bb in range(nb):
        for q in range(nq):
            t0, base = _U(q * o), (bb * p + (q // wq) * qh * wo + (q % wq) * qw) * o
            if qh == 2 and qw == 2:
                _pool_pixel(z, base, wo, o, bias, code, k, ty, ta, t0, 2, 2)
            else:
                _pool_pixel(z, base, wo, o, bias, code, k, ty, ta, t0, qh, qw)
        for oc in range(o):
            dst = _U(((b0 + bb) * o + oc) * nq)
            for q in range(_U(nq)):
                y[dst + q] = ty[q * _U(o) + _U(oc)]
                am[dst + q] = ta[q * _U(o) + _U(oc)]


@njit(inline="always")
def prologue_pooled(grad, y, am, b0, nb, o, ho, wo, pool, code, k, gz, acc, tv, ta):
    """Channels-last gz (pixel rows of o): grad * act'(y) routed to each window's argmax, zeros elsewhere; the bias
    gradient into acc."""
    qh, qw = pool
    p, wq = ho * wo, wo // qw
    nq = (ho // qh) * wq
    zero = gz.dtype.type(0)
    for bb in range(nb):
        for oc in range(o):
            src = _U(((b0 + bb) * o + oc) * nq)
            for q in range(_U(nq)):
                g = grad[src + q]
                tv[q * _U(o) + _U(oc)] = g if code == IDENTITY else g * _act_grad(y[src + q], code, k)
                ta[q * _U(o) + _U(oc)] = am[src + q]
        for q in range(nq):
            t0 = _U(q * o)
            for oc in range(_U(o)):
                acc[oc] += tv[t0 + oc]
        if ho % qh or wo % qw:  # pixels outside every window
            for t in range(_U(bb * p * o), _U((bb + 1) * p * o)):
                gz[t] = zero
        for q in range(nq):
            t0, base = _U(q * o), (bb * p + (q // wq) * qh * wo + (q % wq) * qw) * o
            if qh == 2 and qw == 2:
                _route_pixel(gz, base, wo, o, tv, ta, t0, 2, 2)
            else:
                _route_pixel(gz, base, wo, o, tv, ta, t0, qh, qw)
