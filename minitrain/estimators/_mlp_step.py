"""The MLP estimators' training step without an autograd graph: direct kernel calls into reused buffers."""

from __future__ import annotations

from typing import Any

from .. import nn
from ._mlp_core import output_loss_grad


class FusedMLPStep:
    """Forward pass, output loss and backward pass of a stack of ``Linear`` layers, for ``Trainer``.

    Called as ``step(xb, yb, wb, wsum) -> loss``: it sets (not accumulates) the gradient of every weight
    and bias and returns the batch loss, exactly as ``output_loss(...).backward()`` on the autograd path
    does. A plain MLP's graph is the same at every step, so this step builds none: each layer is one
    ``affine_act`` into a buffer reused across batches, and its backward one ``bias_act_backward`` in place
    (the bias gradient in the same pass) and two GEMMs straight into the flat gradient buffer. Measured on
    2 cores with the Numba backend, float32: a digits step (batch 200, 64-100-10) 436 -> 262 us, an
    MNIST-shaped step (batch 128, 784-256-128-10) about 1.3x faster (64k -> 83k samples/s).

    Build it with :meth:`for_module`, which returns None for networks with other layers (batch norm,
    dropout): those train through autograd.
    """

    def __init__(self, linears: list[Any], out_activation: str) -> None:
        self.linears = linears
        self.out_activation = out_activation
        self.backend = linears[0].backend
        # the Parameters (their arrays are read at each step: they may be rebound between steps)
        self._layers = [(lin.weight, lin.bias, lin.activation, lin.alpha) for lin in linears]
        self._buffers: tuple[list[Any], list[Any]] | None = None

    @classmethod
    def for_module(cls, module: Any, out_activation: str) -> FusedMLPStep | None:
        """The fused step of ``module`` if it is a Sequential of biased ``Linear`` layers, else None."""
        layers = list(module)
        if not layers or not all(isinstance(m, nn.Linear) and m.bias is not None for m in layers):
            return None
        return cls(layers, out_activation)

    def _buffers_for(self, n: int, dtype: Any) -> tuple[list[Any], list[Any]]:
        """Outputs of every layer and input gradients of all but the first, for a batch of ``n`` rows: the
        first ``n`` rows of buffers sized for the longest batch so far (row slices stay contiguous)."""
        bufs = self._buffers
        if bufs is None or bufs[0][0].shape[0] < n or bufs[0][0].dtype != dtype:
            alloc = self.backend.alloc
            outs = [alloc((n, lin.out_features), dtype, fill=None) for lin in self.linears]
            deltas = [alloc((n, lin.in_features), dtype, fill=None) for lin in self.linears[1:]]
            bufs = self._buffers = (outs, deltas)
        if bufs[0][0].shape[0] == n:
            return bufs
        return [a[:n] for a in bufs[0]], [a[:n] for a in bufs[1]]

    def __call__(self, xb: Any, yb: Any, wb: Any, wsum: float) -> float:
        be = self.backend
        layers = self._layers
        outs, deltas = self._buffers_for(xb.shape[0], xb.dtype)
        h, acts = xb, []
        for (weight, bias, act, alpha), out in zip(layers, outs):
            h, z = be.affine_act(h, weight.data, bias.data, act, alpha=alpha, out=out)
            acts.append((h, z))
        loss, g = output_loss_grad(be, h, yb, wb, wsum, self.out_activation)
        for k in range(len(layers) - 1, -1, -1):
            weight, bias, act, alpha = layers[k]
            be.bias_act_backward(g, *acts[k], act, alpha=alpha, out=g, bias_grad=bias.grad)
            be.gemm(g, acts[k - 1][0] if k else xb, trans_a=True, out=weight.grad)
            if k:
                g = be.gemm(g, weight.data, out=deltas[k - 1])
        return float(loss)
