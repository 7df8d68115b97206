"""The MLP estimators' training step without an autograd graph: a dense stack's loss and gradients per batch.

A plain MLP's graph is the same at every step, so :class:`MLPStep` builds none. Each batch runs
:func:`reference_loss_grad`, a composition of the backend's public kernels (gather, ``affine_act`` per layer,
the output loss, ``bias_act_backward`` and two GEMMs per layer) into buffers kept across batches, unless the
backend offers the extension ``"mlp_loss_grad"`` (``Backend.extensions``): a callable with the same arguments,
plus the backend first, that returns the loss or ``NotImplemented`` where it does not apply. The Numba backend
offers one that runs the whole batch, from gathering its rows to the last weight gradient, in one compiled call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import nn
from ._mlp_losses import output_loss_grad


def reference_loss_grad(
    be: Any, x: Any, target: Any, weights: Sequence[Any], biases: Sequence[Any], activations: Sequence[str],
    output: str, *, rows: Any = None, sample_weight: Any = None, weight_sum: float | None = None,
    alphas: Sequence[float] | None = None, weight_grads: Sequence[Any], bias_grads: Sequence[Any],
    workspace: dict | None = None,
) -> float:  # fmt: skip
    """Loss of a stack of dense layers on one batch, and the gradients of its weights and biases.

    Layer ``k`` computes ``h_k = activations[k](h_{k-1} @ weights[k].T + biases[k])`` (``alphas[k]``: the
    activation's parameter, default 0.01) from ``h_{-1} = x[rows]``, or ``x`` itself when ``rows`` is None; the
    loss is :func:`~._mlp_losses.output_loss_grad`'s canonical loss of ``output`` on the last ``h`` against
    ``target[rows]``, weighted by ``sample_weight[rows]`` and divided by ``weight_sum`` (default: the batch's
    summed weight, or its length). The gradients are written (not accumulated) into ``weight_grads`` /
    ``bias_grads``; a None bias has no gradient. ``workspace``: a dict in which the step keeps its buffers
    between calls (one set, sized for the longest batch); pass the same dict at every step. Returns the loss
    as a float; raises IndexError for a row index out of bounds.
    """
    n_layers = len(weights)
    alphas = (0.01,) * n_layers if alphas is None else alphas
    if rows is None:
        xb, yb, wb = x, target, sample_weight
    else:
        rows = _checked_rows(be, rows, x.shape[0])
        xb, yb = _take_rows(be, workspace, "x", x, rows), _take_rows(be, workspace, "y", target, rows)
        wb = None if sample_weight is None else _take_rows(be, workspace, "w", sample_weight, rows)
    n = xb.shape[0]
    if weight_sum is None:
        weight_sum = float(n) if wb is None else float(wb.sum())
    outs = [_scratch(be, workspace, ("out", k), (n, w.shape[0]), xb.dtype) for k, w in enumerate(weights)]
    h, acts = xb, []
    for k in range(n_layers):
        h, z = be.affine_act(h, weights[k], biases[k], activations[k], alpha=alphas[k], out=outs[k])
        acts.append((h, z))
    loss, g = output_loss_grad(be, h, yb, wb, weight_sum, output)
    for k in range(n_layers - 1, -1, -1):
        y_k, z_k = acts[k]
        if biases[k] is None:
            g = be.act_backward(g, y_k, z_k, activations[k], alpha=alphas[k], out=g)
        else:
            be.bias_act_backward(g, y_k, z_k, activations[k], alpha=alphas[k], out=g, bias_grad=bias_grads[k])
        be.gemm(g, acts[k - 1][0] if k else xb, trans_a=True, out=weight_grads[k])
        if k:
            delta = _scratch(be, workspace, ("delta", k), (n, weights[k].shape[1]), g.dtype)
            g = be.gemm(g, weights[k], out=delta)
    return float(loss)


def _checked_rows(be: Any, rows: Any, n: int) -> Any:
    """``rows`` as an integer index array whose entries lie in [0, n) (IndexError otherwise; rows already on a
    device are not read back to check their range)."""
    host = be.xp is np or isinstance(rows, (list, tuple)) or type(rows) is np.ndarray
    rows = be.asarray(rows)
    if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
        raise IndexError(f"rows must be a 1-D integer array, got {rows.dtype} of shape {rows.shape}")
    if host and rows.size and (int(rows.min()) < 0 or int(rows.max()) >= n):
        raise IndexError(f"rows index out of bounds for {n} samples")
    return rows


def _scratch(be: Any, workspace: dict | None, key: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """A buffer of ``shape`` kept in ``workspace``: the leading rows of one sized for the longest batch so far."""
    buf = None if workspace is None else workspace.get(key)
    if buf is None or buf.shape[0] < shape[0] or buf.shape[1:] != shape[1:] or buf.dtype != dtype:
        buf = be.alloc((max(shape[0], 0 if buf is None else buf.shape[0]), *shape[1:]), dtype, fill=None)
        if workspace is not None:
            workspace[key] = buf
    return buf if buf.shape[0] == shape[0] else buf[: shape[0]]


def _take_rows(be: Any, workspace: dict | None, key: str, a: Any, rows: Any) -> Any:
    """Rows ``rows`` (checked) of ``a``, gathered into a workspace buffer."""
    buf = _scratch(be, workspace, ("take", key), (rows.shape[0], *a.shape[1:]), a.dtype)
    if be.xp is np:  # 'clip' skips NumPy's slow checked path into `out` (rows were checked)
        return np.take(a, rows, axis=0, out=buf, mode="clip")
    return be.xp.take(a, rows, axis=0, out=buf)


class MLPStep:
    """Forward pass, output loss and backward pass of a stack of ``Linear`` layers, as a ``Trainer`` step.

    ``step(data, rows, weight_sum) -> loss`` sets (not accumulates) the gradient of every weight and bias and
    returns the loss of the samples ``rows`` of ``data`` (an ``ArrayDataset``), exactly as
    ``output_loss(...).backward()`` on the autograd path does. Build it with :meth:`for_module`, which returns
    None for networks with other layers (batch norm, dropout): those train through autograd.
    """

    def __init__(self, linears: list[Any], out_activation: str) -> None:
        self.linears = linears
        self.out_activation = out_activation
        self.backend = be = linears[0].backend
        self._params = [(lin.weight, lin.bias) for lin in linears]  # their arrays are read at each step
        self._acts = tuple(lin.activation for lin in linears)
        self._alphas = tuple(float(lin.alpha) for lin in linears)
        self._workspace: dict[Any, Any] = {}
        self._fast = be.extension("mlp_loss_grad")

    @classmethod
    def for_module(cls, module: Any, out_activation: str) -> MLPStep | None:
        """The step of ``module`` if it is a Sequential of biased ``Linear`` layers, else None."""
        layers = list(module)
        if not layers or not all(isinstance(m, nn.Linear) and m.bias is not None for m in layers):
            return None
        return cls(layers, out_activation)

    def __call__(self, data: Any, rows: Any, weight_sum: float) -> float:
        if data.sparse:
            x, y, sw = data.take(rows)
            rows = None
        elif isinstance(rows, slice):
            x, y = data.X[rows], data.y[rows]
            sw = None if data.sample_weight is None else data.sample_weight[rows]
            rows = None
        else:
            x, y, sw = data.X, data.y, data.sample_weight
        params = self._params  # the Parameters' arrays are read at each step: they may be rebound between steps
        weights, biases = [w.data for w, _ in params], [b.data for _, b in params]
        weight_grads, bias_grads = [w.grad for w, _ in params], [b.grad for _, b in params]
        step = reference_loss_grad if self._fast is None else self._fast
        while True:  # the extension first, where the backend offers one; the reference where it declines
            loss = step(
                self.backend, x, y, weights, biases, self._acts, self.out_activation, rows=rows, sample_weight=sw,
                weight_sum=weight_sum, alphas=self._alphas, weight_grads=weight_grads, bias_grads=bias_grads,
                workspace=self._workspace,
            )  # fmt: skip
            if loss is not NotImplemented:
                return loss
            step = reference_loss_grad
