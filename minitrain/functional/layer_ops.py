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
    """Apply a named activation (see ``minitrain.backend.ACTIVATIONS``) as one node; ``alpha`` None: its default.

    Parameters
    ----------
    x : Tensor
    name : str
        One of ``minitrain.backend.ACTIVATIONS``, or an alias ('logistic', 'linear').
    alpha : float, optional
        Slope of leaky_relu (default 0.01) or scale of elu (default 1.0); unused by the others.

    Returns
    -------
    Tensor
        Of ``x``'s shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([-2.0, 0.0, 3.0])
    >>> F.activation(x, "relu").numpy().tolist(), F.activation(x, "leaky_relu", alpha=0.5).numpy().tolist()
    ([0.0, 0.0, 3.0], [-1.0, 0.0, 3.0])
    """
    be = x.backend
    name = canonical_activation(name)
    alpha = default_alpha(name) if alpha is None else float(alpha)
    xd = x.data
    y = be.act(xd, name, alpha=alpha)
    z = xd if name in NEEDS_PREACTIVATION else None
    return _make(y, be, (x,), lambda g: (be.act_backward(g, y, z, name, alpha=alpha),))


def relu(x: Tensor) -> Tensor:
    """max(x, 0).

    Parameters
    ----------
    x : Tensor

    Returns
    -------
    Tensor
        Of ``x``'s shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.relu(mt.tensor([-1.0, 2.0])).numpy().tolist()
    [0.0, 2.0]
    """
    return activation(x, "relu")


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x if x > 0 else negative_slope * x (``negative_slope >= 0``).

    Parameters
    ----------
    x : Tensor
    negative_slope : float, default=0.01

    Returns
    -------
    Tensor
        Of ``x``'s shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.leaky_relu(mt.tensor([-2.0, 3.0]), negative_slope=0.25).numpy().tolist()
    [-0.5, 3.0]
    """
    return activation(x, "leaky_relu", negative_slope)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else alpha * (exp(x) - 1) (``alpha > 0``).

    Parameters
    ----------
    x : Tensor
    alpha : float, default=1.0

    Returns
    -------
    Tensor
        Of ``x``'s shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.elu(mt.tensor([-1.0, 0.0, 2.0])).numpy().astype(float).round(4).tolist()
    [-0.6321, 0.0, 2.0]
    """
    return activation(x, "elu", alpha)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit; ``approximate='tanh'`` for the tanh formula.

    Parameters
    ----------
    x : Tensor
    approximate : {'none', 'tanh'}, default='none'
        'none': ``x * Phi(x)`` with the exact normal CDF; 'tanh': its tanh approximation.

    Returns
    -------
    Tensor
        Of ``x``'s shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([-1.0, 0.0, 1.0])
    >>> F.gelu(x).numpy().astype(float).round(4).tolist()
    [-0.1587, 0.0, 0.8413]
    >>> F.gelu(x, approximate="tanh").numpy().astype(float).round(4).tolist()
    [-0.1588, 0.0, 0.8412]
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return activation(x, "gelu" if approximate == "none" else "gelu_tanh")


def sigmoid(x: Tensor) -> Tensor:
    """Logistic function 1 / (1 + exp(-x)).

    Parameters
    ----------
    x : Tensor

    Returns
    -------
    Tensor
        Of ``x``'s shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.sigmoid(mt.tensor([-1.0, 0.0, 1.0])).numpy().astype(float).round(4).tolist()
    [0.2689, 0.5, 0.7311]
    """
    return activation(x, "sigmoid")


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent.

    Parameters
    ----------
    x : Tensor

    Returns
    -------
    Tensor
        Of ``x``'s shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.tanh(mt.tensor([-1.0, 0.0, 1.0])).numpy().astype(float).round(4).tolist()
    [-0.7616, 0.0, 0.7616]
    """
    return activation(x, "tanh")


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)), computed stably.

    Parameters
    ----------
    x : Tensor

    Returns
    -------
    Tensor
        Of ``x``'s shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.softplus(mt.tensor([-100.0, 0.0, 100.0])).numpy().astype(float).round(4).tolist()
    [0.0, 0.6931, 100.0]
    """
    return activation(x, "softplus")


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax along ``axis``.

    Parameters
    ----------
    x : Tensor
    axis : int, default=-1

    Returns
    -------
    Tensor
        Of ``x``'s shape, non-negative, summing to 1 along ``axis``.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> p = F.softmax(mt.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
    >>> p.numpy().astype(float).round(4).tolist()
    [[0.09, 0.2447, 0.6652], [0.3333, 0.3333, 0.3333]]
    >>> p.numpy().sum(axis=1).round(6).tolist()
    [1.0, 1.0]
    """
    xp = x.backend.xp
    e = xp.exp(x.data - x.data.max(axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)
    return _make(y, x.backend, (x,), lambda g: (y * (g - (g * y).sum(axis=axis, keepdims=True)),))


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Logarithm of the softmax along ``axis``, computed stably.

    Parameters
    ----------
    x : Tensor
    axis : int, default=-1

    Returns
    -------
    Tensor
        Of ``x``'s shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> F.log_softmax(mt.tensor([[0.0, 0.0], [1000.0, 0.0]])).numpy().astype(float).round(4).tolist()
    [[-0.6931, -0.6931], [0.0, -1000.0]]
    """
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

    Returns
    -------
    Tensor of shape (..., out_features)

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([[1.0, 2.0]], requires_grad=True)
    >>> w = mt.tensor([[1.0, 1.0], [1.0, -1.0]], requires_grad=True)
    >>> b = mt.tensor([0.5, 0.0])
    >>> y = F.linear(x, w, b, activation="relu")
    >>> y.numpy().tolist()
    [[3.5, 0.0]]
    >>> y.sum().backward()
    >>> w.grad.tolist()  # nothing flows back through the unit that relu cut
    [[1.0, 2.0], [0.0, 0.0]]
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

    Parameters
    ----------
    x : Tensor
    p : float, default=0.5
        Probability of zeroing an element, in [0, 1].
    training : bool, default=True
        False (or ``p == 0``) returns ``x`` itself.
    generator : generator of ``x``'s backend, optional

    Returns
    -------
    Tensor
        Of ``x``'s shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> import numpy as np
    >>> x = mt.tensor(np.ones((4, 250), dtype=np.float32))
    >>> y = F.dropout(x, p=0.5, generator=x.backend.generator(0)).numpy()
    >>> sorted(np.unique(y).tolist()), bool(0.4 < (y == 0).mean() < 0.6)
    ([0.0, 2.0], True)
    >>> F.dropout(x, p=0.5, training=False) is x
    True
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

    Parameters
    ----------
    x : Tensor of shape (N, C, ...)
    running_mean, running_var : backend array of shape (C,), optional
        Used to normalize when not ``training``; None: the batch statistics are always used.
    weight, bias : Tensor of shape (C,), optional
        The per-channel scale and shift.
    training : bool, default=False
        Normalize with the batch statistics and update the running ones.
    momentum : float, default=0.1
        Weight of the batch statistics in the running averages.
    eps : float, default=1e-5
        Added to the variance.

    Returns
    -------
    Tensor
        Of ``x``'s shape.

    Examples
    --------
    >>> import minitrain as mt
    >>> from minitrain import functional as F
    >>> x = mt.tensor([[1.0, 10.0], [3.0, 30.0]])
    >>> be = x.backend
    >>> mean, var = be.alloc((2,)), be.alloc((2,), fill=1.0)
    >>> F.batch_norm(x, mean, var, training=True).numpy().astype(float).round(3).tolist()
    [[-1.0, -1.0], [1.0, 1.0]]
    >>> be.to_numpy(mean).astype(float).round(2).tolist(), be.to_numpy(var).astype(float).round(2).tolist()
    ([0.2, 2.0], [1.1, 20.9])
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
