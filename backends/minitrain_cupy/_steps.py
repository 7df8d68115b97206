"""Optimizer and recurrent-step kernels of the CuPy backend: one fused launch each.

An optimizer step runs over the flat parameter buffer in one kernel (the reference needs about ten array passes,
each a launch on a GPU); hyperparameters are rounded to the buffers' dtype by the launcher, as the reference's
in-place updates with Python scalars round them. The LSTM and GRU steps turn gate pre-activations into their
activations in place and produce the new state in the same launch; their backward kernels produce every gate's
gradient in one more.
"""

from __future__ import annotations

import math
from typing import Any

from ._common import cp, ok, same_shape


class StepsMixin:
    """CuPy overrides of the optimizer steps, gradient-norm clipping and the LSTM / GRU step kernels."""

    _launch: Any
    _dummy: Any

    def _flat(self, *arrays: Any) -> list[Any] | None:
        """Flat views of same-shaped C-contiguous CuPy arrays of one float dtype (None: a dummy), else None."""
        dt = ok(*arrays)
        if dt is None or not same_shape(arrays[0].shape, *arrays):
            return None
        return [self._dummy(dt) if a is None else a.reshape(-1) for a in arrays]

    # ------------------------------------------------------------------ optimizer steps
    def sgd_step(
        self,
        param: Any,
        grad: Any,
        buf: Any,
        *,
        lr: float,
        step: int,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        l1: float = 0.0,
    ) -> None:
        """SGD with momentum/Nesterov and L2/L1 penalties, in place over flat buffers (PyTorch's rule)."""
        flat = self._flat(param, grad, buf if momentum else None)
        if flat is None or (momentum and buf is None):
            return NotImplemented
        p, g, b = flat
        self._launch("sgd", p.dtype, p.size, p, g, b, p.size, lr, momentum, 1.0 - dampening, int(bool(nesterov)),
                     weight_decay, l1, int(step == 1))  # fmt: skip
        return None

    def adam_step(
        self,
        param: Any,
        grad: Any,
        exp_avg: Any,
        exp_avg_sq: Any,
        *,
        lr: float,
        step: int,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
        l1: float = 0.0,
    ) -> None:
        """Adam (``decoupled=True``: AdamW) in place over flat buffers, in one pass."""
        flat = self._flat(param, grad, exp_avg, exp_avg_sq)
        if flat is None:
            return NotImplemented
        p, g, m, v = flat
        step_size = lr / (1.0 - beta1**step)
        inv_sqrt_bias2 = 1.0 / math.sqrt(1.0 - beta2**step)
        decay = 1.0 - lr * weight_decay if decoupled and weight_decay else 1.0
        wd = 0.0 if decoupled else weight_decay
        self._launch("adam", p.dtype, p.size, p, g, m, v, p.size, beta1, beta2, eps, step_size, inv_sqrt_bias2, wd,
                     decay, l1)  # fmt: skip
        return None

    def rmsprop_step(
        self,
        param: Any,
        grad: Any,
        square_avg: Any,
        buf: Any,
        grad_avg: Any,
        *,
        lr: float,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        centered: bool = False,
        weight_decay: float = 0.0,
        l1: float = 0.0,
    ) -> None:
        """RMSprop (optionally centered, with momentum) in place; ``buf``/``grad_avg`` may be None."""
        flat = self._flat(param, grad, square_avg, buf if momentum else None, grad_avg if centered else None)
        if flat is None or (momentum and buf is None) or (centered and grad_avg is None):
            return NotImplemented
        p, g, sq, b, ga = flat
        self._launch("rmsprop", p.dtype, p.size, p, g, sq, b, ga, p.size, lr, alpha, eps, momentum,
                     int(bool(centered)), weight_decay, l1)  # fmt: skip
        return None

    def adagrad_step(
        self,
        param: Any,
        grad: Any,
        state_sum: Any,
        *,
        lr: float,
        step: int,
        lr_decay: float = 0.0,
        eps: float = 1e-10,
        weight_decay: float = 0.0,
        l1: float = 0.0,
    ) -> None:
        """Adagrad in place over flat buffers, in one pass."""
        flat = self._flat(param, grad, state_sum)
        if flat is None:
            return NotImplemented
        p, g, s = flat
        clr = lr / (1.0 + (step - 1) * lr_decay)
        self._launch("adagrad", p.dtype, p.size, p, g, s, p.size, clr, eps, weight_decay, l1)
        return None

    def clip_grad_norm(self, grad: Any, max_norm: float, *, norm_type: float = 2.0) -> float:
        """Scale ``grad`` in place so its norm is at most ``max_norm``; return the norm before.

        The norm is summed in double in one launch; returning it as a float reads it back (one value).
        """
        dt = ok(grad)
        if dt is None or norm_type not in (1.0, 2.0) or grad.size == 0:
            return NotImplemented
        out = cp().zeros(1, dtype="float64")
        self._launch("norm_sum", dt, grad.size, grad, out, grad.size, int(norm_type))
        total = float(out[0]) ** (1.0 / norm_type)
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            grad *= coef
        return total

    # ------------------------------------------------------------------ recurrent steps
    def lstm_step(self, gates: Any, c_prev: Any, *, out: Any = None, out_c: Any = None) -> tuple[Any, Any, Any]:
        """One LSTM step from pre-activations (B, 4H), gates i, f, g, o: ``(h, c, acts)``; may overwrite gates."""
        xpm = cp()
        dt = ok(gates, c_prev, out, out_c)
        if dt is None or c_prev.ndim != 2:
            return NotImplemented
        n, hs = c_prev.shape
        if gates.shape != (n, 4 * hs) or not same_shape((n, hs), out, out_c):
            return NotImplemented
        if any(a is not None and xpm.may_share_memory(a, gates) for a in (out, out_c)):
            return NotImplemented
        h = xpm.empty((n, hs), dt) if out is None else out
        c = xpm.empty((n, hs), dt) if out_c is None else out_c
        self._launch("lstm_step", dt, n * hs, gates, c_prev, h, c, n, hs)
        return h, c, gates

    def lstm_step_backward(
        self, grad_h: Any, grad_c: Any, acts: Any, c_prev: Any, c: Any, *, out: Any = None
    ) -> tuple[Any, Any]:
        """Gradients ``(grad_gates, grad_c_prev)`` of one LSTM step; ``out`` may be ``acts``, grad_c None."""
        xpm = cp()
        dt = ok(grad_h, grad_c, acts, c_prev, c, out)
        if dt is None or c.ndim != 2:
            return NotImplemented
        n, hs = c.shape
        if (
            acts.shape != (n, 4 * hs)
            or not same_shape(acts.shape, out)
            or not same_shape((n, hs), grad_h, grad_c, c_prev)
        ):
            return NotImplemented
        if out is not None and out is not acts and xpm.may_share_memory(out, acts):
            return NotImplemented
        d = xpm.empty(acts.shape, dt) if out is None else out
        grad_c_prev = xpm.empty((n, hs), dt)
        gc = c if grad_c is None else grad_c  # read only when given
        self._launch("lstm_step_backward", dt, n * hs, grad_h, gc, acts, c_prev, c, d, grad_c_prev, n, hs,
                     int(grad_c is not None))  # fmt: skip
        return d, grad_c_prev

    def gru_step(self, gi: Any, gh: Any, h_prev: Any, *, out: Any = None) -> tuple[Any, Any]:
        """One GRU step (gates r, z, n) from gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh: (h, acts); may overwrite gi."""
        xpm = cp()
        dt = ok(gi, gh, h_prev, out)
        if dt is None or h_prev.ndim != 2:
            return NotImplemented
        n, hs = h_prev.shape
        if gi.shape != (n, 3 * hs) or gh.shape != gi.shape or not same_shape((n, hs), out):
            return NotImplemented
        if out is not None and xpm.may_share_memory(out, gi):
            return NotImplemented
        h = xpm.empty((n, hs), dt) if out is None else out
        self._launch("gru_step", dt, n * hs, gi, gh, h_prev, h, n, hs)
        return h, gi

    def gru_step_backward(
        self, grad_h: Any, acts: Any, gh: Any, h_prev: Any, *, out: Any = None, out_gh: Any = None
    ) -> tuple[Any, Any, Any]:
        """Gradients ``(grad_gi, grad_gh, grad_h_prev)`` of one GRU step; ``out`` may be acts, ``out_gh`` gh."""
        xpm = cp()
        dt = ok(grad_h, acts, gh, h_prev, out, out_gh)
        if dt is None or h_prev.ndim != 2:
            return NotImplemented
        n, hs = h_prev.shape
        if grad_h.shape != (n, hs) or acts.shape != (n, 3 * hs) or not same_shape(acts.shape, gh, out, out_gh):
            return NotImplemented
        d = xpm.empty(acts.shape, dt) if out is None else out
        dgh = xpm.empty(acts.shape, dt) if out_gh is None else out_gh
        ghp = xpm.empty((n, hs), dt)
        self._launch("gru_step_backward", dt, n * hs, grad_h, acts, gh, h_prev, d, dgh, ghp, n, hs)
        return d, dgh, ghp
