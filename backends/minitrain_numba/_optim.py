"""Numba kernels of the optimizer steps: one loop over the whole flat parameter buffer each.

Hyperparameters arrive as Python floats and are rounded to the buffers' dtype inside the kernel, as the
NumPy reference's in-place updates with Python scalars do; the update follows the reference's order of
operations, so results match it to float rounding. Optional state buffers that an option leaves unused
are passed as empty arrays.

State that decays geometrically (momentum, Adam's moments, RMSprop's averages) is flushed to zero once it falls
below the dtype's smallest normal number (``np.finfo(dtype).tiny``), as a CPU in flush-to-zero mode stores it.
Without that, the state of a weight whose gradient became zero for good (a ReLU unit that died during training;
a gradient zero from the start leaves the state exactly 0) decays into the subnormal range and stays there: ``4
* 2**-149 * 0.9`` rounds back to itself, so Adam's first moment never reaches zero. Arithmetic on subnormals
takes a microcode assist on Intel cores, which made such an Adam step many times slower than with the flush,
while without subnormals both take the same time (see docs/performance.md). The flush changes a state value by
less than ``tiny`` (1.2e-38 in float32) and leaves NaN and infinities as they are; the NumPy reference keeps
subnormals, so the two agree to that absolute tolerance.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._jit import kernel


@njit(inline="always")
def _ftz(x: float, tiny: float) -> float:
    """``x``, or zero where ``|x|`` is below ``tiny`` (a subnormal); NaN stays NaN (the comparison is False)."""
    return x - x if abs(x) < tiny else x


@kernel
def sgd(
    p: np.ndarray,
    g: np.ndarray,
    buf: np.ndarray,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    l1: float,
    first: bool,
) -> None:
    """SGD with momentum/Nesterov and L2/L1 penalties, in place (PyTorch's rule)."""
    t = p.dtype.type
    lr_, mom, damp, wd, l1_ = t(lr), t(momentum), t(1.0 - dampening), t(weight_decay), t(l1)
    tiny = t(np.finfo(p.dtype).tiny)
    for i in prange(p.size):
        pi = p[i]
        gi = g[i]
        if weight_decay != 0.0:
            gi = gi + wd * pi
        if l1 != 0.0:
            gi = gi + l1_ * np.sign(pi)
        if momentum != 0.0:
            b = gi if first else _ftz(buf[i] * mom + damp * gi, tiny)
            buf[i] = b
            gi = gi + mom * b if nesterov else b
        p[i] = pi - lr_ * gi


@kernel
def adam(
    p: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    beta1: float,
    beta2: float,
    eps: float,
    step_size: float,
    inv_sqrt_bias2: float,
    weight_decay: float,
    decay: float,
    l1: float,
) -> None:
    """Adam in place; ``decay`` (AdamW's 1 - lr * wd) scales p first, ``weight_decay`` is the L2 penalty."""
    t = p.dtype.type
    b1, b2, ob1, ob2 = t(beta1), t(beta2), t(1.0 - beta1), t(1.0 - beta2)
    eps_, c1, c2, wd, dec, l1_ = t(eps), t(step_size), t(inv_sqrt_bias2), t(weight_decay), t(decay), t(l1)
    tiny = t(np.finfo(p.dtype).tiny)
    for i in prange(p.size):
        pi = p[i]
        if decay != 1.0:
            pi = pi * dec
        gi = g[i]
        if weight_decay != 0.0:
            gi = gi + wd * pi
        if l1 != 0.0:
            gi = gi + l1_ * np.sign(pi)
        mi = _ftz(m[i] * b1 + ob1 * gi, tiny)
        vi = _ftz(v[i] * b2 + ob2 * (gi * gi), tiny)
        m[i] = mi
        v[i] = vi
        p[i] = pi - c1 * mi / (np.sqrt(vi) * c2 + eps_)


@kernel
def rmsprop(
    p: np.ndarray,
    g: np.ndarray,
    sq: np.ndarray,
    buf: np.ndarray,
    gavg: np.ndarray,
    lr: float,
    alpha: float,
    eps: float,
    momentum: float,
    centered: bool,
    weight_decay: float,
    l1: float,
) -> None:
    """RMSprop (optionally centered, with momentum) in place."""
    t = p.dtype.type
    lr_, a, oa, eps_, mom, wd, l1_ = t(lr), t(alpha), t(1.0 - alpha), t(eps), t(momentum), t(weight_decay), t(l1)
    tiny = t(np.finfo(p.dtype).tiny)
    if not centered and momentum == 0.0:  # the common case as a branch-free loop: the parallel build vectorizes it
        for i in prange(p.size):
            gi = g[i] + wd * p[i] + l1_ * np.sign(p[i]) if weight_decay != 0.0 or l1 != 0.0 else g[i]
            s = _ftz(sq[i] * a + oa * (gi * gi), tiny)
            sq[i] = s
            p[i] = p[i] - lr_ * (gi / (np.sqrt(s) + eps_))
        return
    for i in prange(p.size):
        pi = p[i]
        gi = g[i]
        if weight_decay != 0.0:
            gi = gi + wd * pi
        if l1 != 0.0:
            gi = gi + l1_ * np.sign(pi)
        s = _ftz(sq[i] * a + oa * (gi * gi), tiny)
        sq[i] = s
        if centered:
            ga = _ftz(gavg[i] * a + oa * gi, tiny)
            gavg[i] = ga
            avg = np.sqrt(s - ga * ga) + eps_
        else:
            avg = np.sqrt(s) + eps_
        if momentum != 0.0:
            b = _ftz(buf[i] * mom + gi / avg, tiny)
            buf[i] = b
            p[i] = pi - lr_ * b
        else:
            p[i] = pi - lr_ * (gi / avg)


@kernel
def adagrad(
    p: np.ndarray, g: np.ndarray, state_sum: np.ndarray, clr: float, eps: float, weight_decay: float, l1: float
) -> None:
    """Adagrad in place, with the decayed learning rate ``clr``."""
    t = p.dtype.type
    clr_, eps_, wd, l1_ = t(clr), t(eps), t(weight_decay), t(l1)
    for i in prange(p.size):
        pi = p[i]
        gi = g[i]
        if weight_decay != 0.0:
            gi = gi + wd * pi
        if l1 != 0.0:
            gi = gi + l1_ * np.sign(pi)
        s = state_sum[i] + gi * gi
        state_sum[i] = s
        p[i] = pi - clr_ * gi / (np.sqrt(s) + eps_)


@kernel(fastmath={"reassoc", "contract"})
def norm_power_sum(g: np.ndarray, norm_type: float) -> float:
    """Sum of |g| (norm_type 1) or of g * g (norm_type 2) in float64; the order of the sum is free."""
    total = 0.0
    if norm_type == 1.0:
        for i in prange(g.size):
            total += abs(np.float64(g[i]))
    else:
        for i in prange(g.size):
            v = np.float64(g[i])
            total += v * v
    return total
