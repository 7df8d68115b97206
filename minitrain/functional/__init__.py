"""Differentiable ops: each calls backend kernels and records one backward closure.

Ops take Tensors (Python scalars and arrays are accepted where they make sense) and return Tensors.
Hot paths (``linear``, the losses, ``dropout``, ``batch_norm``) are one node over one fused kernel.
"""

from __future__ import annotations

from typing import Any

from ..autograd import Tensor
from .attention_ops import embedding, layer_norm, masked_softmax, scaled_dot_product_attention
from .conv_ops import avg_pool2d, conv2d, max_pool2d
from .layer_ops import (
    activation,
    batch_norm,
    dropout,
    elu,
    gelu,
    leaky_relu,
    linear,
    log_softmax,
    relu,
    sigmoid,
    softmax,
    softplus,
    tanh,
)
from .loss_ops import (
    _check_reduction as _check_reduction,
)
from .loss_ops import (
    _reduced as _reduced,
)
from .loss_ops import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    mse_loss,
)
from .recurrent_ops import gru, lstm
from .shape_ops import (
    abs,
    astype,
    clip,
    concatenate,
    exp,
    flatten,
    getitem,
    log,
    maximum,
    minimum,
    reshape,
    sqrt,
    stack,
    transpose,
    where,
)
from .spatial_ops import adaptive_avg_pool2d, adaptive_max_pool2d, dropout1d, dropout2d
from .tensor_ops import (
    add,
    div,
    matmul,
    max,
    mean,
    min,
    mul,
    neg,
    pow,
    sub,
    sum,
)

__all__ = [
    "abs",
    "activation",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "add",
    "astype",
    "avg_pool2d",
    "batch_norm",
    "binary_cross_entropy_with_logits",
    "clip",
    "concatenate",
    "conv2d",
    "cross_entropy",
    "div",
    "dropout",
    "dropout1d",
    "dropout2d",
    "elu",
    "embedding",
    "exp",
    "flatten",
    "gelu",
    "getitem",
    "gru",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log",
    "log_softmax",
    "lstm",
    "masked_softmax",
    "matmul",
    "max",
    "max_pool2d",
    "maximum",
    "mean",
    "min",
    "minimum",
    "mse_loss",
    "mul",
    "neg",
    "pow",
    "relu",
    "reshape",
    "scaled_dot_product_attention",
    "sigmoid",
    "softmax",
    "softplus",
    "sqrt",
    "stack",
    "sub",
    "sum",
    "tanh",
    "transpose",
    "where",
]

_make = Tensor._make


# ---------------------------------------------------------------------- Tensor methods
def _install() -> None:
    def r(fn: Any) -> Any:
        return lambda self, other: fn(other, self)

    methods = {
        "__add__": add,
        "__radd__": r(add),
        "__sub__": sub,
        "__rsub__": r(sub),
        "__mul__": mul,
        "__rmul__": r(mul),
        "__truediv__": div,
        "__rtruediv__": r(div),
        "__neg__": neg,
        "__pow__": pow,
        "__rpow__": r(pow),
        "__matmul__": matmul,
        "__rmatmul__": r(matmul),
        "__getitem__": getitem,
        "sum": sum,
        "mean": mean,
        "max": max,
        "min": min,
        "reshape": reshape,
        "astype": astype,
        "flatten": flatten,
        "transpose": transpose,
        "exp": exp,
        "log": log,
        "sqrt": sqrt,
        "abs": abs,
        "clip": clip,
        "relu": relu,
        "sigmoid": sigmoid,
        "tanh": tanh,
        "softmax": softmax,
        "log_softmax": log_softmax,
    }
    for name, fn in methods.items():
        setattr(Tensor, name, fn)
    Tensor.T = property(lambda self: transpose(self))
    for op in ("__lt__", "__le__", "__gt__", "__ge__"):
        setattr(Tensor, op, _comparison(op))


def _comparison(op: str) -> Any:
    def compare(self: Tensor, other: Any) -> Tensor:
        other = other.data if isinstance(other, Tensor) else other
        return _make(getattr(self.data, op)(other), self.backend)

    compare.__name__ = op
    return compare


_install()
