"""Differentiable layer ops: activations, softmax, and the fused linear / dropout / batch_norm nodes."""

from __future__ import annotations

from typing import Any

from .. import random
from ..autograd import Tensor
from ..backend.base import NEEDS_PREACTIVATION, canonical_activation

_make = Tensor._make
#: The parameter of an activation named without one, as its module's default (``LeakyReLU``, ``ELU``).
DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}


def default_alpha(name: str) -> float:
    """The parameter activation ``name`` takes by default: leaky_relu's slope 0.01, elu's scale 1.0 (else unused)."""
    return DEFAULT_ALPHA.get(canonical_activation(name), 0.01)


# ---------------------------------------------------------------------- activations
def activation(x: Tensor, name: str, alpha: float | None = None) -> Tensor:
    """Apply a named activation (see ``minitrain.backend.ACTIVATIONS``) as one node; ``alpha`` None: its default."""
    be = x.backend
    name = canonical_activation(name)
    alpha = default_alpha(name) if alpha is None else float(alpha)
    xd = x.data
    y = be.act(xd, name, alpha=alpha)
    z = xd if name in NEEDS_PREACTIVATION else None
    return _make(y, be, (x,), lambda g: (be.act_backward(g, y, z, name, alpha=alpha),))


def relu(x: Tensor) -> Tensor:
    """max(x, 0)."""
    return activation(x, "relu")


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x if x > 0 else negative_slope * x (``negative_slope >= 0``)."""
    return activation(x, "leaky_relu", negative_slope)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else alpha * (exp(x) - 1) (``alpha > 0``)."""
    return activation(x, "elu", alpha)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit; ``approximate='tanh'`` for the tanh formula."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return activation(x, "gelu" if approximate == "none" else "gelu_tanh")


def sigmoid(x: Tensor) -> Tensor:
    """Logistic function 1 / (1 + exp(-x))."""
    return activation(x, "sigmoid")


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return activation(x, "tanh")


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)), computed stably."""
    return activation(x, "softplus")


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax along ``axis``."""
    xp = x.backend.xp
    e = xp.exp(x.data - x.data.max(axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)
    return _make(y, x.backend, (x,), lambda g: (y * (g - (g * y).sum(axis=axis, keepdims=True)),))


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Logarithm of the softmax along ``axis``, computed stably."""
    xp = x.backend.xp
    shifted = x.data - x.data.max(axis=axis, keepdims=True)
    y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    return _make(y, x.backend, (x,), lambda g: (g - xp.exp(y) * g.sum(axis=axis, keepdims=True),))


# ---------------------------------------------------------------------- layers
def linear(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str = "identity", alpha: float | None = None
) -> Tensor:
    """``act(x @ weight.T + bias)`` as one node over the fused ``affine_act`` kernel.

    Parameters
    ----------
    x : Tensor of shape (..., in_features)
    weight : Tensor of shape (out_features, in_features)
    bias : Tensor of shape (out_features,), optional
    activation : str, default='identity'
        One of ``minitrain.backend.ACTIVATIONS`` (or 'logistic').
    alpha : float, optional
        Slope of leaky_relu (default 0.01), scale of elu (default 1.0), as in ``LeakyReLU`` and ``ELU``.
    """
    be = x.backend
    name = canonical_activation(activation)
    alpha = default_alpha(name) if alpha is None else float(alpha)
    xd = x.data
    if xd.ndim < 1 or xd.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input has shape {x.shape}, expected (..., {weight.shape[1]})")
    x2 = xd if xd.ndim == 2 else xd.reshape(-1, xd.shape[-1])
    wd = weight.data
    y, z = be.affine_act(x2, wd, None if bias is None else bias.data, name, alpha=alpha)

    def bw(g: Any) -> tuple[Any, ...]:
        g2 = g if g.ndim == 2 else g.reshape(-1, g.shape[-1])
        bgrad, gb = None, None
        if bias is not None and bias.requires_grad:
            bgrad = bias.grad if getattr(bias, "_grad_zero", False) else None
            bgrad = bgrad if bgrad is not None and bgrad.dtype == g2.dtype else None
        if name == "identity":  # gz is only read
            gz = g2
            if bias is not None and bias.requires_grad:
                gb = gz.sum(axis=0) if bgrad is None else gz.sum(axis=0, out=bgrad)
        elif bias is not None and bias.requires_grad:  # one pass for both
            gz, gb = be.bias_act_backward(g2, y, z, name, alpha=alpha, bias_grad=bgrad)
        else:
            gz = be.act_backward(g2, y, z, name, alpha=alpha)
        gx = be.gemm(gz, wd).reshape(xd.shape) if x.requires_grad else None
        gw = None
        if weight.requires_grad:
            wgrad = weight.grad if getattr(weight, "_grad_zero", False) else None
            if wgrad is not None and wgrad.dtype == gz.dtype and (wgrad.flags.c_contiguous or wgrad.flags.f_contiguous):
                be.gemm(gz, x2, trans_a=True, out=wgrad)  # straight into the zeroed (flat) gradient
                weight._grad_zero = False
            else:
                gw = be.gemm(gz, x2, trans_a=True)
        if bias is None or not bias.requires_grad:
            return gx, gw, None
        if bgrad is not None:  # written straight into the zeroed (flat) gradient
            bias._grad_zero = False
            return gx, gw, None
        return gx, gw, gb

    out = y if xd.ndim == 2 else y.reshape((*xd.shape[:-1], wd.shape[0]))
    return _make(out, be, (x, weight) if bias is None else (x, weight, bias), bw)


def dropout(x: Tensor, p: float = 0.5, training: bool = True, generator: Any = None) -> Tensor:
    """Inverted dropout: zero each element with probability ``p``, scale the rest by 1/(1-p).

    ``generator``: a generator of ``x``'s backend (``Backend.generator``) to draw the mask from; by default a new
    one seeded from the current stream (:mod:`minitrain.random`). Modules pass their own (``nn.Dropout``).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    be = x.backend
    if generator is None:
        generator = be.generator(random.spawn_seed())
    y, mask = be.dropout(x.data, p, generator)
    return _make(y, be, (x,), lambda g: (be.dropout_backward(g, mask),))


def batch_norm(
    x: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization over every axis but 1 (channels), as one node.

    Running statistics (backend arrays, or None) are updated in place when ``training``.
    """
    be = x.backend
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects input of shape (N, C, ...), got {x.shape}")
    if training and x.size // x.shape[1] < 2:
        raise ValueError(f"batch_norm in training needs more than one value per channel, got input {x.shape}")
    wd = None if weight is None else weight.data
    y, xhat, inv_std = be.batchnorm(
        x.data,
        wd,
        None if bias is None else bias.data,
        running_mean,
        running_var,
        training=training,
        momentum=momentum,
        eps=eps,
    )
    batch_stats = training or running_mean is None
    parents = tuple(t for t in (x, weight, bias) if t is not None)

    def bw(g: Any) -> tuple[Any, ...]:
        dx, dgamma, dbeta = be.batchnorm_backward(g, xhat, inv_std, wd, training=batch_stats)
        out = [dx]
        if weight is not None:
            out.append(dgamma)
        if bias is not None:
            out.append(dbeta)
        return tuple(out)

    return _make(y, be, parents, bw)
