"""Numba kernels of ``lstm_sequence`` / ``gru_sequence`` and their backward: a recurrent layer over every time step
in one compiled call (imported with numba, on first use; ``_recurrent`` checks the arguments).

Per step, one GEMM with the recurrent weights through NumPy's own BLAS (``_blas``: the OpenBLAS and thread pool of
``np.matmul``), accumulated onto the step's input projections (LSTM) or into a scratch row block (GRU), then one
fused pass over batch x hidden that adds the biases, applies the gates and writes the states; the reference runs
a Python loop of kernel calls with several passes each. The backward fuses the incoming gradient of each step's
output with the one carried from the next step, the gate gradients and the bias gradients (float64 sums) in one
pass per step, and carries the state gradient with one GEMM; GRU's direct path to the previous state is the
GEMM's accumulator. Sigmoids are ``1 / (1 + vexp(-x))`` and the LSTM's cell input ``tanh(g)`` is ``2 sigmoid(2 g)
- 1``, as in the reference; ``tanh`` of the cell state and of the GRU candidate is ``vtanh``. Per gate one row
view, as in ``_recurrent_kernels``, so LLVM can tell the arrays apart at run time and vectorizes the loops.

Every kernel works on the batch rows ``b0:b1`` only: batch rows never meet in a recurrence, so ``_recurrent`` can run
parts of the batch in threads (``nogil``), each with one-thread GEMMs and no join between steps.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._blas import gemm, register
from ._jit import FASTMATH, _njit
from ._vmath import vexp, vtanh

#: Whether NumPy's BLAS could be registered for compiled code (else the reference runs).
AVAILABLE = register()


@njit(inline="always")
def _add_row(acc: np.ndarray, row: np.ndarray) -> None:
    """acc += row (a float64 accumulator); a loop of its own, as the fused pass did not vectorize with it."""
    for k in range(row.shape[0]):
        acc[k] += row[k]


def _lstm_sequence(
    acts: np.ndarray, w_hh: np.ndarray, bias: np.ndarray, h: np.ndarray, c: np.ndarray, c0: np.ndarray, b0: int,
    b1: int,
) -> None:  # fmt: skip
    """acts (T, B, 4H) input projections -> activated gates; h[1:] and c from h[0], c0 and the recurrence."""
    steps, _, width = acts.shape
    hs = width // 4
    one, two = acts.dtype.type(1), acts.dtype.type(2)
    bi, bf, bg, bo = bias[:hs], bias[hs : 2 * hs], bias[2 * hs : 3 * hs], bias[3 * hs :]
    for t in range(steps):
        gt = acts[t]
        gemm(h[t][b0:b1], False, w_hh, True, gt[b0:b1], 1.0, 1.0)
        cprev = c0 if t == 0 else c[t - 1]
        ht, ct = h[t + 1], c[t]
        for b in range(b0, b1):
            gi, gf, gg, go = gt[b, :hs], gt[b, hs : 2 * hs], gt[b, 2 * hs : 3 * hs], gt[b, 3 * hs :]
            cp, hb, cb = cprev[b], ht[b], ct[b]
            for j in range(hs):
                i = one / (one + vexp(-(gi[j] + bi[j])))
                f = one / (one + vexp(-(gf[j] + bf[j])))
                g = two / (one + vexp(-two * (gg[j] + bg[j]))) - one
                o = one / (one + vexp(-(go[j] + bo[j])))
                cc = f * cp[j] + i * g
                gi[j], gf[j], gg[j], go[j] = i, f, g, o
                cb[j] = cc
                hb[j] = o * vtanh(cc)


def _lstm_sequence_backward(
    grad_h: np.ndarray, acts: np.ndarray, w_hh: np.ndarray, c0: np.ndarray, c: np.ndarray, d: np.ndarray,
    db: np.ndarray, dh: np.ndarray, gc: np.ndarray, need_h0: bool, b0: int, b1: int,
) -> None:  # fmt: skip
    """Gate gradients into d (may be acts), their sums into db (float64, zeroed), grad_h0 into dh (zeroed) and
    grad_c0 into gc (holding grad_c_T on entry)."""
    steps, _, hs = c.shape
    one = acts.dtype.type(1)
    for t in range(steps - 1, -1, -1):
        at, dt, ct, gt = acts[t], d[t], c[t], grad_h[t]
        cprev = c0 if t == 0 else c[t - 1]
        for b in range(b0, b1):
            ai, af, ag, ao = at[b, :hs], at[b, hs : 2 * hs], at[b, 2 * hs : 3 * hs], at[b, 3 * hs :]
            di, df, dg, do = dt[b, :hs], dt[b, hs : 2 * hs], dt[b, 2 * hs : 3 * hs], dt[b, 3 * hs :]
            gb, hb, cgb, cp, cb = gt[b], dh[b], gc[b], cprev[b], ct[b]
            for j in range(hs):
                i, f, g, o = ai[j], af[j], ag[j], ao[j]
                gh = gb[j] + hb[j]
                tc = vtanh(cb[j])
                dc = (one - tc * tc) * o * gh + cgb[j]
                cgb[j] = dc * f
                vi = (one - i) * g * (dc * i)
                vf = (one - f) * f * dc * cp[j]
                vg = (one - g * g) * (dc * i)
                vo = (one - o) * (tc * gh * o)
                di[j], df[j], dg[j], do[j] = vi, vf, vg, vo
            _add_row(db, dt[b])
        if t > 0 or need_h0:
            gemm(dt[b0:b1], False, w_hh, False, dh[b0:b1], 1.0, 0.0)


def _gru_sequence(
    acts: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray, h: np.ndarray, ghn: np.ndarray,
    gh: np.ndarray, b0: int, b1: int,
) -> None:  # fmt: skip
    """acts (T, B, 3H) input projections -> activated gates; h[1:] from h[0]; ghn = h W_hn^T + b_hn per step; gh
    (B, 3H) scratch."""
    steps, _, width = acts.shape
    hs = width // 3
    one = acts.dtype.type(1)
    bir, biz, bin_ = b_ih[:hs], b_ih[hs : 2 * hs], b_ih[2 * hs :]
    bhr, bhz, bhn = b_hh[:hs], b_hh[hs : 2 * hs], b_hh[2 * hs :]
    for t in range(steps):
        gemm(h[t][b0:b1], False, w_hh, True, gh[b0:b1], 1.0, 0.0)
        gt, hp_t, ht, gn_t = acts[t], h[t], h[t + 1], ghn[t]
        for b in range(b0, b1):
            ar, az, an = gt[b, :hs], gt[b, hs : 2 * hs], gt[b, 2 * hs :]
            hr, hz, hn = gh[b, :hs], gh[b, hs : 2 * hs], gh[b, 2 * hs :]
            hp, hb, gnb = hp_t[b], ht[b], gn_t[b]
            for j in range(hs):
                r = one / (one + vexp(-((ar[j] + bir[j]) + (hr[j] + bhr[j]))))
                z = one / (one + vexp(-((az[j] + biz[j]) + (hz[j] + bhz[j]))))
                vn = hn[j] + bhn[j]
                nn = vtanh((an[j] + bin_[j]) + r * vn)
                ar[j], az[j], an[j] = r, z, nn
                gnb[j] = vn
                hb[j] = (hp[j] - nn) * z + nn


def _gru_sequence_backward(
    grad_h: np.ndarray, acts: np.ndarray, ghn: np.ndarray, w_hh: np.ndarray, h: np.ndarray, d: np.ndarray,
    dgh: np.ndarray, db_ih: np.ndarray, db_hh: np.ndarray, dh: np.ndarray, dh_next: np.ndarray, need_h0: bool,
    b0: int, b1: int,
) -> bool:  # fmt: skip
    """Gradients wrt the input projections (into d, may be acts), h W_hh^T + b_hh (into dgh) and the biases (float64
    sums, zeroed); returns whether dh_next (else dh, zeroed) holds grad_h0."""
    steps, _, width = acts.shape
    hs = width // 3
    one = acts.dtype.type(1)
    for t in range(steps - 1, -1, -1):
        at, dt, dgt, gn_t, hp_t, gt = acts[t], d[t], dgh[t], ghn[t], h[t], grad_h[t]
        for b in range(b0, b1):
            ar, az, an = at[b, :hs], at[b, hs : 2 * hs], at[b, 2 * hs :]
            dr_, dz_, dn_ = dt[b, :hs], dt[b, hs : 2 * hs], dt[b, 2 * hs :]
            hr_, hz_, hn_ = dgt[b, :hs], dgt[b, hs : 2 * hs], dgt[b, 2 * hs :]
            gb, hb, nb, hp, gnb = gt[b], dh[b], dh_next[b], hp_t[b], gn_t[b]
            for j in range(hs):
                r, z, nn = ar[j], az[j], an[j]
                g = gb[j] + hb[j]
                gz = g * z
                t1 = g - gz
                t2 = (hp[j] - nn) * g * z
                vz = (one - z) * t2
                vn = (one - nn * nn) * t1
                vr = (one - r) * r * (vn * gnb[j])
                vhn = vn * r
                nb[j] = gz
                dr_[j], dz_[j], dn_[j] = vr, vz, vn
                hr_[j], hz_[j], hn_[j] = vr, vz, vhn
            _add_row(db_ih, dt[b])
            _add_row(db_hh, dgt[b])
        if t > 0 or need_h0:
            gemm(dgt[b0:b1], False, w_hh, False, dh_next[b0:b1], 1.0, 1.0)
        dh, dh_next = dh_next, dh
    return steps % 2 == 1


_OPTIONS = {"error_model": "numpy", "fastmath": set(FASTMATH), "nogil": True}
lstm_sequence = _njit(_lstm_sequence, **_OPTIONS)
lstm_sequence_backward = _njit(_lstm_sequence_backward, **_OPTIONS)
gru_sequence = _njit(_gru_sequence, **_OPTIONS)
gru_sequence_backward = _njit(_gru_sequence_backward, **_OPTIONS)
