"""The backend protocol and its reference implementation.

Every kernel is written here once, over ``self.xp`` (an array module with NumPy's API). The NumPy
backend uses these as they are; an accelerated backend overrides only the kernels it makes faster and
keeps their signatures (``minitrain.testing.check_backend`` asserts that).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    "bias_act_backward",
    "softmax_cross_entropy",
    "sigmoid_cross_entropy",
    "mse",
    "dropout",
    "dropout_backward",
    "batchnorm",
    "batchnorm_backward",
    "conv2d",
    "conv2d_backward",
    "maxpool2d",
    "maxpool2d_backward",
    "avgpool2d",
    "avgpool2d_backward",
    "sgd_step",
    "adam_step",
    "rmsprop_step",
    "adagrad_step",
    "clip_grad_norm",
    "clip_grad_value",
    "lstm_step",
    "lstm_step_backward",
    "gru_step",
    "gru_step_backward",
    "mlp_loss_grad",
)
#: The output functions of ``mlp_loss_grad`` / ``output_loss_grad``, each with its canonical loss.
OUTPUTS = ("softmax", "logistic", "identity", "exp")

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def output_loss_grad(be: Any, z: Any, target: Any, sample_weight: Any, weight_sum: float, output: str) -> tuple:
    """The canonical loss of output function ``output`` on logits ``z`` (n, c): ``(loss, grad)``.

    scikit-learn's MLP losses: 'softmax' cross-entropy (``target`` class indices (n,) or probabilities (n, c)),
    'logistic' binary cross-entropy summed over outputs, 'identity' half squared error averaged over outputs
    (its gradient is not averaged, as scikit-learn's), 'exp' half Poisson deviance. The gradient is the
    canonical link's ``(output(z) - target) * w / weight_sum``; the loss (a 0-d array) is the weighted sum of
    the samples' losses divided by ``weight_sum``. ``grad`` is a new array.
    """
    xp = be.xp
    if output == "softmax":
        loss, grad = be.softmax_cross_entropy(z, target)
    elif output == "logistic":
        loss, grad = be.sigmoid_cross_entropy(z, target)
        loss = loss.sum(axis=1)
    elif output == "identity":
        grad = z - target
        loss = 0.5 * (grad * grad).mean(axis=1)
    elif output == "exp":
        out = xp.exp(z)
        positive = target > 0
        ylogy = xp.where(positive, target * xp.log(xp.where(positive, target, 1)), 0)
        loss = (ylogy - target * z - target + out).sum(axis=1)
        grad = out - target
    else:
        raise ValueError(f"unknown output {output!r}; choose from {', '.join(OUTPUTS)}")
    scale = 1.0 / weight_sum
    if sample_weight is not None:
        loss = loss * sample_weight
        grad *= sample_weight[:, None]
    grad *= scale
    return loss.sum() * scale, grad


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

    def bias_act_backward(
        self, grad: Any, y: Any, z: Any, activation: str = "identity", *, alpha: float = 0.01, out: Any = None,
        bias_grad: Any = None,
    ) -> tuple[Any, Any]:  # fmt: skip
        """``act_backward`` of 2-D ``grad`` and the column sums of the result (``affine_act``'s bias gradient),
        into ``out`` (which may be ``grad``) and ``bias_grad`` if given: returns ``(g, bias_grad)``."""
        g = self.act_backward(grad, y, z, activation, alpha=alpha, out=out)
        return g, (g.sum(axis=0) if bias_grad is None else g.sum(axis=0, out=bias_grad))

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

    # ------------------------------------------------------------------ convolution and pooling
    # Layout NCHW, weight (out_channels, in_channels, kh, kw). Windows are strided views of a padded copy of
    # the input. The convolution computes on an extended grid of width wg = ceil(padded width / stride) per
    # output row, so that with a vertical stride of 1 a window offset reads one long strided run per (n, c)
    # plane (NumPy's per-row loop overhead dominated otherwise); the wg - wo extra columns per row are
    # computed, then dropped. The bias rides in the GEMMs as a row of ones under the columns. The backward
    # pass recomputes im2col (2-3 % of a small CNN training step) instead of keeping c * kh * kw copies of
    # each layer's input alive until then. Pooling copies the windows to one contiguous row per offset
    # first: reductions over the strided views themselves were slower.
    @staticmethod
    def _pair(v: Any) -> tuple[int, int]:
        """``v`` as two ints, one per spatial axis (an int serves both)."""
        a, b = v if isinstance(v, (tuple, list)) else (v, v)
        return int(a), int(b)

    def _conv_grid(self, x_shape: Any, kernel: Any, stride: Any, padding: Any) -> tuple[int, ...]:
        """``(kh, kw, sh, sw, ph, pw, hp, ho, wo, wg, wq)`` of a convolution on the extended grid."""
        (kh, kw), (sh, sw), (ph, pw) = self._pair(kernel), self._pair(stride), self._pair(padding)
        hp, wp = x_shape[2] + 2 * ph, x_shape[3] + 2 * pw
        wg = -(-wp // sw)
        return kh, kw, sh, sw, ph, pw, hp, (hp - kh) // sh + 1, (wp - kw) // sw + 1, wg, wg * sw

    def _grid_view(self, buf: Any, grid: tuple[int, ...], n: int, c: int, offset: int, kmajor: bool) -> Any:
        """Strided view of the padded planes in ``buf``: (c, kh, kw, n, ho, wg) or, at ``offset``, (c, n, ho, wg)."""
        kh, kw, sh, sw, _, _, hp, ho, _, wg, wq = grid
        it, ps = buf.itemsize, hp * wq
        if kmajor:
            shape, strides = (c, kh, kw, n, ho, wg), (ps, wq, 1, c * ps, sh * wq, sw)
        else:
            shape, strides = (c, n, ho, wg), (ps, c * ps, sh * wq, sw)
        return self.xp.lib.stride_tricks.as_strided(buf[offset:], shape, tuple(s * it for s in strides))

    def _im2col(self, x: Any, grid: tuple[int, ...], ones: bool) -> Any:
        """Columns (c * kh * kw, n * ho * wg) of ``x`` (n, c, h, w) on the extended grid, plus a row of ones."""
        xp = self.xp
        n, c, h, w = x.shape
        kh, kw, sh, sw, ph, pw, hp, ho, wo, wg, wq = grid
        # Only the input that windows cover is copied, so the extra columns read nothing else (an inf there
        # would make 0 * inf = NaN in dweight); the tail keeps the last row's extra columns in the buffer.
        h, w = max(0, min(h, (ho - 1) * sh + kh - ph)), max(0, min(w, (wo - 1) * sw + kw - pw))
        buf = xp.zeros(n * c * hp * wq + kw, dtype=x.dtype)
        buf[: n * c * hp * wq].reshape(n, c, hp, wq)[:, :, ph : ph + h, pw : pw + w] = x[:, :, :h, :w]
        cols = xp.empty((c * kh * kw + ones, n * ho * wg), dtype=x.dtype)
        cols[: c * kh * kw].reshape(c, kh, kw, n, ho, wg)[...] = self._grid_view(buf, grid, n, c, 0, True)
        if ones:  # the bias as one more input channel: the GEMMs add it and sum its gradient
            cols[-1] = 1
        return cols

    def conv2d(
        self,
        x: Any,
        weight: Any,
        bias: Any,
        *,
        stride: int | tuple[int, int] = (1, 1),
        padding: int | tuple[int, int] = (0, 0),
    ) -> Any:
        """2-D cross-correlation of ``x`` (n, c, h, w) with ``weight`` (o, c, kh, kw), plus ``bias`` (o,) or None."""
        xp = self.xp
        n, o = x.shape[0], weight.shape[0]
        grid = self._conv_grid(x.shape, weight.shape[2:], stride, padding)
        ho, wo, wg = grid[7:10]
        w2 = weight.reshape(o, -1)
        if bias is not None:
            w2 = xp.concatenate((w2, bias.reshape(o, 1).astype(w2.dtype, copy=False)), axis=1)
        z = self.gemm(w2, self._im2col(x, grid, bias is not None)).reshape(o, n, ho, wg)[..., :wo]
        y = xp.empty((n, o, ho, wo), dtype=x.dtype)
        y[...] = z.transpose(1, 0, 2, 3)
        return y

    def conv2d_backward(
        self,
        grad: Any,
        x: Any,
        weight: Any,
        *,
        stride: int | tuple[int, int] = (1, 1),
        padding: int | tuple[int, int] = (0, 0),
        need_input_grad: bool = True,
    ) -> tuple[Any, Any, Any]:
        """Gradients of ``conv2d``: ``(dx or None, dweight, dbias)``, recomputing the columns of ``x``."""
        xp = self.xp
        n, c, h, w = x.shape
        o = weight.shape[0]
        grid = self._conv_grid(x.shape, weight.shape[2:], stride, padding)
        kh, kw, _, _, ph, pw, hp, ho, wo, wg, wq = grid
        g = (xp.zeros if wg > wo else xp.empty)((o, n, ho, wg), dtype=grad.dtype)  # the extra columns stay 0
        g[..., :wo] = grad.transpose(1, 0, 2, 3)
        g = g.reshape(o, n * ho * wg)
        cols = self._im2col(x, grid, True)
        dwb = self.gemm(g, cols, trans_b=True)
        dweight = dwb[:, :-1].reshape(weight.shape).astype(weight.dtype, copy=False)
        dbias = dwb[:, -1].astype(grad.dtype, copy=False)
        if not need_input_grad:
            return None, dweight, dbias
        dcols = self.gemm(weight.reshape(o, -1), g, trans_a=True, out=cols[:-1]).reshape(c, kh, kw, n, ho, wg)
        buf = xp.zeros(n * c * hp * wq + kw, dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):  # col2im: the extra columns add exact zeros wherever they land
                view = self._grid_view(buf, grid, n, c, i * wq + j, False)
                view += dcols[:, i, j]
        dx = buf[: n * c * hp * wq].reshape(n, c, hp, wq)[:, :, ph : ph + h, pw : pw + w]
        return xp.ascontiguousarray(dx), dweight, dbias

    def _pool_grid(self, x_shape: Any, kernel_size: Any, stride: Any, padding: Any) -> tuple[int, ...]:
        """``(kh, kw, sh, sw, ph, pw, ho, wo)`` of a pooling of inputs of shape ``x_shape``."""
        (kh, kw), (sh, sw), (ph, pw) = self._pair(kernel_size), self._pair(stride), self._pair(padding)
        return kh, kw, sh, sw, ph, pw, (x_shape[2] + 2 * ph - kh) // sh + 1, (x_shape[3] + 2 * pw - kw) // sw + 1

    def _pool_stack(self, x: Any, grid: tuple[int, ...], fill: float) -> Any:
        """The windows of ``x`` padded with ``fill``, one contiguous row (n * c * ho * wo) per offset i * kw + j."""
        kh, kw, sh, sw, ph, pw, ho, wo = grid
        n, c, h, w = x.shape
        if ph or pw:
            padded = self.xp.full((n, c, h + 2 * ph, w + 2 * pw), fill, dtype=x.dtype)
            padded[:, :, ph : ph + h, pw : pw + w] = x
            x = padded
        s = x.strides
        view = self.xp.lib.stride_tricks.as_strided(
            x, (kh, kw, n, c, ho, wo), (s[2], s[3], s[0], s[1], sh * s[2], sw * s[3])
        )
        return self.xp.ascontiguousarray(view).reshape(kh * kw, n * c * ho * wo)

    def _pool_backward(self, grid: tuple[int, ...], x_shape: Any, dtype: Any, share: Any) -> Any:
        """The input gradient, from ``share(k, out)`` writing offset k's part into ``out`` (or returning it)."""
        xp = self.xp
        kh, kw, sh, sw, ph, pw, ho, wo = grid
        n, c, h, w = x_shape
        hp, wp = h + 2 * ph, w + 2 * pw
        tiled = (kh, kw) == (sh, sw) and (hp, wp) == (ho * sh, wo * sw)
        dx = (xp.empty if tiled else xp.zeros)((n, c, hp, wp), dtype=dtype)
        for i in range(kh):
            for j in range(kw):
                view = dx[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
                if sh >= kh and sw >= kw:  # disjoint windows: write, no read
                    share(i * kw + j, view)
                else:
                    view += share(i * kw + j, None)
        return xp.ascontiguousarray(dx[:, :, ph : ph + h, pw : pw + w]) if ph or pw else dx

    def maxpool2d(
        self,
        x: Any,
        *,
        kernel_size: int | tuple[int, int] = (2, 2),
        stride: int | tuple[int, int] = (2, 2),
        padding: int | tuple[int, int] = (0, 0),
    ) -> tuple[Any, Any]:
        """Max over windows (padding counts as -inf); ``(y, argmax)``, argmax = i * kw + j of the first max."""
        xp = self.xp
        grid = self._pool_grid(x.shape, kernel_size, stride, padding)
        kh, kw, ho, wo = grid[0], grid[1], grid[6], grid[7]
        stack = self._pool_stack(x, grid, -math.inf)
        y = stack[0].copy()
        argmax = xp.zeros(y.shape, dtype=xp.int8 if kh * kw <= 128 else xp.int32)
        mask, step = xp.empty(y.shape, dtype=bool), xp.empty(y.shape, dtype=argmax.dtype)
        for k in range(1, kh * kw):
            xp.greater(stack[k], y, out=mask)
            xp.maximum(y, stack[k], out=y)  # propagates NaN
            xp.multiply(mask, k, out=step)
            xp.maximum(argmax, step, out=argmax)  # the last k that raised the max
        shape = (x.shape[0], x.shape[1], ho, wo)
        return y.reshape(shape), argmax.reshape(shape)

    def maxpool2d_backward(
        self,
        grad: Any,
        argmax: Any,
        x_shape: tuple[int, ...],
        *,
        kernel_size: int | tuple[int, int] = (2, 2),
        stride: int | tuple[int, int] = (2, 2),
        padding: int | tuple[int, int] = (0, 0),
    ) -> Any:
        """Gradient of ``maxpool2d``: ``grad`` routed to each window's argmax, summed where windows overlap."""
        xp = self.xp
        mask = xp.empty(argmax.shape, dtype=bool)

        def share(k: int, out: Any) -> Any:
            xp.equal(argmax, k, out=mask)
            return xp.multiply(grad, mask, out=out)

        return self._pool_backward(self._pool_grid(x_shape, kernel_size, stride, padding), x_shape, grad.dtype, share)

    def avgpool2d(
        self,
        x: Any,
        *,
        kernel_size: int | tuple[int, int] = (2, 2),
        stride: int | tuple[int, int] = (2, 2),
        padding: int | tuple[int, int] = (0, 0),
    ) -> Any:
        """Mean over windows, zero padding included in the count (PyTorch's ``count_include_pad=True``)."""
        grid = self._pool_grid(x.shape, kernel_size, stride, padding)
        y = self._pool_stack(x, grid, 0.0).sum(axis=0)
        y /= grid[0] * grid[1]
        return y.reshape(x.shape[0], x.shape[1], grid[6], grid[7])

    def avgpool2d_backward(
        self,
        grad: Any,
        x_shape: tuple[int, ...],
        *,
        kernel_size: int | tuple[int, int] = (2, 2),
        stride: int | tuple[int, int] = (2, 2),
        padding: int | tuple[int, int] = (0, 0),
    ) -> Any:
        """Gradient of ``avgpool2d``: ``grad / (kh * kw)`` spread over each window, summed where windows overlap."""
        grid = self._pool_grid(x_shape, kernel_size, stride, padding)
        count = grid[0] * grid[1]
        return self._pool_backward(grid, x_shape, grad.dtype, lambda k, out: self.xp.divide(grad, count, out=out))

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

    # ------------------------------------------------------------------ recurrent steps
    def _lstm_scale(self, dtype: Any) -> Any:
        """Per-gate factors (4, 1) that turn i, f, g, o into the arguments -i, -f, -2g, -o of exp."""
        cache = self.__dict__.setdefault("_recurrent_consts", {})
        key = str(dtype)
        if key not in cache:
            cache[key] = self.xp.asarray([[-1.0], [-1.0], [-2.0], [-1.0]], dtype=dtype)
        return cache[key]

    def _sigmoid_(self, z: Any, scale: Any = -1.0) -> Any:
        """sigmoid(-z * scale) in place, as 1 / (1 + exp(...)): exp is cheaper than tanh in NumPy."""
        xp = self.xp
        xp.multiply(z, scale, out=z)
        xp.minimum(z, 80.0, out=z)  # exp stays finite (no overflow warning); sigmoid(-80) is 2e-35
        xp.exp(z, out=z)
        xp.add(z, 1.0, out=z)
        return xp.reciprocal(z, out=z)

    def lstm_step(self, gates: Any, c_prev: Any, *, out: Any = None, out_c: Any = None) -> tuple[Any, Any, Any]:
        """One LSTM step from pre-activations (B, 4H), gates i, f, g, o: ``(h, c, acts)``; may overwrite gates."""
        xp = self.xp
        n, hs = c_prev.shape
        acts = gates if gates.flags.c_contiguous else xp.ascontiguousarray(gates)
        a = acts.reshape(n, 4, hs)
        self._sigmoid_(a, self._lstm_scale(acts.dtype))
        i, f, g, o = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
        xp.multiply(g, 2.0, out=g)
        xp.subtract(g, 1.0, out=g)  # tanh(g) = 2 sigmoid(2 g) - 1
        c = xp.multiply(f, c_prev, out=out_c)
        h = xp.multiply(i, g, out=out)
        xp.add(c, h, out=c)
        xp.tanh(c, out=h)
        xp.multiply(h, o, out=h)
        return h, c, acts

    def lstm_step_backward(
        self, grad_h: Any, grad_c: Any, acts: Any, c_prev: Any, c: Any, *, out: Any = None
    ) -> tuple[Any, Any]:
        """Gradients ``(grad_gates, grad_c_prev)`` of one LSTM step; ``out`` may be ``acts``, grad_c None."""
        xp = self.xp
        hs = c.shape[1]
        i, f, g, o = (acts[:, k * hs : (k + 1) * hs] for k in range(4))
        d = xp.empty(acts.shape, dtype=acts.dtype) if out is None else out
        di, df, dg, do = (d[:, k * hs : (k + 1) * hs] for k in range(4))
        tc = xp.tanh(c)
        dct = xp.multiply(tc, tc)
        xp.subtract(1.0, dct, out=dct)
        dct *= o
        dct *= grad_h
        if grad_c is not None:
            dct += grad_c  # dct: gradient wrt c, through h and directly
        tc *= grad_h
        tc *= o
        xp.subtract(1.0, o, out=do)  # o may alias do: o is not read after this
        do *= tc
        grad_c_prev = xp.multiply(dct, f)
        xp.multiply(dct, i, out=tc)
        xp.subtract(1.0, i, out=di)
        di *= g
        di *= tc
        xp.multiply(g, g, out=dg)
        xp.subtract(1.0, dg, out=dg)
        dg *= tc
        xp.subtract(1.0, f, out=tc)
        xp.multiply(tc, f, out=df)
        df *= dct
        df *= c_prev
        return d, grad_c_prev

    def gru_step(self, gi: Any, gh: Any, h_prev: Any, *, out: Any = None) -> tuple[Any, Any]:
        """One GRU step (gates r, z, n) from gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh: (h, acts); may overwrite gi."""
        xp = self.xp
        hs = h_prev.shape[1]
        acts = gi if gi.flags.c_contiguous else xp.ascontiguousarray(gi)
        rz, r, z, nn = acts[:, : 2 * hs], acts[:, :hs], acts[:, hs : 2 * hs], acts[:, 2 * hs :]
        xp.add(rz, gh[:, : 2 * hs], out=rz)
        self._sigmoid_(rz)
        h = xp.multiply(r, gh[:, 2 * hs :], out=out)
        xp.add(nn, h, out=nn)
        xp.tanh(nn, out=nn)
        xp.subtract(h_prev, nn, out=h)
        xp.multiply(h, z, out=h)
        xp.add(h, nn, out=h)
        return h, acts

    def gru_step_backward(
        self, grad_h: Any, acts: Any, gh: Any, h_prev: Any, *, out: Any = None, out_gh: Any = None
    ) -> tuple[Any, Any, Any]:
        """Gradients ``(grad_gi, grad_gh, grad_h_prev)`` of one GRU step; ``out`` may be acts, ``out_gh`` gh."""
        xp = self.xp
        hs = h_prev.shape[1]
        r, z, nn = (acts[:, k * hs : (k + 1) * hs] for k in range(3))
        d = xp.empty(acts.shape, dtype=acts.dtype) if out is None else out
        dgh = xp.empty(acts.shape, dtype=acts.dtype) if out_gh is None else out_gh
        dr, dz, dn = (d[:, k * hs : (k + 1) * hs] for k in range(3))
        grad_h_prev = xp.multiply(grad_h, z)
        t1 = xp.subtract(grad_h, grad_h_prev)  # grad_h * (1 - z)
        t2 = xp.subtract(h_prev, nn)
        t2 *= grad_h
        t2 *= z
        xp.subtract(1.0, z, out=dz)
        dz *= t2
        xp.multiply(nn, nn, out=dn)
        xp.subtract(1.0, dn, out=dn)
        dn *= t1
        xp.multiply(dn, gh[:, 2 * hs :], out=t1)  # read gh_n before out_gh may overwrite it
        xp.multiply(dn, r, out=dgh[:, 2 * hs :])
        xp.subtract(1.0, r, out=t2)
        t2 *= r
        xp.multiply(t2, t1, out=dr)
        dgh[:, : 2 * hs] = d[:, : 2 * hs]
        return d, dgh, grad_h_prev

    # ------------------------------------------------------------------ dense stacks
    def mlp_loss_grad(
        self, x: Any, target: Any, weights: Sequence[Any], biases: Sequence[Any], activations: Sequence[str],
        output: str, *, rows: Any = None, sample_weight: Any = None, weight_sum: float | None = None,
        alphas: Sequence[float] | None = None, weight_grads: Sequence[Any], bias_grads: Sequence[Any],
        workspace: dict | None = None,
    ) -> float:  # fmt: skip
        """Loss of a stack of dense layers on one batch, and the gradients of its weights and biases.

        Layer ``k`` computes ``h_k = activations[k](h_{k-1} @ weights[k].T + biases[k])`` (``alphas[k]``: the
        activation's parameter, default 0.01) from ``h_{-1} = x[rows]``, or ``x`` itself when ``rows`` is None;
        the loss is :func:`output_loss_grad`'s canonical loss of ``output`` on the last ``h`` against
        ``target[rows]``, weighted by ``sample_weight[rows]`` and divided by ``weight_sum`` (default: the batch's
        summed weight, or its length). The gradients are written (not accumulated) into ``weight_grads`` /
        ``bias_grads``; a None bias has no gradient. ``workspace``: a dict in which the kernel keeps its
        buffers between calls (one set, sized for the longest batch); pass the same dict at every step.
        Returns the loss as a float.
        """
        n_layers = len(weights)
        alphas = (0.01,) * n_layers if alphas is None else alphas
        if rows is None:
            xb, yb, wb = x, target, sample_weight
        else:
            rows = self._checked_rows(rows, x.shape[0])
            xb, yb = self._take_rows(workspace, "x", x, rows), self._take_rows(workspace, "y", target, rows)
            wb = None if sample_weight is None else self._take_rows(workspace, "w", sample_weight, rows)
        n = xb.shape[0]
        if weight_sum is None:
            weight_sum = float(n) if wb is None else float(wb.sum())
        outs = [self._scratch(workspace, ("out", k), (n, w.shape[0]), xb.dtype) for k, w in enumerate(weights)]
        h, acts = xb, []
        for k in range(n_layers):
            h, z = self.affine_act(h, weights[k], biases[k], activations[k], alpha=alphas[k], out=outs[k])
            acts.append((h, z))
        loss, g = output_loss_grad(self, h, yb, wb, weight_sum, output)
        for k in range(n_layers - 1, -1, -1):
            y_k, z_k = acts[k]
            if biases[k] is None:
                g = self.act_backward(g, y_k, z_k, activations[k], alpha=alphas[k], out=g)
            else:
                self.bias_act_backward(g, y_k, z_k, activations[k], alpha=alphas[k], out=g, bias_grad=bias_grads[k])
            self.gemm(g, acts[k - 1][0] if k else xb, trans_a=True, out=weight_grads[k])
            if k:
                g = self.gemm(
                    g, weights[k], out=self._scratch(workspace, ("delta", k), (n, weights[k].shape[1]), g.dtype)
                )
        return float(loss)

    def _checked_rows(self, rows: Any, n: int) -> Any:
        """``rows`` as an integer index array whose entries lie in [0, n) (IndexError otherwise)."""
        rows = self.asarray(rows)
        if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
            raise IndexError(f"rows must be a 1-D integer array, got {rows.dtype} of shape {rows.shape}")
        if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= n):
            raise IndexError(f"rows index out of bounds for {n} samples")
        return rows

    def _scratch(self, workspace: dict | None, key: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        """A buffer of ``shape`` kept in ``workspace``: the leading rows of one sized for the longest batch so far."""
        buf = None if workspace is None else workspace.get(key)
        if buf is None or buf.shape[0] < shape[0] or buf.shape[1:] != shape[1:] or buf.dtype != dtype:
            buf = self.alloc((max(shape[0], 0 if buf is None else buf.shape[0]), *shape[1:]), dtype, fill=None)
            if workspace is not None:
                workspace[key] = buf
        return buf if buf.shape[0] == shape[0] else buf[: shape[0]]

    def _take_rows(self, workspace: dict | None, key: str, a: Any, rows: Any) -> Any:
        """Rows ``rows`` (checked) of ``a``, gathered into a workspace buffer."""
        buf = self._scratch(workspace, ("take", key), (rows.shape[0], *a.shape[1:]), a.dtype)
        if self.xp is np:  # 'clip' skips NumPy's slow checked path into `out` (rows were checked)
            return np.take(a, rows, axis=0, out=buf, mode="clip")
        return self.xp.take(a, rows, axis=0, out=buf)
