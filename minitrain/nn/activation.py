"""Activation modules; those with a kernel name fuse with a preceding ``Linear`` in ``Sequential``."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd import Tensor
from .module import Module


class Activation(Module):
    """An elementwise activation backed by the ``act`` kernel (``act_name``, ``act_alpha``)."""

    act_name = "identity"
    act_alpha = 0.01

    def forward(self, x: Tensor) -> Tensor:
        """Apply the activation."""
        return F.activation(x, self.act_name, self.act_alpha)


class ReLU(Activation):
    """max(x, 0)."""

    act_name = "relu"


class Sigmoid(Activation):
    """1 / (1 + exp(-x))."""

    act_name = "sigmoid"


class Tanh(Activation):
    """tanh(x)."""

    act_name = "tanh"


class Softplus(Activation):
    """log(1 + exp(x))."""

    act_name = "softplus"


class LeakyReLU(Activation):
    """x if x > 0 else negative_slope * x, for ``negative_slope >= 0``."""

    act_name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, backend: Any = None) -> None:
        super().__init__(backend)
        if negative_slope < 0:
            raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
        self.act_alpha = float(negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.act_alpha}"


class ELU(Activation):
    """x if x > 0 else alpha * (exp(x) - 1), for ``alpha > 0``."""

    act_name = "elu"

    def __init__(self, alpha: float = 1.0, backend: Any = None) -> None:
        super().__init__(backend)
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.act_alpha = float(alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.act_alpha}"


class GELU(Activation):
    """Gaussian error linear unit (exact, or ``approximate='tanh'``)."""

    def __init__(self, approximate: str = "none", backend: Any = None) -> None:
        super().__init__(backend)
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self.act_name = "gelu" if approximate == "none" else "gelu_tanh"

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softmax(Module):
    """Softmax along ``dim``."""

    def __init__(self, dim: int = -1, backend: Any = None) -> None:
        super().__init__(backend)
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """Apply softmax."""
        return F.softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """Log-softmax along ``dim``."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply log-softmax."""
        return F.log_softmax(x, self.dim)


def activation_module(name: str, backend: Any = None) -> Activation:
    """An activation module from a kernel name ('relu', 'tanh', 'logistic', ...)."""
    from ..backend import canonical_activation

    name = canonical_activation(name)
    if name in ("gelu", "gelu_tanh"):
        return GELU("none" if name == "gelu" else "tanh", backend=backend)
    classes = {cls.act_name: cls for cls in (ReLU, Sigmoid, Tanh, Softplus, LeakyReLU, ELU, Activation)}
    return classes[name](backend=backend)
