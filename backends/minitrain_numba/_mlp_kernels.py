"""Numba kernels of ``mlp_loss_grad``: a dense stack's batch, from gathering its rows to the last weight gradient,
in one compiled call (imported with numba, on first use; see ``_mlp`` for when they run).

``mlp_index`` takes class indices (softmax outputs), ``mlp_dense`` (n, c) targets; both gather the batch's rows
into ``xb`` (when ``gather``), run each layer as a GEMM into its output buffer (NumPy's own BLAS, ``_blas``)
followed by one pass adding the bias and applying the activation, compute the output loss and its gradient in
one pass over the logits, and run the backward pass: the activation's derivative and the bias gradient (float64
column sums) in one pass, then the weight gradient's GEMM and the next layer's input gradient's GEMM. The
arithmetic follows the reference's kernels (``_kernels``): the softmax row and the activations are the same
functions, so results match it to float rounding. Buffers hold at least ``n`` rows (the batch is their first
``n``); tuples hold one array per layer (the compiled code is specialized on the depth). Weights and weight
gradients arrive row-major: as given (out, in), or transposed (in, out) when ``wt`` / ``gt`` (a column-major
``Linear`` weight's transpose), so that one tuple type fits every layer.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._blas import gemm, register
from ._kernels import CODES, IDENTITY, LEAKY_RELU, RELU, SIGMOID, TANH, _act, _act_grad, _consts, _softmax_row

#: Whether NumPy's BLAS could be registered for compiled code (else ``_mlp`` keeps the reference path).
AVAILABLE = register()
#: Activation codes these kernels handle (their backward reads the layer's output).
SUPPORTED = frozenset({IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH})
SOFTMAX, LOGISTIC, SQUARED = 0, 1, 2  # mlp_dense output losses
__all__ = ["AVAILABLE", "CODES", "SUPPORTED", "mlp_dense", "mlp_index"]

_OPTS = {"cache": True, "error_model": "numpy", "fastmath": {"contract"}}


@njit(inline="always")
def _bias_act_as(z: np.ndarray, b: np.ndarray, n: int, code: int, k: tuple) -> None:
    for i in range(n):
        for j in range(z.shape[1]):
            z[i, j] = _act(z[i, j] + b[j], code, k)


@njit(**_OPTS)
def _bias_act(z: np.ndarray, b: np.ndarray, n: int, code: int, alpha: float) -> None:
    """In place over the first ``n`` rows: z = act(z + b), one loop per activation (its code a constant)."""
    k = _consts(z, alpha)
    if code == RELU:
        _bias_act_as(z, b, n, RELU, k)
    elif code == LEAKY_RELU:
        _bias_act_as(z, b, n, LEAKY_RELU, k)
    elif code == SIGMOID:
        _bias_act_as(z, b, n, SIGMOID, k)
    elif code == TANH:
        _bias_act_as(z, b, n, TANH, k)
    else:
        _bias_act_as(z, b, n, IDENTITY, k)


@njit(inline="always")
def _act_back_as(g: np.ndarray, s: np.ndarray, acc: np.ndarray, n: int, code: int, k: tuple) -> None:
    for i in range(n):
        for j in range(g.shape[1]):
            v = g[i, j] if code == IDENTITY else g[i, j] * _act_grad(s[i, j], code, k)
            g[i, j] = v
            acc[j] += v


@njit(**_OPTS)
def _act_backward_bias(g: np.ndarray, s: np.ndarray, db: np.ndarray, n: int, code: int, alpha: float) -> None:
    """In place over the first ``n`` rows: g *= act'(s) (s: the layer's output); db = the column sums of g."""
    k = _consts(g, alpha)
    acc = np.zeros(g.shape[1])
    if code == RELU:
        _act_back_as(g, s, acc, n, RELU, k)
    elif code == LEAKY_RELU:
        _act_back_as(g, s, acc, n, LEAKY_RELU, k)
    elif code == SIGMOID:
        _act_back_as(g, s, acc, n, SIGMOID, k)
    elif code == TANH:
        _act_back_as(g, s, acc, n, TANH, k)
    else:
        _act_back_as(g, s, acc, n, IDENTITY, k)
    for j in range(g.shape[1]):
        db[j] = acc[j]


@njit(inline="always")
def _gather(x: np.ndarray, idx: np.ndarray, n: int, xb: np.ndarray) -> int:
    """Copy rows ``idx[:n]`` of x into xb; returns how many indices lie outside x (those rows are left as they were)."""
    bad = 0
    for i in range(n):
        r = idx[i]
        if r < 0 or r >= x.shape[0]:
            bad += 1
            continue
        for j in range(x.shape[1]):
            xb[i, j] = x[r, j]
    return bad


@njit(inline="always")
def _forward(h0: np.ndarray, n: int, ws: tuple, wt: bool, bs: tuple, codes: tuple, alphas: tuple, outs: tuple) -> None:
    for k in range(len(ws)):
        h = h0 if k == 0 else outs[k - 1]
        gemm(h[:n], False, ws[k], not wt, outs[k][:n], 1.0, 0.0)
        _bias_act(outs[k], bs[k], n, codes[k], alphas[k])


@njit(inline="always")
def _backward(
    h0: np.ndarray, n: int, ws: tuple, wt: bool, codes: tuple, alphas: tuple, outs: tuple, deltas: tuple,
    glast: np.ndarray, gws: tuple, gt: bool, gbs: tuple,
) -> None:  # fmt: skip
    last = len(ws) - 1
    for k in range(last, -1, -1):
        g = glast if k == last else deltas[k]
        _act_backward_bias(g, outs[k], gbs[k], n, codes[k], alphas[k])
        h = h0 if k == 0 else outs[k - 1]
        if gt:  # the gradient given transposed, (in, out)
            gemm(h[:n], True, g[:n], False, gws[k], 1.0, 0.0)
        else:
            gemm(g[:n], True, h[:n], False, gws[k], 1.0, 0.0)
        if k > 0:
            gemm(g[:n], False, ws[k], wt, deltas[k - 1][:n], 1.0, 0.0)


@njit(inline="always")
def _weight(sw: np.ndarray, r: int) -> float:
    return 1.0 if sw.size == 0 else np.float64(sw[r])


@njit(**_OPTS)
def mlp_index(
    x: np.ndarray, y: np.ndarray, sw: np.ndarray, idx: np.ndarray, n: int, gather: bool, ws: tuple, wt: bool,
    bs: tuple, gws: tuple, gt: bool, gbs: tuple, codes: tuple, alphas: tuple, xb: np.ndarray, outs: tuple,
    deltas: tuple, glast: np.ndarray, weight_sum: float,
) -> tuple[float, int]:  # fmt: skip
    """Softmax cross-entropy against class indices ``y``; returns (loss, count of bad row or class indices)."""
    bad = _gather(x, idx, n, xb) if gather else 0
    h0 = xb if gather else x
    if bad:
        return 0.0, bad
    _forward(h0, n, ws, wt, bs, codes, alphas, outs)
    z = outs[len(outs) - 1]
    t = z.dtype.type
    c = z.shape[1]
    scale, loss = 1.0 / weight_sum, 0.0
    for i in range(n):
        r = idx[i] if gather else i
        label = y[r]
        if label < 0:
            label += c
        if label < 0 or label >= c:
            bad += 1
            label = 0
        m, s, lse = _softmax_row(z[i], glast[i])
        w = _weight(sw, r)
        loss -= w * (np.float64(z[i, label]) - m - lse)
        ws_, sc = t(w), t(scale)
        for j in range(c):
            glast[i, j] = t(t(glast[i, j] / s - (1.0 if j == label else 0.0)) * ws_) * sc
    if bad:
        return 0.0, bad
    _backward(h0, n, ws, wt, codes, alphas, outs, deltas, glast, gws, gt, gbs)
    return loss * scale, 0


@njit(**_OPTS)
def mlp_dense(
    x: np.ndarray, y: np.ndarray, sw: np.ndarray, idx: np.ndarray, n: int, gather: bool, ws: tuple, wt: bool,
    bs: tuple, gws: tuple, gt: bool, gbs: tuple, codes: tuple, alphas: tuple, xb: np.ndarray, outs: tuple,
    deltas: tuple, glast: np.ndarray, weight_sum: float, kind: int,
) -> tuple[float, int]:  # fmt: skip
    """``kind``: SOFTMAX against probability rows, LOGISTIC (binary cross-entropy summed over outputs) or SQUARED
    (half squared error averaged over outputs, its gradient not averaged); returns (loss, bad row indices)."""
    bad = _gather(x, idx, n, xb) if gather else 0
    h0 = xb if gather else x
    if bad:
        return 0.0, bad
    _forward(h0, n, ws, wt, bs, codes, alphas, outs)
    z = outs[len(outs) - 1]
    t = z.dtype.type
    zero, one = t(0), t(1)
    c = z.shape[1]
    scale, loss = 1.0 / weight_sum, 0.0
    for i in range(n):
        r = idx[i] if gather else i
        acc = 0.0
        if kind == SOFTMAX:
            m, s, lse = _softmax_row(z[i], glast[i])
            total = 0.0
            for j in range(c):
                q = np.float64(y[r, j])
                total += q
                acc -= q * (np.float64(z[i, j]) - m - lse)
            for j in range(c):
                glast[i, j] = glast[i, j] / s * total - np.float64(y[r, j])
        elif kind == LOGISTIC:
            for j in range(c):
                v, target = z[i, j], y[r, j]
                e = math.exp(-abs(v))
                acc += (one - target) * v + (math.log1p(e) + max(-v, zero))
                glast[i, j] = (one / (one + e) if v >= zero else e / (one + e)) - target
        else:
            for j in range(c):
                d = z[i, j] - y[r, j]
                glast[i, j] = d
                acc += d * d
            acc = 0.5 * acc / c
        w = _weight(sw, r)
        loss += w * acc
        ws_, sc = t(w), t(scale)
        for j in range(c):
            glast[i, j] = t(glast[i, j] * ws_) * sc
    _backward(h0, n, ws, wt, codes, alphas, outs, deltas, glast, gws, gt, gbs)
    return loss * scale, 0
