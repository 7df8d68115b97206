"""The backend protocol and its reference implementation.

Every kernel is written here once, over ``self.xp`` (an array module with NumPy's API). The NumPy
backend uses these as they are; an accelerated backend overrides only the kernels it makes faster and
keeps their signatures (``minitrain.testing.check_backend`` asserts that).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Activation names understood by ``act``, ``affine_act`` and ``act_backward``.
ACTIVATIONS = (
    "identity",
    "relu",
    "leaky_relu",
    "elu",
    "gelu",
    "gelu_tanh",
    "sigmoid",
    "tanh",
    "softplus",
)
_ALIASES = {None: "identity", "linear": "identity", "logistic": "sigmoid"}
#: Activations whose backward needs the pre-activation ``z`` (the others use the output ``y``).
NEEDS_PREACTIVATION = frozenset({"gelu", "gelu_tanh"})

#: The named kernels of the protocol; each is a method of ``Backend``.
KERNELS = (
    "gemm",
    "act",
    "affine_act",
    "act_backward",
    "softmax_cross_entropy",
    "sigmoid_cross_entropy",
    "mse",
    "dropout",
    "dropout_backward",
    "batchnorm",
    "batchnorm_backward",
    "sgd_step",
    "adam_step",
    "rmsprop_step",
    "adagrad_step",
    "clip_grad_norm",
    "clip_grad_value",
)

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def canonical_activation(name: str | None) -> str:
    """Return the canonical activation name, accepting sklearn's aliases ('logistic')."""
    name = _ALIASES.get(name, name)
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")
    return name


class Backend:
    """Array module plus named kernels; the reference implementation of every kernel.

    Subclasses set ``name`` and ``xp`` and may override any kernel for speed, keeping its
    signature. Kernels take and return arrays of this backend (never Tensors).

    Parameters
    ----------
    device : int, optional
        Device index for backends with several devices (``"cupy:1"``); CPU backends ignore it.
    seed : int, optional
        Seed of the backend's random generator.
    """

    name = "base"
    kernels = KERNELS

    def __init__(self, device: int | None = None, seed: int | None = None) -> None:
        self.device_index = 0 if device is None else int(device)
        self._spec = self.name if device is None else f"{self.name}:{int(device)}"
        self._rng = None
        self.seed(seed)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Unpickle to the registry's instance of this backend, so identity checks keep working.
        from .registry import get_backend

        return get_backend, (self._spec,)

    # ------------------------------------------------------------------ array module
    @property
    def xp(self) -> Any:
        """The array module (``numpy`` here)."""
        return np

    @property
    def device(self) -> str:
        """Where arrays of this backend live, e.g. ``"cpu"`` or ``"cuda:0"``."""
        return "cpu"

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        """Whether this backend can run here, and why not when it cannot."""
        return True, ""

    def synchronize(self) -> None:
        """Wait until queued device work is done (no-op on CPU backends)."""

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Convert ``x`` (host or device array, list, scalar) to an array of this backend."""
        return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy-free where possible conversion of a backend array to a NumPy array."""
        return np.asarray(x)

    def alloc(self, shape: Any, dtype: Any = "float32", fill: float | None = 0.0) -> Any:
        """Allocate an array; filled with ``fill``, or uninitialized when ``fill`` is None."""
        if fill is None:
            return self.xp.empty(shape, dtype=dtype)
        if fill == 0:
            return self.xp.zeros(shape, dtype=dtype)
        return self.xp.full(shape, fill, dtype=dtype)

    # ------------------------------------------------------------------ randomness
    def seed(self, seed: int | None) -> None:
        """Reseed the backend's random generator."""
        self._rng = np.random.default_rng(seed)

    @property
    def rng(self) -> Any:
        """The backend's random generator (NumPy ``Generator`` API)."""
        return self._rng

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.device}>"

    # ------------------------------------------------------------------ helpers
    def _erf(self, x: Any) -> Any:
        from scipy.special import erf

        return erf(x)

    def _expit(self, z: Any, out: Any = None) -> Any:
        from scipy.special import expit

        return expit(z, out=out) if out is not None else expit(z)

    def _bshape(self, x: Any) -> tuple[int, ...]:
        """Broadcast shape of a per-channel vector against ``x`` (channels on axis 1)."""
        return (1, x.shape[1]) + (1,) * (x.ndim - 2)

    # ------------------------------------------------------------------ kernels
    def gemm(self, a: Any, b: Any, *, trans_a: bool = False, trans_b: bool = False, out: Any = None) -> Any:
        """Matrix product ``op(a) @ op(b)`` with optional transposes, into ``out`` if given."""
        a = a.T if trans_a else a
        b = b.T if trans_b else b
        if out is None:
            return self.xp.matmul(a, b)
        return self.xp.matmul(a, b, out=out)

    def act(self, z: Any, activation: str = "identity", *, alpha: float = 0.01, out: Any = None) -> Any:
        """Apply an activation elementwise, into ``out`` (which may be ``z``) if given."""
        xp = self.xp
        activation = canonical_activation(activation)
        if activation == "identity":
            if out is None:
                return z.copy()
            if out is not z:
                out[...] = z
            return out
        if out is None:
            out = xp.empty_like(z)
        if activation == "relu":
            return xp.maximum(z, 0, out=out)
        if activation == "tanh":
            return xp.tanh(z, out=out)
        if activation == "sigmoid":
            return self._expit(z, out=out)
        if activation == "leaky_relu":
            y = xp.where(z > 0, z, z * alpha)
        elif activation == "elu":
            y = xp.where(z > 0, z, alpha * xp.expm1(xp.minimum(z, 0)))
        elif activation == "gelu":
            y = 0.5 * z * (1.0 + self._erf(z * (1.0 / math.sqrt(2.0))))
        elif activation == "gelu_tanh":
            y = 0.5 * z * (1.0 + xp.tanh(_SQRT_2_OVER_PI * (z + 0.044715 * z**3)))
        else:  # softplus
            y = xp.log1p(xp.exp(-xp.abs(z))) + xp.maximum(z, 0)
        out[...] = y
        return out

    def affine_act(
        self, x: Any, w: Any, b: Any, activation: str = "identity", *, alpha: float = 0.01, out: Any = None
    ) -> tuple[Any, Any]:
        """``act(x @ w.T + b)`` for ``w`` of shape (out, in); returns ``(y, z)``.

        ``z`` is the pre-activation when the activation's backward needs it, else None.
        """
        activation = canonical_activation(activation)
        z = self.gemm(x, w, trans_b=True)
        if b is not None:
            z += b
        if activation in NEEDS_PREACTIVATION:
            return self.act(z, activation, alpha=alpha, out=out), z
        if out is None:
            return self.act(z, activation, alpha=alpha, out=z), None
        return self.act(z, activation, alpha=alpha, out=out), None

    def act_backward(
        self, grad: Any, y: Any, z: Any, activation: str = "identity", *, alpha: float = 0.01, out: Any = None
    ) -> Any:
        """Gradient with respect to the pre-activation, from the output ``y`` (or ``z`` if needed)."""
        xp = self.xp
        activation = canonical_activation(activation)
        if activation == "identity":
            g = grad
        elif activation == "relu":
            g = self.xp.multiply(grad, y > 0, out=out) if out is not None else grad * (y > 0)
        elif activation == "leaky_relu":
            g = grad * xp.where(y > 0, 1.0, alpha)
        elif activation == "elu":
            g = grad * xp.where(y > 0, 1.0, y + alpha)
        elif activation == "gelu":
            cdf = 0.5 * (1.0 + self._erf(z * (1.0 / math.sqrt(2.0))))
            pdf = xp.exp(-0.5 * z * z) * (1.0 / math.sqrt(2.0 * math.pi))
            g = grad * (cdf + z * pdf)
        elif activation == "gelu_tanh":
            inner = _SQRT_2_OVER_PI * (z + 0.044715 * z**3)
            t = xp.tanh(inner)
            dinner = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * z * z)
            g = grad * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * dinner)
        elif activation == "sigmoid":
            g = grad * y * (1.0 - y)
        elif activation == "tanh":
            g = grad * (1.0 - y * y)
        else:  # softplus: sigmoid(z) == 1 - exp(-softplus(z))
            g = grad * -xp.expm1(-y)
        g = g.astype(grad.dtype, copy=False)
        if out is None:
            return g.copy() if g is grad else g
        if out is not g:
            out[...] = g
        return out

    def softmax_cross_entropy(
        self, logits: Any, target: Any, *, weight: Any = None, label_smoothing: float = 0.0
    ) -> tuple[Any, Any]:
        """Per-sample cross-entropy of softmax(logits) and its gradient wrt logits, in one pass.

        ``target`` holds class indices (n,) or probabilities (n, c). With class weights ``w`` the
        loss of a sample is ``-sum_c w_c q_c log p_c`` for the (smoothed) target distribution ``q``.
        """
        xp = self.xp
        n, c = logits.shape
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        logp = shifted - xp.log(s)
        p = e / s
        if target.ndim == 1:
            q = xp.zeros_like(logits)
            q[xp.arange(n), target] = 1.0
        else:
            q = target.astype(logits.dtype, copy=True)
        if label_smoothing:
            q = q * (1.0 - label_smoothing) + label_smoothing / c
        wq = q if weight is None else q * weight
        loss = -(wq * logp).sum(axis=1)
        grad = p * wq.sum(axis=1, keepdims=True) - wq
        return loss.astype(logits.dtype, copy=False), grad.astype(logits.dtype, copy=False)

    def sigmoid_cross_entropy(self, logits: Any, target: Any, *, pos_weight: Any = None) -> tuple[Any, Any]:
        """Elementwise binary cross-entropy of sigmoid(logits) and its gradient, in one pass."""
        xp = self.xp
        target = target.astype(logits.dtype, copy=False)
        softplus_neg = xp.log1p(xp.exp(-xp.abs(logits))) + xp.maximum(-logits, 0)  # -log sigmoid(z)
        sig = self._expit(logits)
        if pos_weight is None:
            loss = (1.0 - target) * logits + softplus_neg
            grad = sig - target
        else:
            lw = 1.0 + (pos_weight - 1.0) * target
            loss = (1.0 - target) * logits + lw * softplus_neg
            grad = (1.0 - target) - lw * (1.0 - sig)
        return loss.astype(logits.dtype, copy=False), grad.astype(logits.dtype, copy=False)

    def mse(self, pred: Any, target: Any) -> tuple[Any, Any]:
        """Elementwise squared error and its gradient wrt ``pred``, in one pass."""
        diff = pred - target.astype(pred.dtype, copy=False)
        return diff * diff, diff * 2.0

    def dropout(self, x: Any, p: float, *, out: Any = None) -> tuple[Any, Any]:
        """Inverted dropout; returns ``(y, mask)`` with the mask already scaled by 1/(1-p)."""
        xp = self.xp
        if p >= 1.0:
            mask = xp.zeros_like(x)
        else:
            keep = self.asarray(self.rng.random(x.shape, dtype=np.float64 if x.dtype == np.float64 else np.float32))
            mask = (keep >= p).astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
        if out is None:
            return x * mask, mask
        xp.multiply(x, mask, out=out)
        return out, mask

    def dropout_backward(self, grad: Any, mask: Any, *, out: Any = None) -> Any:
        """Gradient of dropout: the upstream gradient times the scaled mask."""
        if out is None:
            return grad * mask
        return self.xp.multiply(grad, mask, out=out)

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
        xp = self.xp
        axes = (0, *tuple(range(2, x.ndim)))
        shape = self._bshape(x)
        if training or running_mean is None:
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
            if training and running_mean is not None:
                n = x.size // x.shape[1]
                running_mean *= 1.0 - momentum
                running_mean += momentum * mean
                running_var *= 1.0 - momentum
                running_var += momentum * var * (n / max(n - 1, 1))
        else:
            mean, var = running_mean, running_var
        inv_std = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
        xhat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
        y = xhat if gamma is None else xhat * gamma.reshape(shape)
        if beta is not None:
            y = y + beta.reshape(shape)
        return y.astype(x.dtype, copy=False), xhat, inv_std

    def batchnorm_backward(
        self, grad: Any, xhat: Any, inv_std: Any, gamma: Any, *, training: bool = True
    ) -> tuple[Any, Any, Any]:
        """Gradients of batch normalization: ``(dx, dgamma, dbeta)``."""
        axes = (0, *tuple(range(2, grad.ndim)))
        shape = self._bshape(grad)
        dbeta = grad.sum(axis=axes)
        dgamma = (grad * xhat).sum(axis=axes)
        scale = inv_std if gamma is None else gamma * inv_std
        if training:
            n = grad.size // grad.shape[1]
            dx = (scale / n).reshape(shape) * (n * grad - dbeta.reshape(shape) - xhat * dgamma.reshape(shape))
        else:
            dx = grad * scale.reshape(shape)
        return dx.astype(grad.dtype, copy=False), dgamma, dbeta

    # ------------------------------------------------------------------ optimizer steps
    def _penalized(self, param: Any, grad: Any, weight_decay: float, l1: float) -> Any:
        if weight_decay:
            grad = grad + weight_decay * param
        if l1:
            grad = grad + l1 * self.xp.sign(param)
        return grad

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
        g = self._penalized(param, grad, weight_decay, l1)
        if momentum:
            if step == 1:
                buf[...] = g
            else:
                buf *= momentum
                buf += (1.0 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        param -= lr * g

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
        """Adam (``decoupled=True``: AdamW) in place over flat buffers."""
        xp = self.xp
        if decoupled:
            if weight_decay:
                param *= 1.0 - lr * weight_decay
            g = self._penalized(param, grad, 0.0, l1)
        else:
            g = self._penalized(param, grad, weight_decay, l1)
        exp_avg *= beta1
        exp_avg += (1.0 - beta1) * g
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * (g * g)
        bias1 = 1.0 - beta1**step
        bias2 = 1.0 - beta2**step
        denom = xp.sqrt(exp_avg_sq) * (1.0 / math.sqrt(bias2)) + eps
        param -= (lr / bias1) * exp_avg / denom

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
        xp = self.xp
        g = self._penalized(param, grad, weight_decay, l1)
        square_avg *= alpha
        square_avg += (1.0 - alpha) * (g * g)
        if centered:
            grad_avg *= alpha
            grad_avg += (1.0 - alpha) * g
            avg = xp.sqrt(square_avg - grad_avg * grad_avg) + eps
        else:
            avg = xp.sqrt(square_avg) + eps
        if momentum:
            buf *= momentum
            buf += g / avg
            param -= lr * buf
        else:
            param -= lr * (g / avg)

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
        """Adagrad in place over flat buffers."""
        g = self._penalized(param, grad, weight_decay, l1)
        clr = lr / (1.0 + (step - 1) * lr_decay)
        state_sum += g * g
        param -= clr * g / (self.xp.sqrt(state_sum) + eps)

    def clip_grad_norm(self, grad: Any, max_norm: float, *, norm_type: float = 2.0) -> float:
        """Scale ``grad`` in place so its norm is at most ``max_norm``; return the norm before."""
        xp = self.xp
        if norm_type == math.inf:
            total = float(xp.abs(grad).max()) if grad.size else 0.0
        else:
            total = float((xp.abs(grad.astype(np.float64)) ** norm_type).sum() ** (1.0 / norm_type))
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            grad *= coef
        return total

    def clip_grad_value(self, grad: Any, clip_value: float) -> None:
        """Clamp ``grad`` in place to ``[-clip_value, clip_value]``."""
        self.xp.clip(grad, -clip_value, clip_value, out=grad)
