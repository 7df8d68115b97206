"""``Linear``: an affine map with an optional fused activation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import functional as F
from ..autograd import Tensor
from ..backend import canonical_activation
from ..functional.layer_ops import default_alpha
from ..init import get_initializer, zeros_
from .activation import Activation
from .flat import Parameter
from .module import Module


class Linear(Module):
    """``y = act(x @ weight.T + bias)``, one autograd node over the fused ``affine_act`` kernel.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of each input and output sample.
    bias : bool, default=True
        Learn an additive bias.
    activation : str or Activation, default='identity'
        Activation fused into the layer ('relu', 'tanh', 'logistic', ... or e.g. ``LeakyReLU(0.2)``). A name takes
        its module's default parameter: 'leaky_relu' is ``LeakyReLU()`` (slope 0.01), 'elu' is ``ELU()`` (alpha 1).
    init : str or callable, default='auto'
        Weight initializer: 'auto' (He uniform before ReLU-like activations, Glorot uniform
        otherwise), a name from ``minitrain.init``, or a function filling a tensor in place.
    dtype : str, default='float32'
    backend : str or Backend, optional

    Attributes
    ----------
    weight : Parameter of shape (out_features, in_features)
        Stored column-major (``weight.data.T`` is a C-contiguous (in_features, out_features) block).
    bias : Parameter of shape (out_features,) or None

    Examples
    --------
    >>> import minitrain as mt
    >>> layer = mt.nn.Linear(3, 2, activation="relu")
    >>> layer(mt.tensor([[1.0, 2.0, 3.0]])).shape
    (1, 2)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str | Activation = "identity",
        init: str | Callable[[Tensor], Any] = "auto",
        dtype: str = "float32",
        backend: Any = None,
    ) -> None:
        super().__init__(backend)
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear needs positive sizes, got in={in_features}, out={out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        if isinstance(activation, Activation):
            self.activation, self.alpha = activation.act_name, activation.act_alpha
        else:
            self.activation = canonical_activation(activation)
            self.alpha = default_alpha(self.activation)
        be = self._backend
        # (out, in) in column-major memory, i.e. an (in, out) row-major block: OpenBLAS splits the weight-gradient
        # GEMM (and the forward one) better across threads when their output is tall, as this layout makes it
        self.weight = Parameter(be.alloc((in_features, out_features), dtype).T, backend=be)
        get_initializer(init, self.activation)(self.weight)
        self.bias = zeros_(Parameter(be.alloc((out_features,), dtype), backend=be)) if bias else None

    def forward(self, x: Any) -> Tensor:
        """Apply the layer to ``x`` of shape (..., in_features)."""
        if not isinstance(x, Tensor):
            x = Tensor(x, backend=self._backend, dtype=self.weight.dtype)
        elif x.dtype != self.weight.dtype:
            x = F.astype(x, self.weight.dtype)
        return F.linear(x, self.weight, self.bias, self.activation, self.alpha)

    def extra_repr(self) -> str:
        act = "" if self.activation == "identity" else f", activation={self.activation!r}"
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}{act}"
