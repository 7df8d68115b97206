"""Numba kernels of the LSTM and GRU steps: one fused loop over batch x hidden each.

Each reads one unit's gates, keeps every intermediate in registers and writes each result once, where the
NumPy reference makes a pass over temporaries per operation. Sigmoid and tanh use ``_vmath`` (``vexp``,
``vtanh``), which LLVM vectorizes; with libm's scalar ``exp`` / ``tanh`` fused loops were slower than the
reference's SIMD passes. Rows are taken as one view per gate, so the in-place writes (the activations over the
pre-activations, the gate gradients over the activations) go to arrays LLVM can tell apart from the others at
run time, and the loops vectorize. Per-call and training timings against the reference: docs/performance.md.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import Kernel, kernel
from ._vmath import vexp, vtanh


@kernel
def lstm_step(gates: np.ndarray, c_prev: np.ndarray, h: np.ndarray, c: np.ndarray) -> None:
    """gates (B, 4H: i, f, g, o) -> activations in place; c = f c_prev + i g; h = o tanh(c)."""
    n, hs = c_prev.shape
    one = gates.dtype.type(1)
    for b in prange(n):
        gi, gf, gg, go = gates[b, :hs], gates[b, hs : 2 * hs], gates[b, 2 * hs : 3 * hs], gates[b, 3 * hs :]
        cp, hb, cb = c_prev[b], h[b], c[b]
        for j in range(hs):
            i = one / (one + vexp(-gi[j]))
            f = one / (one + vexp(-gf[j]))
            g = vtanh(gg[j])
            o = one / (one + vexp(-go[j]))
            cc = f * cp[j] + i * g
            gi[j], gf[j], gg[j], go[j] = i, f, g, o
            cb[j] = cc
            hb[j] = o * vtanh(cc)


def _make_lstm_step_backward(inplace: bool, with_grad_c: bool) -> Kernel:
    def lstm_step_backward(
        grad_h: np.ndarray, grad_c: np.ndarray, acts: np.ndarray, c_prev: np.ndarray, c: np.ndarray,
        d: np.ndarray, grad_c_prev: np.ndarray,
    ) -> None:  # fmt: skip
        """Gate gradients (into d, or into acts itself if ``inplace``) and grad_c_prev of one LSTM step."""
        n, hs = c.shape
        one = acts.dtype.type(1)
        for b in prange(n):
            ai, af, ag, ao = acts[b, :hs], acts[b, hs : 2 * hs], acts[b, 2 * hs : 3 * hs], acts[b, 3 * hs :]
            out = acts[b] if inplace else d[b]
            di, df, dg, do = out[:hs], out[hs : 2 * hs], out[2 * hs : 3 * hs], out[3 * hs :]
            gh, cp, cb, gcp = grad_h[b], c_prev[b], c[b], grad_c_prev[b]
            for j in range(hs):
                i, f, g, o = ai[j], af[j], ag[j], ao[j]
                tc = vtanh(cb[j])
                dc = (one - tc * tc) * o * gh[j]
                if with_grad_c:
                    dc = dc + grad_c[b, j]
                gcp[j] = dc * f
                di[j] = (one - i) * g * (dc * i)
                df[j] = (one - f) * f * dc * cp[j]
                dg[j] = (one - g * g) * (dc * i)
                do[j] = (one - o) * (tc * gh[j] * o)

    return kernel(lstm_step_backward)


LSTM_STEP_BACKWARD = {(a, b): _make_lstm_step_backward(a, b) for a in (False, True) for b in (False, True)}


@kernel
def gru_step(acts: np.ndarray, gh: np.ndarray, h_prev: np.ndarray, h: np.ndarray) -> None:
    """gi (B, 3H: r, z, n) in ``acts`` -> activations in place; h = (h_prev - n) z + n."""
    n, hs = h_prev.shape
    one = acts.dtype.type(1)
    for b in prange(n):
        ar, az, an = acts[b, :hs], acts[b, hs : 2 * hs], acts[b, 2 * hs :]
        hr, hz, hn = gh[b, :hs], gh[b, hs : 2 * hs], gh[b, 2 * hs :]
        hp, hb = h_prev[b], h[b]
        for j in range(hs):
            r = one / (one + vexp(-(ar[j] + hr[j])))
            z = one / (one + vexp(-(az[j] + hz[j])))
            nn = vtanh(an[j] + r * hn[j])
            ar[j], az[j], an[j] = r, z, nn
            hb[j] = (hp[j] - nn) * z + nn


@kernel
def gru_step_backward(
    grad_h: np.ndarray,
    acts: np.ndarray,
    gh: np.ndarray,
    h_prev: np.ndarray,
    d: np.ndarray,
    dgh: np.ndarray,
    ghp: np.ndarray,
) -> None:
    """Gradients wrt gi (into d, may be acts), gh (into dgh, may be gh) and h_prev (into ghp)."""
    one = acts.dtype.type(1.0)
    n, hs = h_prev.shape
    for b in prange(n):
        for j in range(hs):
            r = acts[b, j]
            z = acts[b, hs + j]
            nn = acts[b, 2 * hs + j]
            g = grad_h[b, j]
            ghn = gh[b, 2 * hs + j]
            gz = g * z
            t1 = g - gz
            t2 = (h_prev[b, j] - nn) * g * z
            dz = (one - z) * t2
            dn = (one - nn * nn) * t1
            dr = (one - r) * r * (dn * ghn)
            ghp[b, j] = gz
            d[b, j] = dr
            d[b, hs + j] = dz
            d[b, 2 * hs + j] = dn
            dgh[b, j] = dr
            dgh[b, hs + j] = dz
            dgh[b, 2 * hs + j] = dn * r
