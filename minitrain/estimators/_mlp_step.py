"""The MLP estimators' training step without an autograd graph: one ``mlp_loss_grad`` kernel call per batch."""

from __future__ import annotations

from typing import Any

from .. import nn


class FusedMLPStep:
    """Forward pass, output loss and backward pass of a stack of ``Linear`` layers, for ``Trainer``.

    A plain MLP's graph is the same at every step, so this step builds none: each batch is one call of the
    backend's ``mlp_loss_grad`` kernel, which sets (not accumulates) the gradient of every weight and bias and
    returns the batch loss, exactly as ``output_loss(...).backward()`` on the autograd path does. The NumPy
    reference runs the fused layer kernels into buffers kept across batches; the Numba backend runs the whole
    batch, from gathering its rows to the last weight gradient, in one compiled call.

    Call it as ``step(xb, yb, wb, wsum) -> loss`` on a gathered batch, or as ``step.rows(data, rows, wsum)`` on
    the samples ``rows`` of an ``ArrayDataset`` (a slice: those rows in place), which gathers inside the kernel.
    Build it with :meth:`for_module`, which returns None for networks with other layers (batch norm, dropout):
    those train through autograd.
    """

    def __init__(self, linears: list[Any], out_activation: str) -> None:
        self.linears = linears
        self.out_activation = out_activation
        self.backend = linears[0].backend
        self._params = [(lin.weight, lin.bias) for lin in linears]  # their arrays are read at each step
        self._acts = tuple(lin.activation for lin in linears)
        self._alphas = tuple(float(lin.alpha) for lin in linears)
        self._workspace: dict[Any, Any] = {}

    @classmethod
    def for_module(cls, module: Any, out_activation: str) -> FusedMLPStep | None:
        """The fused step of ``module`` if it is a Sequential of biased ``Linear`` layers, else None."""
        layers = list(module)
        if not layers or not all(isinstance(m, nn.Linear) and m.bias is not None for m in layers):
            return None
        return cls(layers, out_activation)

    def __call__(self, xb: Any, yb: Any, wb: Any, wsum: float) -> float:
        return self._loss_grad(xb, yb, None, wb, wsum)

    def rows(self, data: Any, rows: Any, wsum: float) -> float:
        """The step on samples ``rows`` (an index array, or a slice taken in place) of ``data``."""
        if isinstance(rows, slice):
            sw = None if data.sample_weight is None else data.sample_weight[rows]
            return self._loss_grad(data.X[rows], data.y[rows], None, sw, wsum)
        return self._loss_grad(data.X, data.y, rows, data.sample_weight, wsum)

    def _loss_grad(self, x: Any, y: Any, rows: Any, sw: Any, wsum: float) -> float:
        params = self._params  # the Parameters' arrays are read at each step: they may be rebound between steps
        return self.backend.mlp_loss_grad(
            x, y, [w.data for w, _ in params], [b.data for _, b in params], self._acts, self.out_activation,
            rows=rows, sample_weight=sw, weight_sum=wsum, alphas=self._alphas,
            weight_grads=[w.grad for w, _ in params], bias_grads=[b.grad for _, b in params],
            workspace=self._workspace,
        )  # fmt: skip
