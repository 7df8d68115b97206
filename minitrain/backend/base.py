"""The backend protocol and its reference implementation.

A backend is ``name``, an array module ``xp`` with NumPy's API, ``device``, ``is_available``, ``synchronize``,
``context`` (its device made current), ``asarray`` / ``to_numpy`` / ``alloc``, ``generator(seed)`` (random
generators on its device: a backend holds no random state of its own) and the layer-level kernels named in
``KERNELS``, each an op and its backward. Every kernel is written here once, over ``self.xp``: the NumPy backend
uses these as they are, so a subclass that sets only ``name`` and ``xp`` is complete. An accelerated backend
overrides the kernels it makes faster, keeping their signatures (``minitrain.testing.check_backend`` asserts that);
an override that cannot take its arguments (dtype, layout, size) returns ``NotImplemented``, and the next
implementation in the class hierarchy (in the end this reference) runs instead, with the same arguments: fallbacks
live in one place, ``Backend.__init_subclass__``, not in every override. Convolution and pooling windows are
described by :class:`Geometry2d`. Beyond the kernels, a backend may offer named ``extensions`` (fused paths whose
meaning belongs to their users).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

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
    "conv2d_act_pool",
    "conv2d_act_pool_backward",
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
    "lstm_sequence",
    "lstm_sequence_backward",
    "gru_sequence",
    "gru_sequence_backward",
)

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def canonical_activation(name: str | None) -> str:
    """Return the canonical activation name, accepting the aliases 'logistic', 'linear' and None.

    Parameters
    ----------
    name : str or None
        One of ``ACTIVATIONS`` or an alias.

    Returns
    -------
    str
        One of ``ACTIVATIONS``.

    Raises
    ------
    ValueError
        If ``name`` is neither.

    Examples
    --------
    >>> from minitrain.backend import canonical_activation
    >>> canonical_activation("logistic"), canonical_activation(None), canonical_activation("relu")
    ('sigmoid', 'identity', 'relu')
    """
    name = _ALIASES.get(name, name)
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")
    return name


class Geometry2d(NamedTuple):
    """The windows of a 2-D convolution or pooling over NCHW input: kernel ``(kh, kw)``, stride ``(sh, sw)``,
    zero padding ``(ph, pw)`` on each side, and the output's height and width ``(ho, wo)``.

    Build one with :func:`geometry2d`; the conv and pooling kernels take it.

    Examples
    --------
    >>> from minitrain.backend import geometry2d
    >>> g = geometry2d((1, 3, 32, 32), kernel_size=3, stride=2, padding=1)
    >>> g
    Geometry2d(kh=3, kw=3, sh=2, sw=2, ph=1, pw=1, ho=16, wo=16)
    >>> g.ho == (32 + 2 * g.ph - g.kh) // g.sh + 1
    True
    """

    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    ho: int
    wo: int


def pair(v: Any) -> tuple[int, int]:
    """``v`` as two ints, one per spatial axis (an int serves both)."""
    a, b = v if isinstance(v, (tuple, list)) else (v, v)
    return int(a), int(b)


def geometry2d(x_shape: Any, kernel_size: Any, stride: Any, padding: Any) -> Geometry2d:
    """The :class:`Geometry2d` of windows ``kernel_size`` / ``stride`` / ``padding`` (ints or pairs) over
    inputs of shape ``x_shape`` (n, c, h, w).

    Examples
    --------
    >>> geometry2d((8, 3, 28, 28), 3, 1, 1)
    Geometry2d(kh=3, kw=3, sh=1, sw=1, ph=1, pw=1, ho=28, wo=28)
    """
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel_size), pair(stride), pair(padding)
    ho, wo = (int(x_shape[2]) + 2 * ph - kh) // sh + 1, (int(x_shape[3]) + 2 * pw - kw) // sw + 1
    return Geometry2d(kh, kw, sh, sw, ph, pw, ho, wo)


def _with_fallback(fn: Callable[..., Any], owner: type, name: str) -> Callable[..., Any]:
    """``fn`` (kernel ``name`` as defined in class ``owner``), running the next implementation after ``owner``
    in the instance's class hierarchy, with the same arguments, when ``fn`` returns ``NotImplemented``.

    The wrapper is generated with ``fn``'s own parameters, so a call costs no more than calling ``fn`` (a
    generic ``*args, **kwargs`` wrapper repacks the arguments: about 0.8 us for an optimizer step's keywords).
    """
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):

        @functools.wraps(fn)
        def kernel(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = fn(self, *args, **kwargs)
            return getattr(super(owner, self), name)(*args, **kwargs) if result is NotImplemented else result

    else:
        env: dict[str, Any] = {"_fn": fn, "_owner": owner, "_name": name}
        head, call, star = [], [], False
        for i, p in enumerate(params):
            if p.kind is p.KEYWORD_ONLY and not star:
                head.append("*")
                star = True
            default = ""
            if p.default is not p.empty:
                env[f"_d{i}"], default = p.default, f"=_d{i}"
            head.append(f"{p.name}{default}")
            if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY):
                head.append("/")
            call.append(f"{p.name}={p.name}" if p.kind is p.KEYWORD_ONLY else p.name)
        me, args = params[0].name, ", ".join(call[1:])
        source = (
            f"def kernel({', '.join(head)}):\n"
            f"    result = _fn({', '.join(call)})\n"
            f"    if result is NotImplemented:\n"
            f"        return getattr(super(_owner, {me}), _name)({args})\n"
            f"    return result\n"
        )
        exec(compile(source, f"<fallback of {owner.__name__}.{name}>", "exec"), env)
        kernel = functools.update_wrapper(env["kernel"], fn)
    kernel.__minitrain_fallback__ = True  # type: ignore[attr-defined]
    return kernel


class Backend:
    """Array module plus named kernels; the reference implementation of every kernel.

    Subclasses set ``name`` and ``xp`` and may override any kernel for speed, keeping its signature; an
    override returns ``NotImplemented`` for arguments it does not accelerate, and the reference runs instead.
    Kernels take and return arrays of this backend (never Tensors).

    Parameters
    ----------
    device : int, optional
        Device index for backends with several devices (``"cupy:1"``); CPU backends ignore it.

    Examples
    --------
    A backend that overrides one kernel, and leaves the arguments it does not handle to the reference:

    >>> import minitrain as mt
    >>> from minitrain.backend import Backend, register_backend, unregister_backend
    >>> class TracingBackend(Backend):
    ...     name = "tracing"
    ...     seen = []
    ...
    ...     def act(self, z, activation="identity", *, alpha=0.01, out=None):
    ...         self.seen.append(activation)
    ...         return NotImplemented  # the reference kernel runs instead, with the same arguments
    >>> register_backend("tracing", TracingBackend)
    >>> y = mt.nn.ReLU(backend="tracing")(mt.tensor([-1.0, 2.0], backend="tracing"))
    >>> y.numpy().tolist(), TracingBackend.seen, y.backend.name
    ([0.0, 2.0], ['relu'], 'tracing')
    >>> unregister_backend("tracing")
    """

    name = "base"
    kernels = KERNELS
    #: Optional fused paths beyond the layer kernels, by name: a callable or a ``"module:attribute"`` string
    #: (imported on first use). What a name means is defined by the code that looks it up, which runs its own
    #: composition of the kernels when a backend offers none (e.g. a whole training step of one kind of model).
    extensions: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        for owner in mro[: mro.index(Backend)]:  # the subclass and its mixins: every kernel override
            for name in KERNELS:
                fn = owner.__dict__.get(name)
                if callable(fn) and not getattr(fn, "__minitrain_fallback__", False):
                    setattr(owner, name, _with_fallback(fn, owner, name))

    def __init__(self, device: int | None = None) -> None:
        self.device_index = 0 if device is None else int(device)

    @property
    def spec(self) -> str:
        """The name ``get_backend`` parses back to this backend: ``"numba"``, or ``"cupy:1"`` for device 1."""
        return self.name if self.device_index == 0 else f"{self.name}:{self.device_index}"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Unpickle to the registry's instance of this backend, so identity checks keep working.
        from .registry import get_backend

        return get_backend, (self.spec,)

    def extension(self, name: str) -> Callable[..., Any] | None:
        """The optional fused path ``name`` this backend offers (see ``extensions``), or None."""
        target = type(self).extensions.get(name)
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
        return target

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

    def context(self) -> Any:
        """A context manager in which this backend's device is the current one (for work between kernels, such
        as a training loop, on backends with several devices); a no-op context on CPU backends."""
        return contextlib.nullcontext()

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
    def generator(self, seed: Any = None) -> Any:
        """A new random generator on this backend's device, seeded with ``seed`` (an int, or None for fresh
        entropy), with NumPy ``Generator``'s methods (``random``, ``uniform``, ``normal``, ``integers``). Kernels
        that draw random numbers take one: the backend itself holds no random state."""
        return np.random.default_rng(seed)

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

    def dropout(self, x: Any, p: float, generator: Any, *, out: Any = None) -> tuple[Any, Any]:
        """Inverted dropout drawing from ``generator`` (see ``generator()``); returns ``(y, mask)`` with the mask
        already scaled by 1/(1-p)."""
        xp = self.xp
        if p >= 1.0:
            mask = xp.zeros_like(x)
        else:
            keep = self.asarray(generator.random(x.shape, dtype=np.float64 if x.dtype == np.float64 else np.float32))
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
    # pass recomputes im2col instead of keeping c * kh * kw copies of each layer's input alive until then.
    # Pooling copies the windows to one contiguous row per offset first: reductions over the strided views
    # themselves were slower. The fused conv2d_act_pool instead pools the GEMM's output where it lies: channels-last
    # (a pixel's o channels are the views' inner runs) or, where the columns are fewer than the output channels,
    # with the columns gathered pool-offset-major (each window offset a contiguous block); see _block_tiles.
    @staticmethod
    def _extended(x_shape: Any, g: Geometry2d) -> tuple[int, int, int]:
        """``(hp, wg, wq)``: padded height, extended grid width and its span in input columns."""
        wg = -(-(int(x_shape[3]) + 2 * g.pw) // g.sw)
        return int(x_shape[2]) + 2 * g.ph, wg, wg * g.sw

    def _grid_view(
        self, buf: Any, g: Geometry2d, ext: tuple, n: int, c: int, offset: int, kmajor: bool, tiles: Any = None
    ) -> Any:
        """Strided view of the padded planes in ``buf``: (c, kh, kw, *grid) or, at ``offset``, (c, *grid). The grid
        is (n, ho, wg), or with ``tiles`` (qh, qw, hq, wq) the outputs that disjoint qh x qw pool windows cover,
        offset-major (qh, qw, n, hq, wq): then each pool offset's outputs are one contiguous block of GEMM rows."""
        hp, wg, wq = ext
        it, ps = buf.itemsize, hp * wq
        if tiles is None:
            grid, steps = (n, g.ho, wg), (c * ps, g.sh * wq, g.sw)
        else:
            qh, qw, hq, wt = tiles
            grid, steps = (qh, qw, n, hq, wt), (g.sh * wq, g.sw, c * ps, qh * g.sh * wq, qw * g.sw)
        shape, strides = ((c, g.kh, g.kw, *grid), (ps, wq, 1, *steps)) if kmajor else ((c, *grid), (ps, *steps))
        return self.xp.lib.stride_tricks.as_strided(buf[offset:], shape, tuple(s * it for s in strides))

    def _im2col(self, x: Any, g: Geometry2d, ext: tuple, ones: bool, tiles: Any = None) -> Any:
        """Columns (c * kh * kw, grid size) of ``x`` (n, c, h, w) on the extended grid (or the grid of ``tiles``,
        see ``_grid_view``), plus a row of ones."""
        xp = self.xp
        n, c, h, w = x.shape
        hp, _, wq = ext
        # Only the input that windows cover is copied, so the extra columns read nothing else (an inf there
        # would make 0 * inf = NaN in dweight); the tail keeps the last row's extra columns in the buffer.
        h = max(0, min(h, (g.ho - 1) * g.sh + g.kh - g.ph))
        w = max(0, min(w, (g.wo - 1) * g.sw + g.kw - g.pw))
        buf = xp.zeros(n * c * hp * wq + g.kw, dtype=x.dtype)
        buf[: n * c * hp * wq].reshape(n, c, hp, wq)[:, :, g.ph : g.ph + h, g.pw : g.pw + w] = x[:, :, :h, :w]
        view = self._grid_view(buf, g, ext, n, c, 0, True, tiles)
        cols = xp.empty((c * g.kh * g.kw + ones, math.prod(view.shape[3:])), dtype=x.dtype)
        cols[: c * g.kh * g.kw].reshape(view.shape)[...] = view
        if ones:  # the bias as one more input channel: the GEMMs add it and sum its gradient
            cols[-1] = 1
        return cols

    #: Bytes of columns per chunk of images where the GEMM's output is channels-last on the extended grid (each
    #: image's output rows are then one contiguous block): columns and output of a chunk stay in cache.
    conv_chunk_bytes: ClassVar[int] = 8 << 20

    def _conv_chunk(self, x: Any, k: int, g: Geometry2d, ext: tuple) -> int:
        """Images per chunk of the channels-last convolution of ``x`` with ``k`` rows of columns."""
        return max(1, self.conv_chunk_bytes // (k * g.ho * ext[1] * x.itemsize))

    def _conv_z(
        self, x: Any, weight: Any, bias: Any, g: Geometry2d, ext: tuple, channels_last: bool = False, tiles: Any = None
    ) -> Any:
        """The GEMM's output: the pre-activation, bias included, on the extended grid (o, n, ho, wg), or on the
        grid of ``tiles`` (see ``_grid_view``) as (o, grid size); if ``channels_last``, (grid size, o)."""
        o = weight.shape[0]
        w2 = weight.reshape(o, -1)
        if bias is not None:
            w2 = self.xp.concatenate((w2, bias.reshape(o, 1).astype(w2.dtype, copy=False)), axis=1)
        n, nb = x.shape[0], self._conv_chunk(x, w2.shape[1], g, ext) if channels_last and tiles is None else x.shape[0]
        if nb >= n:
            cols = self._im2col(x, g, ext, bias is not None, tiles)
            if channels_last:  # the same GEMM transposed: BLAS reads both operands transposed, no copy
                return self.gemm(cols, w2, trans_a=True, trans_b=True)
            z = self.gemm(w2, cols)
            return z if tiles is not None else z.reshape(o, n, g.ho, ext[1])
        rows = g.ho * ext[1]  # per image
        z = self.xp.empty((n * rows, o), dtype=self.xp.result_type(x.dtype, w2.dtype))
        for n0 in range(0, n, nb):
            cols = self._im2col(x[n0 : n0 + nb], g, ext, bias is not None)
            self.gemm(cols, w2, trans_a=True, trans_b=True, out=z[n0 * rows : n0 * rows + cols.shape[1]])
        return z

    def _conv_grads(
        self, gz: Any, x: Any, weight: Any, g: Geometry2d, ext: tuple, need_input_grad: bool,
        channels_last: bool = False, tiles: Any = None,
    ) -> tuple:  # fmt: skip
        """``(dx or None, dweight, dbias)`` from the output gradient ``gz`` in the GEMM's layout (o, n, ho, wg), or
        (grid size, o) if ``channels_last`` (the grid of ``tiles`` if given), zero in the extra columns; in chunks
        of images as ``_conv_z``."""
        xp = self.xp
        n, c, h, w = x.shape
        o = weight.shape[0]
        hp, _, wq = ext
        ps = c * hp * wq  # one image's padded planes
        nb = self._conv_chunk(x, c * g.kh * g.kw + 1, g, ext) if channels_last and tiles is None else max(n, 1)
        gz = gz.reshape(-1, o) if channels_last else gz.reshape(o, -1)
        rows = gz.shape[0] // max(n, 1)  # per image, where channels-last
        buf = xp.zeros(n * ps + g.kw, dtype=x.dtype) if need_input_grad else None
        dwb = None
        for n0 in range(0, max(n, 1), nb):  # one pass for an empty batch too
            xc = x[n0 : n0 + nb]
            cols = self._im2col(xc, g, ext, True, tiles)
            gzc = gz[n0 * rows : (n0 + xc.shape[0]) * rows] if channels_last else gz
            part = self.gemm(cols, gzc) if channels_last else self.gemm(gzc, cols, trans_b=True)
            dwb = part if dwb is None else xp.add(dwb, part, out=dwb)  # (c * kh * kw + 1, o) or its transpose
            if not need_input_grad:
                continue
            dcols = self.gemm(weight.reshape(o, -1), gzc, trans_a=True, trans_b=channels_last, out=cols[:-1])
            for i in range(g.kh):
                for j in range(g.kw):  # col2im: the extra columns add exact zeros wherever they land
                    view = self._grid_view(buf[n0 * ps :], g, ext, xc.shape[0], c, i * wq + j, False, tiles)
                    view += dcols.reshape(c, g.kh, g.kw, *view.shape[1:])[:, i, j]
        if channels_last:
            dweight = xp.ascontiguousarray(dwb[:-1].T).reshape(weight.shape).astype(weight.dtype, copy=False)
            dbias = dwb[-1].astype(gz.dtype)
        else:
            dweight = dwb[:, :-1].reshape(weight.shape).astype(weight.dtype, copy=False)
            dbias = dwb[:, -1].astype(gz.dtype, copy=False)
        if not need_input_grad:
            return None, dweight, dbias
        dx = buf[: n * ps].reshape(n, c, hp, wq)[:, :, g.ph : g.ph + h, g.pw : g.pw + w]
        return xp.ascontiguousarray(dx), dweight, dbias

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
        g = geometry2d(x.shape, weight.shape[2:], stride, padding)
        z = self._conv_z(x, weight, bias, g, self._extended(x.shape, g))[..., : g.wo]
        y = self.xp.empty((x.shape[0], weight.shape[0], g.ho, g.wo), dtype=x.dtype)
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
        g = geometry2d(x.shape, weight.shape[2:], stride, padding)
        ext = self._extended(x.shape, g)
        wg = ext[1]
        gz = (self.xp.zeros if wg > g.wo else self.xp.empty)((weight.shape[0], x.shape[0], g.ho, wg), grad.dtype)
        gz[..., : g.wo] = grad.transpose(1, 0, 2, 3)  # the extra columns stay 0
        return self._conv_grads(gz, x, weight, g, ext, need_input_grad)

    def _pool_stack(self, x: Any, g: Geometry2d, fill: float) -> Any:
        """The windows of ``x`` padded with ``fill``, one contiguous row (n * c * ho * wo) per offset i * kw + j."""
        n, c, h, w = x.shape
        if g.ph or g.pw:
            padded = self.xp.full((n, c, h + 2 * g.ph, w + 2 * g.pw), fill, dtype=x.dtype)
            padded[:, :, g.ph : g.ph + h, g.pw : g.pw + w] = x
            x = padded
        s = x.strides
        view = self.xp.lib.stride_tricks.as_strided(
            x, (g.kh, g.kw, n, c, g.ho, g.wo), (s[2], s[3], s[0], s[1], g.sh * s[2], g.sw * s[3])
        )
        return self.xp.ascontiguousarray(view).reshape(g.kh * g.kw, n * c * g.ho * g.wo)

    def _pool_backward(self, g: Geometry2d, x_shape: Any, dtype: Any, share: Any) -> Any:
        """The input gradient, from ``share(k, out)`` writing offset k's part into ``out`` (or returning it)."""
        xp = self.xp
        n, c, h, w = x_shape
        hp, wp = h + 2 * g.ph, w + 2 * g.pw
        tiled = (g.kh, g.kw) == (g.sh, g.sw) and (hp, wp) == (g.ho * g.sh, g.wo * g.sw)
        dx = (xp.empty if tiled else xp.zeros)((n, c, hp, wp), dtype=dtype)
        for i in range(g.kh):
            for j in range(g.kw):
                view = dx[:, :, i : i + g.sh * (g.ho - 1) + 1 : g.sh, j : j + g.sw * (g.wo - 1) + 1 : g.sw]
                if g.sh >= g.kh and g.sw >= g.kw:  # disjoint windows: write, no read
                    share(i * g.kw + j, view)
                else:
                    view += share(i * g.kw + j, None)
        return xp.ascontiguousarray(dx[:, :, g.ph : g.ph + h, g.pw : g.pw + w]) if g.ph or g.pw else dx

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
        g = geometry2d(x.shape, kernel_size, stride, padding)
        stack = self._pool_stack(x, g, -math.inf)
        y = stack[0].copy()
        argmax = xp.zeros(y.shape, dtype=xp.int8 if g.kh * g.kw <= 128 else xp.int32)
        mask, step = xp.empty(y.shape, dtype=bool), xp.empty(y.shape, dtype=argmax.dtype)
        for k in range(1, g.kh * g.kw):
            xp.greater(stack[k], y, out=mask)
            xp.maximum(y, stack[k], out=y)  # propagates NaN
            xp.multiply(mask, k, out=step)
            xp.maximum(argmax, step, out=argmax)  # the last k that raised the max
        shape = (x.shape[0], x.shape[1], g.ho, g.wo)
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

        return self._pool_backward(geometry2d(x_shape, kernel_size, stride, padding), x_shape, grad.dtype, share)

    def avgpool2d(
        self,
        x: Any,
        *,
        kernel_size: int | tuple[int, int] = (2, 2),
        stride: int | tuple[int, int] = (2, 2),
        padding: int | tuple[int, int] = (0, 0),
    ) -> Any:
        """Mean over windows, zero padding included in the count (PyTorch's ``count_include_pad=True``)."""
        g = geometry2d(x.shape, kernel_size, stride, padding)
        y = self._pool_stack(x, g, 0.0).sum(axis=0)
        y /= g.kh * g.kw
        return y.reshape(x.shape[0], x.shape[1], g.ho, g.wo)

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
        g = geometry2d(x_shape, kernel_size, stride, padding)
        count = g.kh * g.kw
        return self._pool_backward(g, x_shape, grad.dtype, lambda k, out: self.xp.divide(grad, count, out=out))

    @staticmethod
    def _block_args(activation: str | None, pool: Any) -> tuple[str, tuple[int, int]]:
        """``conv2d_act_pool``'s activation (one whose backward reads its output) and pool size, checked."""
        activation = canonical_activation(activation)
        if activation in NEEDS_PREACTIVATION:
            raise ValueError(f"conv2d_act_pool: {activation!r} needs its input in the backward; use conv2d and act")
        return activation, pair(pool)

    @staticmethod
    def _block_windows(a: Any, pool: tuple[int, int], hq: int, wq: int) -> list[Any]:
        """The (n, hq, wq, o) views of the channels-last array ``a`` (n, ho, wg, o) at each offset i * qw + j of
        the pool windows: each view's inner run is the o channels of one pixel."""
        qh, qw = pool
        return [a[:, i : hq * qh : qh, j : wq * qw : qw] for i in range(qh) for j in range(qw)]

    def conv2d_act_pool(
        self,
        x: Any,
        weight: Any,
        bias: Any,
        *,
        stride: int | tuple[int, int] = (1, 1),
        padding: int | tuple[int, int] = (0, 0),
        activation: str = "relu",
        alpha: float = 0.01,
        pool: int | tuple[int, int] = (2, 2),
    ) -> tuple[Any, Any]:
        """``maxpool2d(act(conv2d(x, weight, bias)))`` over disjoint ``pool`` windows (kernel size and stride
        ``pool``, no padding): ``(y, argmax)``; with ``pool`` (1, 1) no pooling, ``(act(conv2d(...)), None)``.

        One kernel for the usual conv -> activation -> pooling block, so that a backend can fuse them around its
        GEMM. The activation's backward must read its output only (every activation but gelu and gelu_tanh).
        """
        xp = self.xp
        activation, pool = self._block_args(activation, pool)
        g = geometry2d(x.shape, weight.shape[2:], stride, padding)
        # The same values as the three kernels in turn: the activation in place (ReLU inside the pooling), the
        # pooling over views of the GEMM's output, and only the pooled result transposed to NCHW. Where the columns
        # are gathered pool-offset-major (``_block_tiles``), the GEMM's output is (o, qh * qw, n, hq, wq) and each
        # window's view has contiguous runs of n * hq * wq; else it is channels-last (n, ho, wg, o), and the views
        # are strided, with a pixel's o channels as their inner runs.
        n, o = x.shape[0], weight.shape[0]
        ext, tiles = self._extended(x.shape, g), self._block_tiles(x, weight, g, pool)
        z = self._conv_z(x, weight, bias, g, ext, channels_last=tiles is None, tiles=tiles)
        relu = activation == "relu" and pool != (1, 1)  # applied inside the pooling: no pass over all of z
        a = z if relu else self.act(z, activation, alpha=alpha, out=z)
        if pool == (1, 1):
            return xp.ascontiguousarray(a.reshape(n, g.ho, ext[1], o)[:, :, : g.wo].transpose(0, 3, 1, 2)), None
        hq, wq = g.ho // pool[0], g.wo // pool[1]
        if tiles is None:
            windows = self._block_windows(a.reshape(n, g.ho, ext[1], o), pool, hq, wq)
            return self._window_max(windows, (0, 3, 1, 2), relu)
        a = a.reshape(o, pool[0] * pool[1], n, hq, wq)
        return self._window_max([a[:, k] for k in range(pool[0] * pool[1])], (1, 0, 2, 3), relu)

    def _block_tiles(self, x: Any, weight: Any, g: Geometry2d, pool: tuple[int, int]) -> Any:
        """``(qh, qw, hq, wq)`` where ``conv2d_act_pool`` gathers its columns pool-offset-major, else None: where
        the columns (c * kh * kw rows) are fewer than the output channels. The gathering reads shorter strided runs
        then (slower than the extended grid's long runs, as is that layout's col2im), and the pooling and its
        backward read and write long contiguous runs of the GEMM's output instead of runs of o channels."""
        if pool == (1, 1) or x.shape[1] * g.kh * g.kw >= weight.shape[0]:
            return None
        return (*pool, g.ho // pool[0], g.wo // pool[1])

    def _window_max(self, windows: list[Any], axes: tuple[int, ...], relu: bool = False) -> tuple[Any, Any]:
        """Max over same-shape ``windows`` (of their ReLU if ``relu``) and the index of the first max (NaN
        propagates; argmax int8 if it fits, else int32), both contiguous in the order ``axes`` of the windows' axes.

        With ``relu`` the running max starts at ``max(w0, 0)``, so it is >= 0 (or NaN) from then on: there
        ``relu(w) > y`` exactly when ``w > y`` and ``max(y, relu(w)) == max(y, w)``, the same values and
        argmax as pooling the activated windows."""
        xp = self.xp
        shape = windows[0].shape
        itype = xp.int8 if len(windows) <= 128 else xp.int32
        if len(windows) == 1:
            y = xp.maximum(windows[0], 0) if relu else windows[0]
            return xp.ascontiguousarray(y.transpose(axes)), xp.zeros(tuple(shape[i] for i in axes), itype)
        if relu:
            y, mask, start = xp.maximum(windows[0], 0), xp.empty(shape, dtype=bool), 1
        else:
            y, mask, start = xp.maximum(windows[0], windows[1]), xp.greater(windows[1], windows[0]), 2
        # the comparisons read as int8 where the offsets fit: products without a bool-to-int cast
        flags = mask.view(itype) if itype == xp.int8 else mask
        argmax = flags.astype(itype) if start == 2 else xp.zeros(shape, dtype=itype)
        step = xp.empty(shape, dtype=itype)
        for k in range(start, len(windows)):  # argmax: the last k that raised the max
            xp.greater(windows[k], y, out=mask)
            xp.maximum(y, windows[k], out=y)  # propagates NaN
            xp.multiply(flags, k, out=step)
            xp.maximum(argmax, step, out=argmax)
        return xp.ascontiguousarray(y.transpose(axes)), xp.ascontiguousarray(argmax.transpose(axes))

    def conv2d_act_pool_backward(
        self,
        grad: Any,
        x: Any,
        weight: Any,
        y: Any,
        argmax: Any,
        *,
        stride: int | tuple[int, int] = (1, 1),
        padding: int | tuple[int, int] = (0, 0),
        activation: str = "relu",
        alpha: float = 0.01,
        pool: int | tuple[int, int] = (2, 2),
        need_input_grad: bool = True,
    ) -> tuple[Any, Any, Any]:
        """Gradients of ``conv2d_act_pool`` from its output ``y`` and ``argmax``: ``(dx or None, dweight, dbias)``.

        The activation's derivative is taken at the pooled output (the window's maximum is its value at the
        argmax), then routed to the argmax, as ``maxpool2d_backward`` and ``act_backward`` do in turn.
        """
        xp = self.xp
        activation, pool = self._block_args(activation, pool)
        g = geometry2d(x.shape, weight.shape[2:], stride, padding)
        ext = self._extended(x.shape, g)
        tiles = self._block_tiles(x, weight, g, pool)
        gy = self.act_backward(grad, y, None, activation, alpha=alpha)
        if tiles is not None:  # the GEMM's output gradient (o, qh * qw, n, hq, wq), as in conv2d_act_pool
            gy, at = (xp.ascontiguousarray(a.transpose(1, 0, 2, 3)) for a in (gy, argmax))
            gz = xp.empty((gy.shape[0], pool[0] * pool[1], *gy.shape[1:]), dtype=grad.dtype)
            mask = xp.empty(gy.shape, dtype=bool)
            for k in range(pool[0] * pool[1]):  # as maxpool2d_backward
                xp.multiply(gy, xp.equal(at, k, out=mask), out=gz[:, k])
            return self._conv_grads(gz, x, weight, g, ext, need_input_grad, tiles=tiles)
        gy = xp.ascontiguousarray(gy.transpose(0, 2, 3, 1))
        hq, wq = gy.shape[1:3]
        gz = xp.empty((x.shape[0], g.ho, ext[1], weight.shape[0]), dtype=grad.dtype)  # else channels-last
        gz[:, hq * pool[0] :] = 0  # what no window covers, and the extra columns, get no gradient
        gz[:, :, wq * pool[1] :] = 0
        if pool == (1, 1):
            gz[:, :, : g.wo] = gy
        else:
            at, mask = xp.ascontiguousarray(argmax.transpose(0, 2, 3, 1)), xp.empty(gy.shape, dtype=bool)
            for k, view in enumerate(self._block_windows(gz, pool, hq, wq)):  # as maxpool2d_backward
                xp.multiply(gy, xp.equal(at, k, out=mask), out=view)
        return self._conv_grads(gz, x, weight, g, ext, need_input_grad, channels_last=True)

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

    # ------------------------------------------------------------------ recurrent layers over a sequence
    # A layer over T steps from its input projections (x W_ih^T for every step at once, one GEMM by the caller):
    # per step one GEMM with the recurrent weights and the step kernel; the backward runs backpropagation through
    # time the same way and returns the gate gradients of every step, from which the caller gets the weight
    # gradients with one GEMM each.
    def lstm_sequence(
        self, gates: Any, w_hh: Any, bias: Any, h0: Any, c0: Any, *, out: Any = None, out_c: Any = None
    ) -> tuple[Any, Any, Any]:
        """An LSTM layer from input projections (T, B, 4H), gates i, f, g, o, plus ``bias`` (4H,) (None: none) and
        initial states (B, H) (None: zeros): ``(h, c, acts)``, h (T + 1, B, H) = h_0 .. h_T (into ``out``), c (T, B,
        H) = c_1 .. c_T (into ``out_c``), acts the activated gates; may overwrite gates."""
        xp = self.xp
        steps, n, width = gates.shape
        hs = width // 4
        acts = gates if gates.flags.c_contiguous else xp.ascontiguousarray(gates)
        if bias is not None:
            acts += bias
        h = xp.empty((steps + 1, n, hs), dtype=acts.dtype) if out is None else out
        c = xp.empty((steps, n, hs), dtype=acts.dtype) if out_c is None else out_c
        h[0] = 0 if h0 is None else h0
        c_init = xp.zeros((n, hs), dtype=acts.dtype) if c0 is None else c0
        if self._reference_lstm_steps():
            self._lstm_sequence_rows(acts, w_hh, h, c, c_init)
            return h, c, acts
        rec = xp.empty((n, width), dtype=acts.dtype)
        for t in range(steps):
            g = acts[t]
            g += self.gemm(h[t], w_hh, trans_b=True, out=rec)
            a = self.lstm_step(g, c[t - 1] if t else c_init, out=h[t + 1], out_c=c[t])[2]
            if a is not g:
                g[...] = a
        return h, c, acts

    def lstm_sequence_backward(
        self, grad_h: Any, grad_c: Any, acts: Any, w_hh: Any, c0: Any, c: Any, *, out: Any = None, need_h0: bool = True
    ) -> tuple[Any, Any, Any, Any]:
        """Gradients of ``lstm_sequence`` from grad_h (T, B, H) wrt h_1 .. h_T and grad_c (B, H) wrt c_T (or None):
        ``(grad_gates (T, B, 4H), grad_bias (4H,), grad_h0, grad_c0)``; grad_h0 None unless ``need_h0``."""
        xp = self.xp
        steps, n, hs = c.shape
        d = xp.empty(acts.shape, dtype=acts.dtype) if out is None else out
        c_init = xp.zeros((n, hs), dtype=acts.dtype) if c0 is None else c0
        gc, dh = grad_c, None
        if self._reference_lstm_steps():
            gc, dh = self._lstm_sequence_backward_by_gate(grad_h, grad_c, acts, w_hh, c_init, c, d, need_h0)
        else:
            for t in range(steps - 1, -1, -1):
                g = grad_h[t] if dh is None else xp.add(grad_h[t], dh, out=dh)
                a = acts[t]
                c_prev = c[t - 1] if t else c_init
                gc = self.lstm_step_backward(g, gc, a, c_prev, c[t], out=a if d is acts else d[t])[1]
                if t or need_h0:
                    dh = self.gemm(d[t], w_hh, out=xp.empty((n, hs), dtype=d.dtype) if dh is None else dh)
        zeros = lambda: xp.zeros((n, hs), dtype=acts.dtype)  # noqa: E731
        grad_h0 = (zeros() if dh is None else dh) if need_h0 else None
        return d, self._column_sums(d), grad_h0, zeros() if gc is None else gc

    # The reference LSTM over a sequence (backends with their own step kernels, as CuPy, keep calling those): a NumPy
    # ufunc on one gate's column block of the (B, 4H) rows costs several times the same ufunc on a contiguous array
    # (a strided loop per row, 64 elements each at H = 64), so the forward activates all four gates with whole-row
    # passes (sigmoid as 0.5 tanh(0.5 z) + 0.5: one tanh pass, factors folded into the recurrent weights) and only
    # the cell update reads gate blocks; the backward copies a chunk of steps gate-major, (T', 4, B, H), computes
    # every factor that needs no gradient over the whole chunk at once, and per step keeps a few products.
    def _column_sums(self, d: Any) -> Any:
        """Sums of (T, B, G) gate gradients over steps and batch (G,): a vector-matrix product, half the time of
        ``sum(axis=0)`` in NumPy."""
        rows = d.reshape(-1, d.shape[-1])
        return self.xp.matmul(self.xp.ones(rows.shape[0], dtype=d.dtype), rows)

    def _reference_lstm_steps(self) -> bool:
        cls = type(self)
        return cls.lstm_step is Backend.lstm_step and cls.lstm_step_backward is Backend.lstm_step_backward

    def _lstm_gate_consts(self, dtype: Any, hs: int) -> tuple[Any, Any]:
        """Factors and offsets (4H,) with sigmoid(z) = 0.5 tanh(0.5 z) + 0.5 for gates i, f, o and tanh(z) for g."""
        cache = self.__dict__.setdefault("_recurrent_consts", {})
        key = ("by_gate", str(dtype), hs)
        if key not in cache:
            rows = ([0.5, 0.5, 1.0, 0.5], [0.5, 0.5, 0.0, 0.5])
            cache[key] = tuple(self.xp.repeat(self.xp.asarray(v, dtype=dtype), hs) for v in rows)
        return cache[key]

    def _lstm_sequence_rows(self, acts: Any, w_hh: Any, h: Any, c: Any, c_prev: Any) -> None:
        """The recurrence of ``lstm_sequence`` with whole-row passes: activated gates into ``acts``, h and c."""
        xp = self.xp
        steps, n, width = acts.shape
        hs, dt = width // 4, acts.dtype
        half, offset = self._lstm_gate_consts(dt, hs)
        w = xp.ascontiguousarray((w_hh * half[:, None]).T, dtype=dt)  # (in, 4H), halved for i, f, o
        rec, tmp = xp.empty((n, width), dtype=dt), xp.empty((n, hs), dtype=dt)
        for t in range(steps):
            a = acts[t]
            xp.matmul(h[t], w, out=rec)
            xp.multiply(a, half, out=a)
            xp.add(a, rec, out=a)
            xp.tanh(a, out=a)  # sigmoid(z) = 0.5 tanh(0.5 z) + 0.5 (i, f, o), tanh(z) (g): one pass for all four
            xp.multiply(a, half, out=a)
            xp.add(a, offset, out=a)
            a4 = a.reshape(n, 4, hs)
            ct, ht = c[t], h[t + 1]
            xp.multiply(a4[:, 1], c_prev, out=ct)
            xp.multiply(a4[:, 0], a4[:, 2], out=tmp)
            xp.add(ct, tmp, out=ct)
            xp.tanh(ct, out=ht)
            xp.multiply(ht, a4[:, 3], out=ht)
            c_prev = ct

    def _lstm_sequence_backward_by_gate(
        self, grad_h: Any, grad_c: Any, acts: Any, w_hh: Any, c_init: Any, c: Any, d: Any, need_h0: bool
    ) -> tuple[Any, Any]:
        """Backpropagation through time of ``_lstm_sequence_rows``: gate gradients into ``d`` (may be acts);
        ``(grad_c0, grad_h0 or None)``. Per chunk of steps, the factors that need no gradient are computed for all
        its steps at once (dgate = k * (dc, dc, dc, dh), dc = kc * dh + f' dc'); per step only a few products."""
        xp = self.xp
        steps, n, width = acts.shape
        hs, dt = width // 4, acts.dtype
        span = max(1, min(steps, (1 << 17) // max(1, n * width)))  # steps per chunk: 512 KiB in float32
        q, k = xp.empty((span, 4, n, hs), dtype=dt), xp.empty((span, 4, n, hs), dtype=dt)
        kc, d4 = xp.empty((span, n, hs), dtype=dt), xp.empty((4, n, hs), dtype=dt)
        dc, gc = xp.empty((n, hs), dtype=dt), xp.empty((n, hs), dtype=dt)
        gc[...] = 0 if grad_c is None else grad_c  # the gradient wrt c_t from step t + 1 (and grad_c)
        dh = None
        for stop in range(steps, 0, -span):
            start = max(0, stop - span)
            m = stop - start
            qs, ks, kcs = q[:m], k[:m], kc[:m]
            qs[...] = acts[start:stop].reshape(m, n, 4, hs).transpose(0, 2, 1, 3)
            i, _, g, o = (qs[:, j] for j in range(4))
            xp.subtract(1.0, qs, out=ks)
            ks *= qs  # s (1 - s) for i, f, o
            xp.tanh(c[start:stop], out=kcs)
            ks[:, 0] *= g
            ks[1:, 1] *= c[start : stop - 1]  # f (1 - f) c_prev
            ks[0, 1] *= c[start - 1] if start else c_init
            xp.multiply(g, g, out=ks[:, 2])
            xp.subtract(1.0, ks[:, 2], out=ks[:, 2])
            ks[:, 2] *= i
            ks[:, 3] *= kcs
            kcs *= kcs
            xp.subtract(1.0, kcs, out=kcs)
            kcs *= o
            for t in range(stop - 1, start - 1, -1):
                s = t - start
                gh = grad_h[t] if dh is None else xp.add(grad_h[t], dh, out=dh)
                xp.multiply(gh, kcs[s], out=dc)
                if grad_c is not None or t < steps - 1:
                    dc += gc
                xp.multiply(ks[s, :3], dc, out=d4[:3])
                xp.multiply(ks[s, 3], gh, out=d4[3])
                xp.multiply(dc, qs[s, 1], out=gc)
                d[t].reshape(n, 4, hs).transpose(1, 0, 2)[...] = d4
                if t or need_h0:
                    dh = xp.matmul(d[t], w_hh, out=xp.empty((n, hs), dtype=dt) if dh is None else dh)
        return gc, dh

    def gru_sequence(
        self, gi: Any, w_hh: Any, b_ih: Any, b_hh: Any, h0: Any, *, out: Any = None, out_gh_n: Any = None
    ) -> tuple[Any, Any, Any]:
        """A GRU layer from input projections gi (T, B, 3H), gates r, z, n, biases (3H,) (None: none) and h0 (B, H)
        (None: zeros): ``(h, acts, gh_n)``, h (T + 1, B, H) = h_0 .. h_T (into ``out``), acts the activated gates,
        gh_n (T, B, H) = h_{t-1} W_hn^T + b_hn of every step (into ``out_gh_n``); may overwrite gi."""
        xp = self.xp
        steps, n, width = gi.shape
        hs = width // 3
        acts = gi if gi.flags.c_contiguous else xp.ascontiguousarray(gi)
        if b_ih is not None:
            acts += b_ih
        h = xp.empty((steps + 1, n, hs), dtype=acts.dtype) if out is None else out
        ghn = xp.empty((steps, n, hs), dtype=acts.dtype) if out_gh_n is None else out_gh_n
        h[0] = 0 if h0 is None else h0
        rec = xp.empty((n, width), dtype=acts.dtype)
        for t in range(steps):
            gh = self.gemm(h[t], w_hh, trans_b=True, out=rec)
            if b_hh is not None:
                gh += b_hh
            ghn[t] = gh[:, 2 * hs :]
            at = acts[t]
            a = self.gru_step(at, gh, h[t], out=h[t + 1])[1]
            if a is not at:
                at[...] = a
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
        """Gradients of ``gru_sequence`` from grad_h (T, B, H) wrt h_1 .. h_T, given its h (T + 1, B, H): ``(grad_gi,
        grad_gh, grad_b_ih, grad_b_hh, grad_h0)``, grad_gi into ``out`` (may be acts), grad_gh (T, B, 3H) wrt h_{t-1}
        W_hh^T + b_hh into ``out_gh``; grad_h0 None unless ``need_h0``."""
        xp = self.xp
        steps, n, width = acts.shape
        hs = width // 3
        d = xp.empty(acts.shape, dtype=acts.dtype) if out is None else out
        dgh = xp.empty(acts.shape, dtype=acts.dtype) if out_gh is None else out_gh
        gh = xp.zeros((n, width), dtype=acts.dtype)  # the step backward reads only its n part
        dh = None
        for t in range(steps - 1, -1, -1):
            g = grad_h[t] if dh is None else xp.add(grad_h[t], dh, out=dh)
            gh[:, 2 * hs :] = gh_n[t]
            a = acts[t]
            direct = self.gru_step_backward(g, a, gh, h[t], out=a if d is acts else d[t], out_gh=dgh[t])[2]
            if t or need_h0:
                dh = self.gemm(dgh[t], w_hh, out=xp.empty((n, hs), dtype=d.dtype) if dh is None else dh)
                dh += direct
        grad_h0 = (xp.zeros((n, hs), dtype=acts.dtype) if dh is None else dh) if need_h0 else None
        return d, dgh, self._column_sums(d), self._column_sums(dgh), grad_h0
