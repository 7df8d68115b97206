"""Numba kernels of ``mlp_loss_grad``: a dense stack's batch, from gathering its rows to the last weight gradient,
in one compiled call (imported with numba, on first use; see ``_mlp`` for when they run).

``kernel(hidden, kind)`` makes the kernel of networks whose hidden layers share activation ``hidden`` and whose
output layer is affine; ``kind`` is INDEX (softmax cross-entropy against class indices) or SOFTMAX, LOGISTIC or
SQUARED against (n, c) targets. Both are constants of the compiled code, so numba prunes the other branches and a
kernel compiles only for what it runs. A kernel gathers the batch's rows into ``xb`` (when
``gather``), runs each layer as a GEMM into its output buffer (NumPy's own BLAS, ``_blas``) and one pass adding
the bias and applying the activation, computes the output loss and its gradient in one pass over the logits, and
runs the backward pass: the activation's derivative and the bias gradient (float64 column sums) in one pass, then
the weight gradient's GEMM and the next layer's input gradient's GEMM. The elementwise passes are the activation
kernels of ``_kernels`` that the reference path runs, and the softmax row is the same function, so results match
the reference to float rounding. Buffers hold at least ``n`` rows (the batch is their first ``n``); tuples hold
one array per layer (the compiled code is specialized on the depth). Weights and weight gradients arrive
row-major: as given (out, in), or transposed (in, out) when ``wt`` / ``gt`` (a column-major ``Linear`` weight's
transpose), so that one tuple type fits every layer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from ._blas import gemm, register
from ._jit import FASTMATH, _njit
from ._kernels import CODES, IDENTITY, LEAKY_RELU, RELU, SIGMOID, TANH, _class_index, _softmax_row, activation_kernel

#: Whether NumPy's BLAS could be registered for compiled code (else ``_mlp`` keeps the reference path).
AVAILABLE = register()
#: Hidden activation codes these kernels handle (their backward reads the layer's output).
SUPPORTED = frozenset({IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH})
INDEX, SOFTMAX, LOGISTIC, SQUARED = range(4)  # the output losses
__all__ = ["AVAILABLE", "CODES", "INDEX", "LOGISTIC", "SOFTMAX", "SQUARED", "SUPPORTED", "kernel"]


# The layers' bias + activation and its backward are the activation kernels the reference path uses (compiled
# once, cached, shared); each per-activation kernel is its own global so that a batch kernel links only its own.
_FWD = {code: activation_kernel("bias_act", code).serial for code in SUPPORTED}
_BWD = {code: activation_kernel("bias_act_backward_inplace", code).serial for code in SUPPORTED}
_FWD_IDENTITY, _FWD_RELU, _FWD_LEAKY, _FWD_SIGMOID, _FWD_TANH = (
    _FWD[c] for c in (IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH)
)
_BWD_IDENTITY, _BWD_RELU, _BWD_LEAKY, _BWD_SIGMOID, _BWD_TANH = (
    _BWD[c] for c in (IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH)
)


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
def _weight(sw: np.ndarray, r: int) -> float:
    return 1.0 if sw.size == 0 else np.float64(sw[r])


@njit(inline="always")
def _index_loss(z: np.ndarray, y: np.ndarray, sw: np.ndarray, idx: np.ndarray, n: int, gather: bool,
                glast: np.ndarray, scale: float) -> tuple[float, int]:  # fmt: skip
    """Softmax cross-entropy against class indices (negative ones count from the end): loss, bad labels."""
    t = z.dtype.type
    c = z.shape[1]
    loss, bad = 0.0, 0
    for i in range(n):
        r = idx[i] if gather else i
        label, wrong = _class_index(y[r], c)
        bad += wrong
        m, s, lse = _softmax_row(z[i], glast[i])
        w = _weight(sw, r)
        loss -= w * (np.float64(z[i, label]) - m - lse)
        tw, ts = t(w), t(scale)
        for j in range(c):
            glast[i, j] = t(t(glast[i, j] / s - (1.0 if j == label else 0.0)) * tw) * ts
    return loss * scale, bad


@njit(inline="always")
def _dense_loss(z: np.ndarray, y: np.ndarray, sw: np.ndarray, idx: np.ndarray, n: int, gather: bool,
                glast: np.ndarray, scale: float, kind: int) -> float:  # fmt: skip
    """SOFTMAX against probability rows, LOGISTIC (binary cross-entropy summed over outputs) or SQUARED (half
    squared error averaged over outputs, its gradient not averaged)."""
    t = z.dtype.type
    zero, one = t(0), t(1)
    c = z.shape[1]
    loss = 0.0
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
        tw, ts = t(w), t(scale)
        for j in range(c):
            glast[i, j] = t(glast[i, j] * tw) * ts
    return loss * scale


def _make(hidden: int, kind: int) -> Any:
    # ``hidden`` and ``kind`` are constants of the compiled code: numba prunes the branches of the others
    def mlp(
        x: np.ndarray, y: np.ndarray, sw: np.ndarray, idx: np.ndarray, n: int, gather: bool, ws: tuple, wt: bool,
        bs: tuple, gws: tuple, gt: bool, gbs: tuple, alpha: float, xb: np.ndarray, outs: tuple, deltas: tuple,
        glast: np.ndarray, weight_sum: float,
    ) -> tuple[float, int]:  # fmt: skip
        """One batch: gather, forward, output loss, backward; returns (loss, count of bad row or class indices)."""
        bad = _gather(x, idx, n, xb) if gather else 0
        h0 = xb if gather else x
        if bad:
            return 0.0, bad
        last = len(ws) - 1
        for layer in range(last + 1):
            h = h0 if layer == 0 else outs[layer - 1]
            z, b = outs[layer][:n], bs[layer]
            gemm(h[:n], False, ws[layer], not wt, z, 1.0, 0.0)
            if layer == last or hidden == IDENTITY:
                _FWD_IDENTITY(z, b, alpha)
            elif hidden == RELU:
                _FWD_RELU(z, b, alpha)
            elif hidden == LEAKY_RELU:
                _FWD_LEAKY(z, b, alpha)
            elif hidden == SIGMOID:
                _FWD_SIGMOID(z, b, alpha)
            else:
                _FWD_TANH(z, b, alpha)
        z = outs[last][:n]
        if kind == INDEX:
            loss, bad = _index_loss(z, y, sw, idx, n, gather, glast, 1.0 / weight_sum)
            if bad:
                return 0.0, bad
        else:
            loss = _dense_loss(z, y, sw, idx, n, gather, glast, 1.0 / weight_sum, kind)
        for layer in range(last, -1, -1):
            g, s, db = (glast if layer == last else deltas[layer])[:n], outs[layer][:n], gbs[layer]
            if layer == last or hidden == IDENTITY:
                _BWD_IDENTITY(g, s, g, db, alpha)
            elif hidden == RELU:
                _BWD_RELU(g, s, g, db, alpha)
            elif hidden == LEAKY_RELU:
                _BWD_LEAKY(g, s, g, db, alpha)
            elif hidden == SIGMOID:
                _BWD_SIGMOID(g, s, g, db, alpha)
            else:
                _BWD_TANH(g, s, g, db, alpha)
            h = (h0 if layer == 0 else outs[layer - 1])[:n]
            if gt:  # the gradient given transposed, (in, out)
                gemm(h, True, g, False, gws[layer], 1.0, 0.0)
            else:
                gemm(g, True, h, False, gws[layer], 1.0, 0.0)
            if layer > 0:
                gemm(g, False, ws[layer], wt, deltas[layer - 1][:n], 1.0, 0.0)
        return loss, 0

    mlp.__qualname__ = mlp.__name__ = f"mlp_{hidden}_{kind}"  # one cache entry per (hidden, kind)
    return _njit(mlp, error_model="numpy", fastmath=set(FASTMATH))


_KERNELS: dict[tuple[int, int], Any] = {}


def kernel(hidden: int, kind: int) -> Any:
    """The compiled batch kernel for hidden activation code ``hidden`` and output loss ``kind``, made once."""
    key = (hidden, kind)
    fn = _KERNELS.get(key)
    if fn is None:
        fn = _KERNELS[key] = _make(hidden, kind)
    return fn
