"""Numba kernels of the layer ops: fused bias + activation and its backward, losses, dropout, batchnorm
(the LSTM and GRU steps' are in ``_recurrent_kernels``).

Each kernel is one loop over C-contiguous arrays of one float dtype (float32 or float64), writing into
arrays the caller allocated; ``NumbaBackend`` checks dtypes and layouts before calling. Arithmetic stays in
the array's dtype as the NumPy reference's does (so results match it to float rounding; numba calls the
float32 libm functions for float32), and sums accumulate in float64. Exponentials in the softmax and the
sigmoid, and tanh (tanh, gelu_tanh), use ``_vmath.vexp`` / ``vtanh``, which LLVM vectorizes (within 1.6 ulp;
libm's ``exp`` and ``tanh`` are scalar calls, measured slower than NumPy's SIMD loops: see docs/performance.md).
Activation kernels are made per activation (its code is a compile-time constant), so each compiles only when used.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from minitrain.backend.base import ACTIVATIONS

from ._jit import Kernel, kernel
from ._vmath import vexp, vtanh

IDENTITY, RELU, LEAKY_RELU, ELU, GELU, GELU_TANH, SIGMOID, TANH, SOFTPLUS = range(9)
#: Activation name -> code, in ``minitrain.backend.ACTIVATIONS`` order.
CODES = {name: code for code, name in enumerate(ACTIVATIONS)}
assert CODES["softplus"] == SOFTPLUS and CODES["gelu"] == GELU

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


# ---------------------------------------------------------------------------------------- activations
@njit(inline="always")
def _consts(x: np.ndarray, alpha: float) -> tuple:
    """The constants of the activations in x's dtype: (alpha, 0, 1, 1/2, 1/sqrt(2), sqrt(2/pi), c, 1/sqrt(2 pi))."""
    t = x.dtype.type
    return (t(alpha), t(0), t(1), t(0.5), t(_INV_SQRT2), t(_SQRT_2_OVER_PI), t(0.044715), t(_INV_SQRT_2PI))


@njit(inline="always")
def _act(x: float, code: int, k: tuple) -> float:
    """Activation ``code`` of one value ``x``, in x's type (``k``: its constants, see ``_consts``)."""
    a, zero, one, half, inv_sqrt2, s2pi, c = k[0], k[1], k[2], k[3], k[4], k[5], k[6]
    if code == RELU:
        return x if not x < zero else zero
    if code == LEAKY_RELU:
        return x if x > zero else x * a
    if code == ELU:
        return x if x > zero else a * np.expm1(x)
    if code == GELU:
        return half * x * (one + math.erf(x * inv_sqrt2))
    if code == GELU_TANH:
        return half * x * (one + vtanh(s2pi * (x + c * x * x * x)))
    if code == SIGMOID:
        return one / (one + vexp(-x))
    if code == TANH:
        return vtanh(x)
    if code == SOFTPLUS:
        return math.log1p(math.exp(-abs(x))) + max(x, zero)
    return x


@njit(inline="always")
def _act_grad(s: float, code: int, k: tuple) -> float:
    """Derivative of activation ``code`` from its output ``s`` (from the pre-activation for gelu)."""
    a, zero, one, half, inv_sqrt2, s2pi, c, inv_sqrt_2pi = k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]
    if code == RELU:
        return one if s > zero else zero
    if code == LEAKY_RELU:
        return one if s > zero else a
    if code == ELU:
        return one if s > zero else s + a
    if code == SIGMOID:
        return s * (one - s)
    if code == TANH:
        return one - s * s
    if code == SOFTPLUS:
        return -np.expm1(-s)
    if code == GELU:
        return half * (one + math.erf(s * inv_sqrt2)) + s * math.exp(-half * s * s) * inv_sqrt_2pi
    if code == GELU_TANH:
        t = vtanh(s2pi * (s + c * s * s * s))
        return half * (one + t) + half * s * (one - t * t) * s2pi * (one + (c + c + c) * s * s)
    return one


def _make_bias_act(code: int) -> Kernel:
    def bias_act(z: np.ndarray, b: np.ndarray, alpha: float) -> None:
        """In place: z[i, j] = act(z[i, j] + b[j])."""
        n, c = z.shape
        k = _consts(z, alpha)
        for i in prange(n):
            for j in range(c):
                z[i, j] = _act(z[i, j] + b[j], code, k)

    return Kernel(bias_act)


def _make_act(code: int) -> Kernel:
    def act(z: np.ndarray, out: np.ndarray, alpha: float) -> None:
        """out = act(z), flat arrays."""
        k = _consts(z, alpha)
        for i in prange(z.size):
            out[i] = _act(z[i], code, k)

    return Kernel(act)


def _make_act_backward(code: int) -> Kernel:
    def act_backward(g: np.ndarray, s: np.ndarray, out: np.ndarray, alpha: float) -> None:
        """out = g * act'(s), flat arrays (s: the output, or the pre-activation for gelu)."""
        k = _consts(g, alpha)
        for i in prange(g.size):
            out[i] = g[i] * _act_grad(s[i], code, k)

    return Kernel(act_backward)


def _make_act_backward_inplace(code: int) -> Kernel:
    def act_backward_inplace(g: np.ndarray, s: np.ndarray, alpha: float) -> None:
        """g *= act'(s), flat arrays. Its own kernel: LLVM vectorizes a loop only when its output cannot overlap
        an input, and falls back to scalar code when ``out`` is ``g``."""
        k = _consts(g, alpha)
        for i in prange(g.size):
            g[i] = g[i] * _act_grad(s[i], code, k)

    return Kernel(act_backward_inplace)


def _make_bias_act_backward(code: int, inplace: bool) -> Kernel:
    def bias_act_backward(g: np.ndarray, s: np.ndarray, out: np.ndarray, db: np.ndarray, alpha: float) -> None:
        """out = g * act'(s) (into g itself if ``inplace``) and db = its column sums, 2-D arrays, one pass."""
        n, c = g.shape
        k = _consts(g, alpha)
        acc = np.zeros(c)
        for i in range(n):
            for j in range(c):
                v = g[i, j] if code == IDENTITY else g[i, j] * _act_grad(s[i, j], code, k)
                if inplace:
                    g[i, j] = v
                else:
                    out[i, j] = v
                acc[j] += v
        for j in range(c):
            db[j] = acc[j]

    return Kernel(bias_act_backward)


_FACTORIES = {
    "bias_act": _make_bias_act,
    "act": _make_act,
    "act_backward": _make_act_backward,
    "act_backward_inplace": _make_act_backward_inplace,
    "bias_act_backward": lambda code: _make_bias_act_backward(code, False),
    "bias_act_backward_inplace": lambda code: _make_bias_act_backward(code, True),
}
_MADE: dict[tuple[str, int], Kernel] = {}


def activation_kernel(kind: str, code: int) -> Kernel:
    """The ``kind`` kernel (a key of ``_FACTORIES``) of activation ``code``, made once."""
    k = _MADE.get((kind, code))
    if k is None:
        k = _MADE[kind, code] = _FACTORIES[kind](code)
    return k


# ---------------------------------------------------------------------------------------- losses
@njit(inline="always")
def _softmax_row(x: np.ndarray, e: np.ndarray) -> tuple[float, float, float]:
    """Write exp(x - max) of one row into e; return (max, sum of e, log of the sum) in float64."""
    m = np.float64(x[0])
    for j in range(1, x.size):
        m = max(m, np.float64(x[j]))
    mt = x.dtype.type(m)
    for j in range(x.size):  # a loop of its own, without the sum, so that it vectorizes
        e[j] = vexp(x[j] - mt)
    s = 0.0
    for j in range(x.size):
        s += e[j]
    return m, s, math.log(s)


@njit(inline="always")
def _class_index(label: int, c: int) -> tuple[int, int]:
    """The class index in [0, c) (a negative one counts from the end) and 1 if it is out of bounds (then 0)."""
    if label < 0:
        label += c
    if label < 0 or label >= c:
        return 0, 1
    return label, 0


@kernel
def softmax_xent_index(
    x: np.ndarray, t: np.ndarray, w: np.ndarray, smoothing: float, loss: np.ndarray, grad: np.ndarray
) -> int:
    """Softmax cross-entropy rows against class indices: loss and gradient; returns the bad-label count."""
    n, c = x.shape
    off = smoothing / c
    on = 1.0 - smoothing + off
    bad = 0
    for i in prange(n):
        k, wrong = _class_index(t[i], c)
        bad += wrong
        m, s, lse = _softmax_row(x[i], grad[i])
        total_w = 0.0
        acc = 0.0
        for j in range(c):
            wq = (on if j == k else off) * np.float64(w[j])
            total_w += wq
            acc -= wq * (np.float64(x[i, j]) - m - lse)
        loss[i] = acc
        for j in range(c):
            wq = (on if j == k else off) * np.float64(w[j])
            grad[i, j] = grad[i, j] / s * total_w - wq
    return bad


@kernel
def softmax_xent_prob(
    x: np.ndarray, q: np.ndarray, w: np.ndarray, smoothing: float, loss: np.ndarray, grad: np.ndarray
) -> None:
    """Softmax cross-entropy rows against target distributions ``q``: loss and gradient."""
    n, c = x.shape
    off = smoothing / c
    for i in prange(n):
        m, s, lse = _softmax_row(x[i], grad[i])
        total_w = 0.0
        acc = 0.0
        for j in range(c):
            wq = (np.float64(q[i, j]) * (1.0 - smoothing) + off) * np.float64(w[j])
            total_w += wq
            acc -= wq * (np.float64(x[i, j]) - m - lse)
        loss[i] = acc
        for j in range(c):
            wq = (np.float64(q[i, j]) * (1.0 - smoothing) + off) * np.float64(w[j])
            grad[i, j] = grad[i, j] / s * total_w - wq


@kernel
def sigmoid_xent(x: np.ndarray, t: np.ndarray, pw: np.ndarray, loss: np.ndarray, grad: np.ndarray) -> None:
    """Binary cross-entropy of sigmoid(x) (rows x columns) and its gradient; pw: none, one or per column."""
    n, c = x.shape
    npw = pw.size
    zero, one = x.dtype.type(0), x.dtype.type(1)
    for i in prange(n):
        for j in range(c):
            z, y = x[i, j], t[i, j]
            e = math.exp(-abs(z))
            sp_neg = math.log1p(e) + max(-z, zero)  # -log sigmoid(z)
            sig = one / (one + e) if z >= zero else e / (one + e)
            if npw == 0:
                loss[i, j] = (one - y) * z + sp_neg
                grad[i, j] = sig - y
            else:
                lw = one + ((pw[0] if npw == 1 else pw[j]) - one) * y
                loss[i, j] = (one - y) * z + lw * sp_neg
                grad[i, j] = (one - y) - lw * (one - sig)


@kernel
def mse(p: np.ndarray, t: np.ndarray, loss: np.ndarray, grad: np.ndarray) -> None:
    """Squared error and its gradient, flat arrays."""
    n = p.size
    two = p.dtype.type(2)
    for i in prange(n):
        d = p[i] - t[i]
        loss[i] = d * d
        grad[i] = d * two


# ---------------------------------------------------------------------------------------- dropout
@kernel
def dropout(x: np.ndarray, mask: np.ndarray, out: np.ndarray, p: float, scale: float) -> None:
    """Turn uniform draws ``mask`` into the scaled keep mask in place and write out = x * mask (flat)."""
    n = x.size
    pt = x.dtype.type(p)
    keep = x.dtype.type(scale)
    zero = x.dtype.type(0)
    for i in prange(n):
        m = keep if mask[i] >= pt else zero
        mask[i] = m
        out[i] = x[i] * m


# ---------------------------------------------------------------------------------------- batchnorm
# Shapes (N, C, S): channels on axis 1, S the spatial size. With S == 1 (dense inputs) the kernels walk rows
# and vectorize across channels, in blocks of CHANNELS for the parallel variant; else each channel's runs.
CHANNELS = 256


@kernel
def bn_stats(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
    """Per-channel mean and biased variance of x (N, C, S) into float64 arrays, two passes."""
    n, c, s = x.shape
    count = n * s
    if s == 1:
        for blk in prange((c + CHANNELS - 1) // CHANNELS):
            lo = blk * CHANNELS
            m, v = mean[lo : lo + CHANNELS], var[lo : lo + CHANNELS]
            m[:] = 0.0
            v[:] = 0.0
            for i in range(n):
                row = x[i, lo : lo + CHANNELS, 0]
                for j in range(m.size):
                    m[j] += row[j]
            for j in range(m.size):
                m[j] /= count
            for i in range(n):
                row = x[i, lo : lo + CHANNELS, 0]
                for j in range(m.size):
                    d = row[j] - m[j]
                    v[j] += d * d
            for j in range(m.size):
                v[j] /= count
    else:
        for ch in prange(c):
            acc = 0.0
            for i in range(n):
                for k in range(s):
                    acc += x[i, ch, k]
            mu = acc / count
            sq = 0.0
            for i in range(n):
                for k in range(s):
                    d = x[i, ch, k] - mu
                    sq += d * d
            mean[ch] = mu
            var[ch] = sq / count


@kernel
def bn_apply(
    x: np.ndarray,
    mean: np.ndarray,
    inv_std: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    xhat: np.ndarray,
    y: np.ndarray,
) -> None:
    """xhat = (x - mean) * inv_std and y = xhat * gamma + beta per channel, x of shape (N, C, S)."""
    n, c, s = x.shape
    if s == 1:
        for i in prange(n):
            xr, hr, yr = x[i, :, 0], xhat[i, :, 0], y[i, :, 0]
            for j in range(c):
                h = (xr[j] - mean[j]) * inv_std[j]
                hr[j] = h
                yr[j] = h * gamma[j] + beta[j]
    else:
        for i in prange(n):
            for ch in range(c):
                mu, k, g, b = mean[ch], inv_std[ch], gamma[ch], beta[ch]
                for j in range(s):
                    h = (x[i, ch, j] - mu) * k
                    xhat[i, ch, j] = h
                    y[i, ch, j] = h * g + b


@kernel
def bn_sums(g: np.ndarray, xhat: np.ndarray, dbeta: np.ndarray, dgamma: np.ndarray) -> None:
    """Per-channel sums of g and of g * xhat (N, C, S) into float64 arrays."""
    n, c, s = g.shape
    if s == 1:
        for blk in prange((c + CHANNELS - 1) // CHANNELS):
            lo = blk * CHANNELS
            sb, sg = dbeta[lo : lo + CHANNELS], dgamma[lo : lo + CHANNELS]
            sb[:] = 0.0
            sg[:] = 0.0
            for i in range(n):
                gr, hr = g[i, lo : lo + CHANNELS, 0], xhat[i, lo : lo + CHANNELS, 0]
                for j in range(sb.size):
                    v = np.float64(gr[j])
                    sb[j] += v
                    sg[j] += v * hr[j]
    else:
        for ch in prange(c):
            acc_b = 0.0
            acc_g = 0.0
            for i in range(n):
                for k in range(s):
                    v = np.float64(g[i, ch, k])
                    acc_b += v
                    acc_g += v * xhat[i, ch, k]
            dbeta[ch] = acc_b
            dgamma[ch] = acc_g


@kernel
def bn_dx(
    g: np.ndarray,
    xhat: np.ndarray,
    k: np.ndarray,
    dbeta: np.ndarray,
    dgamma: np.ndarray,
    count: int,
    training: bool,
    dx: np.ndarray,
) -> None:
    """Input gradient of batchnorm: k * (count * g - dbeta - xhat * dgamma) in training, else g * k."""
    n, c, s = g.shape
    cnt = g.dtype.type(count)
    if s == 1:
        for i in prange(n):
            gr, hr, dr = g[i, :, 0], xhat[i, :, 0], dx[i, :, 0]
            if training:
                for j in range(c):
                    dr[j] = k[j] * (cnt * gr[j] - dbeta[j] - hr[j] * dgamma[j])
            else:
                for j in range(c):
                    dr[j] = gr[j] * k[j]
    else:
        for i in prange(n):
            for ch in range(c):
                kc, db, dg = k[ch], dbeta[ch], dgamma[ch]
                if training:
                    for j in range(s):
                        dx[i, ch, j] = kc * (cnt * g[i, ch, j] - db - xhat[i, ch, j] * dg)
                else:
                    for j in range(s):
                        dx[i, ch, j] = g[i, ch, j] * kc
