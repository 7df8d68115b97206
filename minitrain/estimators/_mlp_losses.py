"""scikit-learn's MLP output functions and their canonical losses, on a backend and on NumPy outputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Tensor

#: The output functions of the MLP estimators, each with its canonical loss.
OUTPUTS = ("softmax", "logistic", "identity", "exp")


def output_loss_grad(be: Any, z: Any, target: Any, sample_weight: Any, weight_sum: float, output: str) -> tuple:
    """The canonical loss of output function ``output`` on logits ``z`` (n, c): ``(loss, grad)``.

    scikit-learn's MLP losses: 'softmax' cross-entropy (``target`` class indices (n,) or probabilities (n, c)),
    'logistic' binary cross-entropy summed over outputs, 'identity' half squared error averaged over outputs
    (its gradient is not averaged, as scikit-learn's), 'exp' half Poisson deviance. The gradient is the
    canonical link's ``(output(z) - target) * w / weight_sum``; the loss (a 0-d array) is the weighted sum of
    the samples' losses divided by ``weight_sum``. ``grad`` is a new array. Built from the backend's kernels
    (``softmax_cross_entropy``, ``sigmoid_cross_entropy``) and ``be.xp``.
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


def output_loss(z: Tensor, y: Any, sw: Any, wsum: float, out_activation: str) -> Tensor:
    """scikit-learn's loss for ``out_activation`` on logits ``z`` as one node: a weighted mean over samples.

    The gradient is scikit-learn's ``(act(z) - y) * sw / sum(sw)`` (canonical link), including its
    choice for several regression outputs (the squared-error loss is averaged over outputs, its gradient
    is not).
    """
    loss, grad = output_loss_grad(z.backend, z.data, y, sw, wsum, out_activation)
    return Tensor._make(loss, z.backend, (z,), lambda g: (grad * g,))


def output_activation(z: Any, out_activation: str) -> Any:
    """Apply the output activation to NumPy logits (float, in place where possible)."""
    if out_activation == "softmax":
        z = z - z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
    elif out_activation == "logistic":
        with np.errstate(over="ignore"):
            z = 1.0 / (1.0 + np.exp(-z))
    elif out_activation == "exp":
        z = np.exp(z)
    return z
