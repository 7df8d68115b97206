"""``RecurrentMixin``: Numba overrides of the LSTM and GRU steps and their backward (kernels in ``_recurrent_kernels``),
and of the layers over a whole sequence (``lstm_sequence``, ``gru_sequence`` and their backward: one compiled call
each, kernels in ``_recurrent_seq_kernels``).

Each kernel is one fused loop over batch x hidden: it reads one unit's gates, keeps every intermediate in
registers and writes each result once, instead of the NumPy reference's passes over temporaries; sigmoid
and tanh come from ``_vmath``, which LLVM vectorizes. It reads each unit's inputs before writing its
outputs, so the aliasing the reference allows (activations over the pre-activations, ``out=acts``,
``out_gh=gh``, ``out_c=c_prev``) is safe. Arrays other than C-contiguous float32/float64 of one dtype and
the expected shapes return ``NotImplemented``: the reference runs (non-contiguous pre-activations are copied
first, as there). The sequence kernels copy non-contiguous inputs and return ``NotImplemented`` for other dtypes,
an empty sequence, batch or state, an ``out`` that overlaps an input, and where NumPy's BLAS cannot be called
from compiled code (``_blas``); the reference then runs the steps above in a loop.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._util import _constant, _dtype, _load


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


def _seq() -> Any:
    """The sequence kernels (imported, with numba, on first use)."""
    return _load("_recurrent_seq_kernels")


def _split_min_macs() -> int | None:
    """``MINITRAIN_NUMBA_SPLIT_MACS`` as a number of multiply-adds (unset or empty: None, the split off)."""
    value = os.environ.get("MINITRAIN_NUMBA_SPLIT_MACS", "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ValueError(f"MINITRAIN_NUMBA_SPLIT_MACS must be a whole number of multiply-adds, got {value!r}")
    return int(value)


#: Multiply-adds of a sequence kernel's recurrent GEMMs (steps * batch * gates * hidden**2) from which its batch is
#: split over threads (``_split``: one part per BLAS thread, each with one-thread GEMMs, one join per call); None: off.
#: Off by default: the split wins where other jobs keep the cores busy and loses on a quiet machine (measured in
#: docs/performance.md). Set it, or ``MINITRAIN_NUMBA_SPLIT_MACS`` (e.g. 4194304), on a machine shared with others.
SPLIT_MIN_MACS: int | None = _split_min_macs()


def _split(fn: Any, n: int, macs: int) -> list[Any]:
    """``[fn(b0, b1)]`` over parts of the batch ``range(n)``: one call, or one part per thread."""
    if SPLIT_MIN_MACS is None or macs < SPLIT_MIN_MACS:
        return [fn(0, n)]
    split = _load("_split")
    k = split.parts(n, max(macs, split.SPLIT_MIN_MACS))
    return [fn(0, n)] if k == 1 else split.run(fn, n, k)


def _c(a: Any) -> Any:
    """``a`` as a C-contiguous array (itself when it is one; None stays None)."""
    return a if a is None or a.flags.c_contiguous else np.ascontiguousarray(a)


def _fits(out: Any, shape: tuple[int, ...], *inputs: Any) -> bool:
    """Whether ``out`` (None: allocate) can take a sequence kernel's result: shape, writable, no shared memory."""
    if out is None:
        return True
    if type(out) is not np.ndarray or out.shape != shape or not out.flags.c_contiguous or not out.flags.writeable:
        return False
    return not any(a is not None and np.may_share_memory(out, a) for a in inputs)


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

    # ------------------------------------------------------------------ whole sequences
    def lstm_sequence(
        self, gates: Any, w_hh: Any, bias: Any, h0: Any, c0: Any, *, out: Any = None, out_c: Any = None
    ) -> tuple[Any, Any, Any]:
        """An LSTM layer from input projections (T, B, 4H) plus bias: ``(h, c, acts)``; may overwrite gates."""
        acts = _contiguous(gates)
        dt = None if acts is None or acts.ndim != 3 else _dtype(acts, w_hh, bias, h0, c0, out, out_c)
        steps, n, width = acts.shape if dt is not None else (0, 0, 0)
        hs = width // 4
        if not (steps and n and hs) or width != 4 * hs or not acts.flags.writeable or not _seq().AVAILABLE:
            return NotImplemented
        if w_hh.shape != (width, hs) or (bias is not None and bias.shape != (width,)):
            return NotImplemented
        if any(s is not None and s.shape != (n, hs) for s in (h0, c0)) or not _fits(out, (steps + 1, n, hs), acts):
            return NotImplemented
        if not _fits(out_c, (steps, n, hs), acts, w_hh, bias, h0, c0, out):
            return NotImplemented
        h = np.empty((steps + 1, n, hs), dt) if out is None else out
        h[0] = 0 if h0 is None else h0
        c = np.empty((steps, n, hs), dt) if out_c is None else out_c
        c_init = np.zeros((n, hs), dt) if c0 is None else _c(c0)
        b, w, kern = _constant(width, dt, 0.0) if bias is None else _c(bias), _c(w_hh), _seq().lstm_sequence
        _split(lambda b0, b1: kern(acts, w, b, h, c, c_init, b0, b1), n, steps * n * width * hs)
        return h, c, acts

    def lstm_sequence_backward(
        self, grad_h: Any, grad_c: Any, acts: Any, w_hh: Any, c0: Any, c: Any, *, out: Any = None, need_h0: bool = True
    ) -> tuple[Any, Any, Any, Any]:
        """Gradients ``(grad_gates, grad_bias, grad_h0, grad_c0)`` of ``lstm_sequence``; ``out`` may be ``acts``."""
        dt = _dtype(grad_h, grad_c, acts, w_hh, c0, c, out)
        steps, n, hs = c.shape if dt is not None and c.ndim == 3 else (0, 0, 0)
        width = 4 * hs
        if not (steps and n and hs) or not _seq().AVAILABLE or w_hh.shape != (width, hs):
            return NotImplemented
        if grad_h.shape != c.shape or acts.shape != (steps, n, width):
            return NotImplemented
        if any(s is not None and s.shape != (n, hs) for s in (grad_c, c0)):
            return NotImplemented
        if out is acts:
            if not acts.flags.c_contiguous or not acts.flags.writeable:
                return NotImplemented
        elif not _fits(out, acts.shape, grad_h, grad_c, acts, w_hh, c0, c):
            return NotImplemented
        a = _c(acts)
        d = np.empty(a.shape, dt) if out is None else out
        gc = np.zeros((n, hs), dt) if grad_c is None else np.array(grad_c, dtype=dt, order="C", copy=True)
        dh = np.zeros((n, hs), dt)
        c_init = np.zeros((n, hs), dt) if c0 is None else _c(c0)
        args, kern = (_c(grad_h), a, _c(w_hh), c_init, _c(c), d), _seq().lstm_sequence_backward

        def part(b0: int, b1: int) -> np.ndarray:
            db = np.zeros(width, np.float64)
            kern(*args, db, dh, gc, bool(need_h0), b0, b1)
            return db

        db = sum(_split(part, n, steps * n * width * hs))
        return d, db.astype(dt), dh if need_h0 else None, gc

    def gru_sequence(
        self, gi: Any, w_hh: Any, b_ih: Any, b_hh: Any, h0: Any, *, out: Any = None, out_gh_n: Any = None
    ) -> tuple[Any, Any, Any]:
        """A GRU layer from input projections (T, B, 3H) and biases: ``(h, acts, gh_n)``; may overwrite gi."""
        acts = _contiguous(gi)
        dt = None if acts is None or acts.ndim != 3 else _dtype(acts, w_hh, b_ih, b_hh, h0, out, out_gh_n)
        steps, n, width = acts.shape if dt is not None else (0, 0, 0)
        hs = width // 3
        if not (steps and n and hs) or width != 3 * hs or not acts.flags.writeable or not _seq().AVAILABLE:
            return NotImplemented
        if w_hh.shape != (width, hs) or any(b is not None and b.shape != (width,) for b in (b_ih, b_hh)):
            return NotImplemented
        if (h0 is not None and h0.shape != (n, hs)) or not _fits(out, (steps + 1, n, hs), acts):
            return NotImplemented
        if not _fits(out_gh_n, (steps, n, hs), acts, w_hh, b_ih, b_hh, h0, out):
            return NotImplemented
        h = np.empty((steps + 1, n, hs), dt) if out is None else out
        h[0] = 0 if h0 is None else h0
        ghn = np.empty((steps, n, hs), dt) if out_gh_n is None else out_gh_n
        bi, bh = (_constant(width, dt, 0.0) if b is None else _c(b) for b in (b_ih, b_hh))
        w, gh, kern = _c(w_hh), np.empty((n, width), dt), _seq().gru_sequence
        _split(lambda b0, b1: kern(acts, w, bi, bh, h, ghn, gh, b0, b1), n, steps * n * width * hs)
        return h, acts, ghn

    def gru_sequence_backward(
        self,
        grad_h: Any,
        acts: Any,
        gh_n: Any,
        w_hh: Any,
        h: Any,
        *,
        out: Any = None,
        out_gh: Any = None,
        need_h0: bool = True,
    ) -> tuple[Any, Any, Any, Any, Any]:
        """Gradients ``(grad_gi, grad_gh, grad_b_ih, grad_b_hh, grad_h0)`` of ``gru_sequence``; ``out`` may be acts."""
        dt = _dtype(grad_h, acts, gh_n, w_hh, h, out, out_gh)
        steps, n, width = acts.shape if dt is not None and acts.ndim == 3 else (0, 0, 0)
        hs = width // 3
        if not (steps and n and hs) or width != 3 * hs or not _seq().AVAILABLE or w_hh.shape != (width, hs):
            return NotImplemented
        if grad_h.shape != (steps, n, hs) or gh_n.shape != grad_h.shape or h.shape != (steps + 1, n, hs):
            return NotImplemented
        if out is acts:
            if not acts.flags.c_contiguous or not acts.flags.writeable:
                return NotImplemented
        elif not _fits(out, acts.shape, grad_h, acts, gh_n, w_hh, h):
            return NotImplemented
        if not _fits(out_gh, acts.shape, grad_h, acts, gh_n, w_hh, h, out):
            return NotImplemented
        a = _c(acts)
        d = np.empty(a.shape, dt) if out is None else out
        dgh = np.empty(a.shape, dt) if out_gh is None else out_gh
        dh, dh_next = np.zeros((n, hs), dt), np.empty((n, hs), dt)
        args, kern = (_c(grad_h), a, _c(gh_n), _c(w_hh), _c(h), d, dgh), _seq().gru_sequence_backward

        def part(b0: int, b1: int) -> np.ndarray:
            db = np.zeros((2, width), np.float64)
            kern(*args, db[0], db[1], dh, dh_next, bool(need_h0), b0, b1)
            return db

        db = sum(_split(part, n, steps * n * width * hs)).astype(dt)
        grad_h0 = dh_next if steps % 2 else dh  # the kernel swaps the two buffers once per step
        return d, dgh, db[0], db[1], grad_h0 if need_h0 else None
