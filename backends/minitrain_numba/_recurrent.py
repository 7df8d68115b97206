"""``RecurrentMixin``: Numba overrides of the LSTM and GRU steps and their backward (kernels in ``_recurrent_kernels``).

Each kernel is one fused loop over batch x hidden: it reads one unit's gates, keeps every intermediate in
registers and writes each result once, instead of the NumPy reference's passes over temporaries; sigmoid
and tanh come from ``_vmath``, which LLVM vectorizes. It reads each unit's inputs before writing its
outputs, so the aliasing the reference allows (activations over the pre-activations, ``out=acts``,
``out_gh=gh``, ``out_c=c_prev``) is safe. Arrays other than C-contiguous float32/float64 of one dtype and
the expected shapes return ``NotImplemented``: the reference runs (non-contiguous pre-activations are copied
first, as there).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._util import _dtype, _load


def _ok(*arrays: Any) -> np.dtype | None:
    """The common float32/float64 dtype of C-contiguous 2-D NumPy arrays (None entries skipped), else None."""
    if any(a is not None and (type(a) is not np.ndarray or a.ndim != 2 or not a.flags.c_contiguous) for a in arrays):
        return None
    return _dtype(*arrays)


def _writable(*arrays: Any) -> bool:
    return all(a is None or a.flags.writeable for a in arrays)


def _rk() -> Any:
    """The recurrent kernels (imported, with numba, on first use)."""
    return _load("_recurrent_kernels")


def _contiguous(a: Any) -> Any:
    """``a`` itself when it is a C-contiguous NumPy array, else a C-contiguous copy (None if not an ndarray)."""
    if type(a) is not np.ndarray:
        return None
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


class RecurrentMixin:
    """Numba overrides of the LSTM and GRU step kernels (``NotImplemented``: the NumPy reference runs)."""

    def lstm_step(self, gates: Any, c_prev: Any, *, out: Any = None, out_c: Any = None) -> tuple[Any, Any, Any]:
        """One LSTM step from pre-activations (B, 4H), gates i, f, g, o: ``(h, c, acts)``; may overwrite gates."""
        acts = _contiguous(gates)
        dt = None if acts is None else _ok(acts, c_prev, out, out_c)
        n, hs = c_prev.shape if dt is not None else (0, 0)
        if dt is None or acts.shape != (n, 4 * hs) or any(a is not None and a.shape != (n, hs) for a in (out, out_c)):
            return NotImplemented
        if not _writable(acts, out, out_c) or any(a is not None and np.may_share_memory(a, acts) for a in (out, out_c)):
            return NotImplemented
        h = np.empty((n, hs), dt) if out is None else out
        c = np.empty((n, hs), dt) if out_c is None else out_c
        _rk().lstm_step(acts.size, acts, c_prev, h, c)
        return h, c, acts

    def lstm_step_backward(
        self, grad_h: Any, grad_c: Any, acts: Any, c_prev: Any, c: Any, *, out: Any = None
    ) -> tuple[Any, Any]:
        """Gradients ``(grad_gates, grad_c_prev)`` of one LSTM step; ``out`` may be ``acts``, grad_c None."""
        dt = _ok(grad_h, grad_c, acts, c_prev, c, out)
        n, hs = c.shape if dt is not None else (0, 0)
        shapes_ok = dt is not None and acts.shape == (n, 4 * hs) and (out is None or out.shape == acts.shape)
        if not shapes_ok or any(a is not None and a.shape != (n, hs) for a in (grad_h, grad_c, c_prev)):
            return NotImplemented
        inplace = out is acts
        if not _writable(out) or (out is not None and not inplace and np.may_share_memory(out, acts)):
            return NotImplemented
        d = np.empty(acts.shape, dt) if out is None else out
        grad_c_prev = np.empty((n, hs), dt)
        gc = grad_c if grad_c is not None else c  # read only when given
        _rk().LSTM_STEP_BACKWARD[inplace, grad_c is not None](acts.size, grad_h, gc, acts, c_prev, c, d, grad_c_prev)
        return d, grad_c_prev

    def gru_step(self, gi: Any, gh: Any, h_prev: Any, *, out: Any = None) -> tuple[Any, Any]:
        """One GRU step (gates r, z, n) from gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh: (h, acts); may overwrite gi."""
        acts = _contiguous(gi)
        dt = None if acts is None else _ok(acts, gh, h_prev, out)
        n, hs = h_prev.shape if dt is not None else (0, 0)
        if (
            dt is None
            or acts.shape != (n, 3 * hs)
            or gh.shape != acts.shape
            or (out is not None and out.shape != (n, hs))
        ):
            return NotImplemented
        if not _writable(acts, out) or (out is not None and np.may_share_memory(out, acts)):
            return NotImplemented
        h = np.empty((n, hs), dt) if out is None else out
        _rk().gru_step(acts.size, acts, gh, h_prev, h)
        return h, acts

    def gru_step_backward(
        self, grad_h: Any, acts: Any, gh: Any, h_prev: Any, *, out: Any = None, out_gh: Any = None
    ) -> tuple[Any, Any, Any]:
        """Gradients ``(grad_gi, grad_gh, grad_h_prev)`` of one GRU step; ``out`` may be acts, ``out_gh`` gh."""
        dt = _ok(grad_h, acts, gh, h_prev, out, out_gh)
        if dt is None or not _writable(out, out_gh):
            return NotImplemented
        n, hs = h_prev.shape
        bad = grad_h.shape != (n, hs) or acts.shape != (n, 3 * hs) or gh.shape != acts.shape
        if bad or any(a is not None and a.shape != acts.shape for a in (out, out_gh)):
            return NotImplemented
        d = np.empty(acts.shape, dt) if out is None else out
        dgh = np.empty(acts.shape, dt) if out_gh is None else out_gh
        ghp = np.empty((n, hs), dt)
        _rk().gru_step_backward(acts.size, grad_h, acts, gh, h_prev, d, dgh, ghp)
        return d, dgh, ghp
