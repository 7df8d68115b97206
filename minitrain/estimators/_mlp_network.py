"""The MLP estimators' network: scikit-learn's layers and initialization as a ``Sequential`` of minitrain layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import nn

ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


def build_network(est: Any, layer_units: list[int], be: Any, dtype: np.dtype, rs: np.random.RandomState) -> Any:
    """A Sequential of Linear layers (+ BatchNorm1d, activation, Dropout) with scikit-learn's initialization.

    Weights are drawn exactly as scikit-learn draws them (Glorot uniform, factor 2 for 'logistic',
    coefficients then intercepts, layer by layer, from ``rs``), so the same ``random_state`` starts
    both libraries from the same point.
    """
    act = ACTIVATIONS[est.activation]
    factor = 2.0 if est.activation == "logistic" else 6.0
    layers: list[Any] = []
    n = len(layer_units) - 1
    for i in range(n):
        fan_in, fan_out = layer_units[i], layer_units[i + 1]
        bound = np.sqrt(factor / (fan_in + fan_out))
        coef = rs.uniform(-bound, bound, (fan_in, fan_out))
        intercept = rs.uniform(-bound, bound, fan_out)
        hidden = i < n - 1
        fused = act if hidden and not est.batch_norm else "identity"
        lin = nn.Linear(fan_in, fan_out, activation=fused, init="zeros", dtype=dtype.name, backend=be)
        lin.weight.data[...] = be.asarray(np.ascontiguousarray(coef.T, dtype=dtype))
        lin.bias.data[...] = be.asarray(intercept.astype(dtype))
        layers.append(lin)
        if hidden and est.batch_norm:
            layers.append(nn.BatchNorm1d(fan_out, dtype=dtype.name, backend=be))
            layers.append(_activation_module(act, be))
        if hidden and est.dropout:
            layers.append(nn.Dropout(est.dropout, backend=be))
    return nn.Sequential(*layers, backend=be)


def _activation_module(act: str, be: Any) -> Any:
    cls = {"identity": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}[act]
    return cls(backend=be)


def linear_layers(module: Any) -> list[Any]:
    """The Linear layers of an MLP network, input to output."""
    return [m for m in module if isinstance(m, nn.Linear)]
