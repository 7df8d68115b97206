"""Finite-difference gradient check (host-side, float64)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..backend import get_backend


# ---------------------------------------------------------------------------------------- gradcheck
def gradcheck(
    fn: Callable[..., Tensor],
    *inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    backend: Any = None,
    seed: int = 0,
) -> bool:
    """Compare the autograd gradients of ``fn`` with central finite differences.

    Inputs become float64 Tensors that require grad. The output (any shape) is reduced to the scalar
    ``sum(fn(*inputs) * R)`` with a fixed random ``R``, so every output element is checked: its
    gradient by ``backward`` against central differences on every element of every input.

    Parameters
    ----------
    fn : callable
        Takes one Tensor per input and returns a Tensor.
    *inputs : array_like or Tensor
        Points at which to check the gradient (copied, converted to float64).
    eps, atol, rtol : float, default=1e-6, 1e-5, 1e-3
        Finite-difference step; an element passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
    backend : str or Backend, optional
        Where to run ``fn``; the current backend by default.
    seed : int, default=0
        Seed of the random output weights ``R``.

    Returns
    -------
    bool
        True when every element of every gradient matches; otherwise AssertionError names the input,
        its worst element, and the analytic and numeric values.

    Examples
    --------
    >>> import numpy as np
    >>> from minitrain import functional as F
    >>> from minitrain.testing import gradcheck
    >>> gradcheck(lambda x: F.tanh(x) * 2.0, np.linspace(-1.0, 1.0, 5))
    True
    """
    be = get_backend(backend)
    host = [np.array(x.numpy() if isinstance(x, Tensor) else x, dtype=np.float64) for x in inputs]
    leaves = [Tensor(be.asarray(h), requires_grad=True, backend=be) for h in host]
    out = fn(*leaves)
    if not isinstance(out, Tensor) or out.dtype.kind != "f":
        raise TypeError(f"gradcheck: fn must return a floating-point Tensor, got {out!r:.80}")
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    if out.requires_grad:
        F.sum(F.mul(out, Tensor(be.asarray(weights), backend=be))).backward()

    def value(arrays: list[np.ndarray]) -> float:
        with no_grad():
            y = fn(*[Tensor(be.asarray(a), backend=be) for a in arrays])
        return float(np.sum(np.asarray(y.numpy(), dtype=np.float64) * weights))

    probe = [h.copy() for h in host]
    for i, (t, h) in enumerate(zip(leaves, host)):
        a = np.zeros(h.shape) if t.grad is None else np.array(be.to_numpy(t.grad), dtype=np.float64)
        if a.shape != h.shape:
            raise AssertionError(f"gradcheck: gradient of input {i} has shape {a.shape}, expected {h.shape}")
        a, numeric, flat = a.reshape(-1), np.zeros(h.size), probe[i].reshape(-1)
        for j in range(h.size):
            x0 = flat[j]
            for sign in (1.0, -1.0):
                flat[j] = x0 + sign * eps
                numeric[j] += sign * value(probe) / (2.0 * eps)
            flat[j] = x0
        excess = np.nan_to_num(np.abs(a - numeric) - (atol + rtol * np.abs(numeric)), nan=np.inf)
        if (excess > 0).any():
            k = int(np.argmax(excess))
            where = tuple(int(w) for w in np.unravel_index(k, h.shape))
            raise AssertionError(
                f"gradcheck: gradient of input {i} (shape {h.shape}) is wrong at {int((excess > 0).sum())} of "
                f"{h.size} elements; worst at index {where}: analytic {a[k]:.10g}, numeric {numeric[k]:.10g} "
                f"(|diff| {abs(a[k] - numeric[k]):.3g} > atol {atol:g} + rtol {rtol:g} * |numeric|)"
            )
    return True
