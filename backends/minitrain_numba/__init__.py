"""Numba backend plugin, registered as ``numba``: JIT-compiled CPU kernels over NumPy arrays.

Importing this module is cheap: numba and the kernels are imported on the first kernel call. Kernels
run on C-contiguous float32/float64 arrays; other dtypes and layouts are copied or handled by the NumPy
reference (``Backend``). How kernels are compiled and threaded (serial for small work, ``parallel=True``
for large) is described in ``_jit``.

GEMMs run on NumPy's BLAS: the GEMM writes the layer output and one in-place pass adds the bias and applies
the activation. Compiled code that needs GEMMs (the ``mlp_loss_grad`` extension, in ``_mlp``) calls the very
OpenBLAS functions ``np.matmul`` calls (``_blas``), never SciPy's BLAS bindings: SciPy loads a second OpenBLAS
whose idle threads spin against NumPy's (see docs/performance.md).

Allocation: kernels write into ``out=`` buffers where given, build results in place (the dropout mask in the
random draws' buffer, the bias and activation in the GEMM output), and read cached constant vectors (a missing
bias, unit class weights); the arrays a step hands to the graph are new each step, which NumPy's allocator
serves from the blocks the previous step freed, so a buffer pool would not pay for its hazards.

Each override returns ``NotImplemented`` for arguments its compiled code does not take (other dtypes or
array types, shapes it does not handle); the NumPy reference (``Backend``) then runs with the same arguments.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from minitrain.backend.base import NEEDS_PREACTIVATION, Backend, canonical_activation

from ._conv import ConvMixin
from ._recurrent import RecurrentMixin
from ._util import _FLOATS, _constant, _dtype, _finish, _flat_in, _flat_out, _load, _order, _vector


def _k() -> ModuleType:
    """The layer kernels."""
    return _load("_kernels")


def _o() -> ModuleType:
    """The optimizer kernels."""
    return _load("_optim")


class NumbaBackend(ConvMixin, RecurrentMixin, Backend):
    """JIT-compiled CPU kernels; the NumPy reference for everything it does not override.

    Overrides the fused activation kernels and their backward (with the bias gradient), the losses, dropout,
    batchnorm, the optimizer steps, (from ``ConvMixin``) convolution im2col / col2im and max / average pooling,
    and (from ``RecurrentMixin``) the LSTM and GRU steps and their backward with single-pass Numba loops; offers
    the extension ``mlp_loss_grad``, a dense stack's whole training batch in one compiled call (``_mlp``).
    Arrays are NumPy arrays, so data moves to and from this backend for free.

    Examples
    --------
    >>> import minitrain as mt
    >>> be = mt.get_backend("numba")
    >>> be.act(be.asarray([-1.0, 2.0]), "relu")
    array([0., 2.])
    """

    name = "numba"
    extensions: ClassVar[dict[str, Any]] = {
        "mlp_loss_grad": "minitrain_numba._mlp:mlp_loss_grad",
        "jit_cache_dir": "minitrain_numba._cache:cache_root",  # where the kernels are cached (minitrain backends)
    }

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        """Whether numba can be imported, with the reason when not."""
        try:
            import numba  # noqa: F401
        except ModuleNotFoundError as exc:
            return False, f"numba is not installed ({exc}); pip install numba"
        except Exception as exc:  # a broken install (a mismatched llvmlite raises OSError)
            return False, f"numba cannot be imported ({type(exc).__name__}: {exc}); pip install --force-reinstall numba"
        return True, ""

    # ------------------------------------------------------------------ activations
    def act(self, z: Any, activation: str = "identity", *, alpha: float = 0.01, out: Any = None) -> Any:
        """Apply an activation elementwise, into ``out`` (which may be ``z``) if given."""
        name = canonical_activation(activation)
        dt = _dtype(z, out)
        if dt is None or name == "identity" or (out is not None and out.shape != z.shape):
            return NotImplemented
        order = _order(z)
        zf = _flat_in(z, order)
        result, of, temp = _flat_out(out, z.shape, dt, order)
        _k().activation_kernel("act", _k().CODES[name])(zf.size, zf, of, float(alpha))
        return _finish(result, of, temp, order)

    def affine_act(
        self, x: Any, w: Any, b: Any, activation: str = "identity", *, alpha: float = 0.01, out: Any = None
    ) -> tuple[Any, Any]:
        """``act(x @ w.T + b)`` for ``w`` of shape (out, in); returns ``(y, z)``.

        The GEMM writes into ``out`` (or a new array) and one pass adds the bias and applies the
        activation in place; ``z`` is the pre-activation when the activation's backward needs it, else None.
        """
        name = canonical_activation(activation)
        dt = _dtype(x, w, b, out)
        if dt is None or x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
            return NotImplemented
        n, o = x.shape[0], w.shape[0]
        bias = _vector(b, o, dt, 0.0)
        if bias is None or (out is not None and out.shape != (n, o)):
            return NotImplemented
        keep_z = name in NEEDS_PREACTIVATION
        direct = out is not None and not keep_z and out.flags.c_contiguous
        z = out if direct else np.empty((n, o), dt)
        np.matmul(x, w.T, out=z)
        k = _k()
        code = k.IDENTITY if keep_z else k.CODES[name]
        if b is not None or code != k.IDENTITY:
            k.activation_kernel("bias_act", code)(z.size, z, bias, float(alpha))
        if keep_z:
            return self.act(z, name, alpha=alpha, out=out), z
        if out is not None and not direct:
            out[...] = z
            return out, None
        return z, None

    def act_backward(
        self, grad: Any, y: Any, z: Any, activation: str = "identity", *, alpha: float = 0.01, out: Any = None
    ) -> Any:
        """Gradient with respect to the pre-activation, from the output ``y`` (or ``z`` if needed)."""
        name = canonical_activation(activation)
        src = z if name in NEEDS_PREACTIVATION else y
        dt = _dtype(grad, src, out)
        if (
            dt is None
            or src is None
            or name == "identity"
            or src.shape != grad.shape
            or (out is not None and out.shape != grad.shape)
        ):
            return NotImplemented
        order = _order(grad)
        gf, sf = _flat_in(grad, order), _flat_in(src, order)
        k = _k()
        if out is grad and (grad.flags.c_contiguous or grad.flags.f_contiguous):  # gf is a view of out
            k.activation_kernel("act_backward_inplace", k.CODES[name])(gf.size, gf, sf, float(alpha))
            return out
        result, of, temp = _flat_out(out, grad.shape, dt, order)
        k.activation_kernel("act_backward", k.CODES[name])(gf.size, gf, sf, of, float(alpha))
        return _finish(result, of, temp, order)

    def bias_act_backward(
        self, grad: Any, y: Any, z: Any, activation: str = "identity", *, alpha: float = 0.01, out: Any = None,
        bias_grad: Any = None,
    ) -> tuple[Any, Any]:  # fmt: skip
        """``act_backward`` and the bias gradient (column sums, float64 accumulators) in one pass over rows.

        With ``out`` being ``grad`` it runs a kernel that writes ``grad`` only: LLVM does not vectorize a loop
        whose output may overlap its input.
        """
        name = canonical_activation(activation)
        src = grad if name == "identity" else z if name in NEEDS_PREACTIVATION else y
        dt = _dtype(grad, src, out, bias_grad)
        c = grad.shape[-1] if getattr(grad, "ndim", 0) == 2 else -1
        if (
            dt is None
            or c < 0
            or src is None
            or src.shape != grad.shape
            or not (grad.flags.c_contiguous and src.flags.c_contiguous)
            or (out is not None and (out.shape != grad.shape or not out.flags.c_contiguous))
            or (out is not None and out is not grad and np.may_share_memory(out, grad))
            or (bias_grad is not None and (bias_grad.shape != (c,) or not bias_grad.flags.c_contiguous))
        ):
            return NotImplemented
        db = np.empty(c, dt) if bias_grad is None else bias_grad
        k = _k()
        if out is grad:
            k.activation_kernel("bias_act_backward_inplace", k.CODES[name])(
                grad.size, grad, src, grad, db, float(alpha)
            )
            return grad, db
        out = np.empty_like(grad) if out is None else out
        k.activation_kernel("bias_act_backward", k.CODES[name])(grad.size, grad, src, out, db, float(alpha))
        return out, db

    # ------------------------------------------------------------------ losses
    def softmax_cross_entropy(
        self, logits: Any, target: Any, *, weight: Any = None, label_smoothing: float = 0.0
    ) -> tuple[Any, Any]:
        """Per-sample cross-entropy of softmax(logits) and its gradient wrt logits, in one pass.

        ``target`` holds class indices (n,) or probabilities (n, c). With class weights ``w`` the
        loss of a sample is ``-sum_c w_c q_c log p_c`` for the (smoothed) target distribution ``q``.
        """
        dt = _dtype(logits)
        if dt is None or logits.ndim != 2 or type(target) is not np.ndarray or logits.shape[1] == 0:
            return NotImplemented
        n, c = logits.shape
        w = _vector(weight, c, dt, 1.0)
        by_index = target.ndim == 1 and target.shape == (n,) and target.dtype.kind in "iu"
        if w is None or not (by_index or target.shape == (n, c)):
            return NotImplemented
        x = np.ascontiguousarray(logits)
        loss, grad = np.empty(n, dt), np.empty((n, c), dt)
        k = _k()
        if by_index:
            t = np.ascontiguousarray(target, dtype=np.int64)
            bad = k.softmax_xent_index(x.size, x, t, w, float(label_smoothing), loss, grad)
            if bad:
                raise IndexError(f"{bad} target class index(es) out of bounds for {c} classes")
        else:
            q = np.ascontiguousarray(target, dtype=dt)
            k.softmax_xent_prob(x.size, x, q, w, float(label_smoothing), loss, grad)
        return loss, grad

    def sigmoid_cross_entropy(self, logits: Any, target: Any, *, pos_weight: Any = None) -> tuple[Any, Any]:
        """Elementwise binary cross-entropy of sigmoid(logits) and its gradient, in one pass."""
        dt = _dtype(logits)
        ok = dt is not None and type(target) is np.ndarray and target.shape == logits.shape and logits.size > 0
        pw = None
        if ok and pos_weight is not None:
            pw = np.asarray(pos_weight, dtype=dt)
            ok = pw.ndim <= logits.ndim and (pw.size == 1 or pw.shape == logits.shape[-1:])
        if not ok:
            return NotImplemented
        shape = logits.shape
        x = np.ascontiguousarray(logits).reshape(-1, shape[-1] if logits.ndim else 1)
        t = np.ascontiguousarray(target, dtype=dt).reshape(x.shape)
        pwv = _constant(0, dt, 0.0) if pw is None else np.ascontiguousarray(pw.reshape(-1))
        loss, grad = np.empty(x.shape, dt), np.empty(x.shape, dt)
        _k().sigmoid_xent(x.size, x, t, pwv, loss, grad)
        return loss.reshape(shape), grad.reshape(shape)

    def mse(self, pred: Any, target: Any) -> tuple[Any, Any]:
        """Elementwise squared error and its gradient wrt ``pred``, in one pass."""
        dt = _dtype(pred)
        if dt is None or type(target) is not np.ndarray or target.shape != pred.shape:
            return NotImplemented
        order = _order(pred)
        pf, tf = _flat_in(pred, order), _flat_in(target.astype(dt, copy=False), order)
        loss, grad = np.empty(pred.shape, dt, order=order), np.empty(pred.shape, dt, order=order)
        _k().mse(pf.size, pf, tf, loss.ravel(order), grad.ravel(order))
        return loss, grad

    # ------------------------------------------------------------------ dropout, batchnorm
    def dropout(self, x: Any, p: float, generator: Any, *, out: Any = None) -> tuple[Any, Any]:
        """Inverted dropout drawing from ``generator``; returns ``(y, mask)`` with the mask already scaled by 1/(1-p).

        Draws the same numbers from a NumPy ``Generator`` as the reference, then builds the mask in the draws'
        buffer and applies it in one pass.
        """
        dt = _dtype(x, out)
        if dt is None or p >= 1.0 or (out is not None and out.shape != x.shape):
            return NotImplemented
        if not isinstance(generator, np.random.Generator):
            return NotImplemented
        mask = generator.random(x.shape, dtype=dt.type)
        xf = _flat_in(x, "C")
        result, of, temp = _flat_out(out, x.shape, dt, "C")
        _k().dropout(xf.size, xf, mask.reshape(-1), of, float(p), float(dt.type(1.0 / (1.0 - p))))
        return _finish(result, of, temp, "C"), mask

    def batchnorm(
        self,
        x: Any,
        gamma: Any,
        beta: Any,
        running_mean: Any,
        running_var: Any,
        *,
        training: bool = True,
        momentum: float = 0.1,
        eps: float = 1e-5,
    ) -> tuple[Any, Any, Any]:
        """Batch normalization over every axis but 1; returns ``(y, xhat, inv_std)``.

        In training, batch statistics normalize and the running statistics (if given) are updated
        in place with the unbiased variance, as PyTorch does.
        """
        dt = _dtype(x, gamma, beta, running_mean, running_var)
        ok = dt is not None and x.ndim >= 2 and x.size > 0 and (running_mean is None) == (running_var is None)
        if not ok or any(v is not None and v.shape != (x.shape[1],) for v in (gamma, beta, running_mean, running_var)):
            return NotImplemented
        n, c = x.shape[:2]
        x3 = np.ascontiguousarray(x).reshape(n, c, -1)
        k = _k()
        if training or running_mean is None:
            mean64, var64 = np.empty(c), np.empty(c)
            k.bn_stats(x3.size, x3, mean64, var64)
            mean, var = mean64.astype(dt), var64.astype(dt)
            if training and running_mean is not None:
                count = x.size // c
                running_mean *= 1.0 - momentum
                running_mean += momentum * mean
                running_var *= 1.0 - momentum
                running_var += momentum * var * (count / max(count - 1, 1))
        else:
            mean, var = running_mean, running_var
        inv_std = (1.0 / np.sqrt(var + eps)).astype(dt, copy=False)
        g, bt = _vector(gamma, c, dt, 1.0), _vector(beta, c, dt, 0.0)
        xhat = np.empty(x3.shape, dt)
        y = xhat if gamma is None and beta is None else np.empty(x3.shape, dt)
        k.bn_apply(x3.size, x3, np.ascontiguousarray(mean), inv_std, g, bt, xhat, y)
        return y.reshape(x.shape), xhat.reshape(x.shape), inv_std

    def batchnorm_backward(
        self, grad: Any, xhat: Any, inv_std: Any, gamma: Any, *, training: bool = True
    ) -> tuple[Any, Any, Any]:
        """Gradients of batch normalization: ``(dx, dgamma, dbeta)``."""
        dt = _dtype(grad, xhat, inv_std, gamma)
        ok = dt is not None and grad.ndim >= 2 and grad.size > 0 and xhat.shape == grad.shape
        if not ok or any(v is not None and v.shape != (grad.shape[1],) for v in (inv_std, gamma)):
            return NotImplemented
        n, c = grad.shape[:2]
        g3 = np.ascontiguousarray(grad).reshape(n, c, -1)
        h3 = np.ascontiguousarray(xhat).reshape(n, c, -1)
        k = _k()
        sums = np.empty((2, c))
        k.bn_sums(g3.size, g3, h3, sums[0], sums[1])
        dbeta, dgamma = sums[0].astype(dt), sums[1].astype(dt)
        scale = inv_std if gamma is None else gamma * inv_std
        count = grad.size // c
        kc = np.ascontiguousarray(scale / count if training else scale, dtype=dt)
        dx = np.empty(g3.shape, dt)
        k.bn_dx(g3.size, g3, h3, kc, dbeta, dgamma, count, bool(training), dx)
        return dx.reshape(grad.shape), dgamma, dbeta

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
        flat = _flat_buffers(param, grad, buf if momentum else None)
        if flat is None or (momentum and buf is None):
            return NotImplemented
        p, g, b = flat
        hyper = (float(lr), float(momentum), float(dampening), bool(nesterov), float(weight_decay), float(l1))
        _o().sgd(p.size, p, g, b, *hyper, step == 1)
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
        flat = _flat_buffers(param, grad, exp_avg, exp_avg_sq)
        if flat is None:
            return NotImplemented
        p, g, m, v = flat
        step_size = lr / (1.0 - beta1**step)
        inv_sqrt_bias2 = 1.0 / math.sqrt(1.0 - beta2**step)
        decay = 1.0 - lr * weight_decay if decoupled and weight_decay else 1.0
        wd = 0.0 if decoupled else float(weight_decay)
        hyper = (float(beta1), float(beta2), float(eps), float(step_size), inv_sqrt_bias2, wd, float(decay), float(l1))
        _o().adam(p.size, p, g, m, v, *hyper)
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
        flat = _flat_buffers(param, grad, square_avg, buf if momentum else None, grad_avg if centered else None)
        if flat is None or (momentum and buf is None) or (centered and grad_avg is None):
            return NotImplemented
        p, g, sq, b, ga = flat
        hyper = (float(lr), float(alpha), float(eps), float(momentum), bool(centered), float(weight_decay), float(l1))
        _o().rmsprop(p.size, p, g, sq, b, ga, *hyper)
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
        flat = _flat_buffers(param, grad, state_sum)
        if flat is None:
            return NotImplemented
        p, g, s = flat
        clr = lr / (1.0 + (step - 1) * lr_decay)
        _o().adagrad(p.size, p, g, s, float(clr), float(eps), float(weight_decay), float(l1))
        return None

    def clip_grad_norm(self, grad: Any, max_norm: float, *, norm_type: float = 2.0) -> float:
        """Scale ``grad`` in place so its norm is at most ``max_norm``; return the norm before."""
        dt = _dtype(grad)
        if dt is None or norm_type not in (1.0, 2.0) or not grad.flags.c_contiguous:
            return NotImplemented
        g = grad.reshape(-1)
        total = float(_o().norm_power_sum(g.size, g, float(norm_type)) ** (1.0 / norm_type))
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            grad *= coef
        return total


def _flat_buffers(*arrays: Any) -> list[np.ndarray] | None:
    """Flat views of same-shaped C-contiguous arrays of one float dtype (None becomes an empty array), else None."""
    first = arrays[0]
    dt = _FLOATS.get(first.dtype) if type(first) is np.ndarray else None
    if dt is None:
        return None
    shape = first.shape
    views = []
    for a in arrays:
        if a is None:
            views.append(_constant(0, dt, 0.0))
        elif type(a) is not np.ndarray or a.dtype != dt or a.shape != shape or not a.flags.c_contiguous:
            return None
        else:
            views.append(a if a.ndim == 1 else a.reshape(-1))
    return views
