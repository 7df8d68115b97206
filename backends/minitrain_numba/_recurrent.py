"""``RecurrentMixin``: the Numba override of the GRU step's backward (its kernel is in ``_kernels.py``).

The kernel is one fused loop over batch x hidden: it reads one unit's activations, keeps every
intermediate in registers and writes each result once, instead of the NumPy reference's passes over
temporaries (29 us against 105 us per call at batch 64, hidden 128, float32). It reads each unit's
inputs before writing its outputs, so the aliasing the reference allows (``out=acts``, ``out_gh=gh``) is
safe. Arrays other than C-contiguous float32/float64 of one dtype and the expected shapes go to the
reference.

The forward steps and the LSTM backward stay on the reference: they need exp/tanh per element, which
NumPy computes with SIMD while Numba without Intel's SVML (not available here) calls libm per element;
fused Numba versions measured 1.7-2.4x slower than the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _ok(*arrays: Any) -> np.dtype | None:
    """The common float32/float64 dtype of C-contiguous 2-D NumPy arrays (None entries skipped), else None."""
    from . import _dtype  # the package's rule; imported here, as the package imports this module

    if any(a is not None and (type(a) is not np.ndarray or a.ndim != 2 or not a.flags.c_contiguous) for a in arrays):
        return None
    return _dtype(*arrays)


def _writable(*arrays: Any) -> bool:
    return all(a is None or a.flags.writeable for a in arrays)


class RecurrentMixin:
    """Numba override of ``gru_step_backward``; the NumPy reference (``super()``) for anything else."""

    def gru_step_backward(
        self, grad_h: Any, acts: Any, gh: Any, h_prev: Any, *, out: Any = None, out_gh: Any = None
    ) -> tuple[Any, Any, Any]:
        """Gradients ``(grad_gi, grad_gh, grad_h_prev)`` of one GRU step; ``out`` may be acts, ``out_gh`` gh."""
        dt = _ok(grad_h, acts, gh, h_prev, out, out_gh)
        if dt is None or not _writable(out, out_gh):
            return super().gru_step_backward(grad_h, acts, gh, h_prev, out=out, out_gh=out_gh)  # type: ignore[misc]
        n, hs = h_prev.shape
        bad = grad_h.shape != (n, hs) or acts.shape != (n, 3 * hs) or gh.shape != acts.shape
        if bad or any(a is not None and a.shape != acts.shape for a in (out, out_gh)):
            return super().gru_step_backward(grad_h, acts, gh, h_prev, out=out, out_gh=out_gh)  # type: ignore[misc]
        d = np.empty(acts.shape, dt) if out is None else out
        dgh = np.empty(acts.shape, dt) if out_gh is None else out_gh
        ghp = np.empty((n, hs), dt)
        from . import _k  # the package's lazy import of the kernels (and of numba)

        _k().gru_step_backward(acts.size, grad_h, acts, gh, h_prev, d, dgh, ghp)
        return d, dgh, ghp
