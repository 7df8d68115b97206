"""Activation modules; those with a kernel name fuse with a preceding ``Linear`` in ``Sequential``."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd import Tensor
from .module import Module


class Activation(Module):
    """An elementwise activation backed by the ``act`` kernel (``act_name``, ``act_alpha``).

    The base of the activation modules: a subclass sets ``act_name`` (one of ``minitrain.backend.ACTIVATIONS``)
    and, if it takes one, ``act_alpha``; a ``Linear`` followed by it in a ``Sequential`` runs as one fused node.
    ``Activation()`` itself is the identity.

    Parameters
    ----------
    backend : str or Backend, optional

    Examples
    --------
    >>> import minitrain as mt
    >>> class SteepLeakyReLU(mt.nn.Activation):  # a subclass names its kernel activation (and parameter)
    ...     act_name, act_alpha = "leaky_relu", 0.2
    >>> SteepLeakyReLU()(mt.tensor([-1.0, 2.0])).numpy().astype(float).round(4).tolist()
    [-0.2, 2.0]
    >>> mt.nn.Activation()(mt.tensor([-1.0, 2.0])).numpy().tolist()
    [-1.0, 2.0]
    """

    act_name = "identity"
    act_alpha = 0.01

    def forward(self, x: Any) -> Tensor:
        """Apply the activation (``x``: a Tensor or an array of this module's backend or the host)."""
        return F.activation(self._tensor(x), self.act_name, self.act_alpha)


class ReLU(Activation):
    """max(x, 0).

    Parameters
    ----------
    backend : str or Backend, optional

    Examples
    --------
    >>> import minitrain as mt
    >>> mt.nn.ReLU()(mt.tensor([-1.0, 0.0, 2.0])).numpy().tolist()
    [0.0, 0.0, 2.0]
    """

    act_name = "relu"


class Sigmoid(Activation):
    """1 / (1 + exp(-x)).

    Parameters
    ----------
    backend : str or Backend, optional

    Examples
    --------
    >>> import minitrain as mt
    >>> mt.nn.Sigmoid()(mt.tensor([-2.0, 0.0, 2.0])).numpy().astype(float).round(4).tolist()
    [0.1192, 0.5, 0.8808]
    """

    act_name = "sigmoid"


class Tanh(Activation):
    """tanh(x).

    Parameters
    ----------
    backend : str or Backend, optional

    Examples
    --------
    >>> import minitrain as mt
    >>> mt.nn.Tanh()(mt.tensor([-1.0, 0.0, 1.0])).numpy().astype(float).round(4).tolist()
    [-0.7616, 0.0, 0.7616]
    """

    act_name = "tanh"


class Softplus(Activation):
    """log(1 + exp(x)).

    Parameters
    ----------
    backend : str or Backend, optional

    Examples
    --------
    >>> import minitrain as mt
    >>> mt.nn.Softplus()(mt.tensor([-1.0, 0.0, 1.0])).numpy().astype(float).round(4).tolist()
    [0.3133, 0.6931, 1.3133]
    """

    act_name = "softplus"


class LeakyReLU(Activation):
    """x if x > 0 else negative_slope * x, for ``negative_slope >= 0``.

    Parameters
    ----------
    negative_slope : float, default=0.01
    backend : str or Backend, optional

    Examples
    --------
    >>> import minitrain as mt
    >>> layer = mt.nn.LeakyReLU(0.1)
    >>> layer
    LeakyReLU(negative_slope=0.1)
    >>> layer(mt.tensor([-2.0, 3.0])).numpy().astype(float).round(4).tolist()
    [-0.2, 3.0]
    """

    act_name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, backend: Any = None) -> None:
        super().__init__(backend)
        if negative_slope < 0:
            raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
        self.act_alpha = float(negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.act_alpha}"


class ELU(Activation):
    """x if x > 0 else alpha * (exp(x) - 1), for ``alpha > 0``.

    Parameters
    ----------
    alpha : float, default=1.0
    backend : str or Backend, optional

    Examples
    --------
    >>> import minitrain as mt
    >>> mt.nn.ELU(alpha=2.0)(mt.tensor([-1.0, 0.0, 3.0])).numpy().astype(float).round(4).tolist()
    [-1.2642, 0.0, 3.0]
    """

    act_name = "elu"

    def __init__(self, alpha: float = 1.0, backend: Any = None) -> None:
        super().__init__(backend)
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.act_alpha = float(alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.act_alpha}"


class GELU(Activation):
    """Gaussian error linear unit (exact, or ``approximate='tanh'``).

    Parameters
    ----------
    approximate : {'none', 'tanh'}, default='none'
    backend : str or Backend, optional

    Examples
    --------
    >>> import minitrain as mt
    >>> x = mt.tensor([-1.0, 0.0, 1.0])
    >>> mt.nn.GELU()(x).numpy().astype(float).round(4).tolist()
    [-0.1587, 0.0, 0.8413]
    >>> mt.nn.GELU(approximate="tanh")
    GELU(approximate='tanh')
    """

    def __init__(self, approximate: str = "none", backend: Any = None) -> None:
        super().__init__(backend)
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self.act_name = "gelu" if approximate == "none" else "gelu_tanh"

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softmax(Module):
    """Softmax along ``dim``.

    Parameters
    ----------
    dim : int, default=-1
    backend : str or Backend, optional

    Examples
    --------
    >>> import minitrain as mt
    >>> mt.nn.Softmax(dim=1)(mt.tensor([[0.0, 0.0], [0.0, 1.0]])).numpy().astype(float).round(4).tolist()
    [[0.5, 0.5], [0.2689, 0.7311]]
    """

    def __init__(self, dim: int = -1, backend: Any = None) -> None:
        super().__init__(backend)
        self.dim = dim

    def forward(self, x: Any) -> Tensor:
        """Apply softmax."""
        return F.softmax(self._tensor(x), self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """Log-softmax along ``dim``.

    Parameters
    ----------
    dim : int, default=-1
    backend : str or Backend, optional

    Examples
    --------
    >>> import minitrain as mt
    >>> mt.nn.LogSoftmax()(mt.tensor([[0.0, 0.0]])).numpy().astype(float).round(4).tolist()
    [[-0.6931, -0.6931]]
    """

    def forward(self, x: Any) -> Tensor:
        """Apply log-softmax."""
        return F.log_softmax(self._tensor(x), self.dim)


def activation_module(name: str, backend: Any = None) -> Activation:
    """An activation module from a kernel name ('relu', 'tanh', 'logistic', ...)."""
    from ..backend import canonical_activation

    name = canonical_activation(name)
    if name in ("gelu", "gelu_tanh"):
        return GELU("none" if name == "gelu" else "tanh", backend=backend)
    classes = {cls.act_name: cls for cls in (ReLU, Sigmoid, Tanh, Softplus, LeakyReLU, ELU, Activation)}
    return classes[name](backend=backend)
